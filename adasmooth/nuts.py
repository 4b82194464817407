"""MixedNUTS (Bai et al., the follow-up to adaptive smoothing): a training-free mixer whose robust model's
logits go through a nonlinear map before mixing.

With z the robust model h's logits, the map is

    z̃ = (z - mean_k(z)) / std_k(z)          mean and (unbiased) std of the k largest logits of each row
    u = GELU(z̃ + c)                          the shift c moves the GELU's knee: low logits are clamped
    M(z) = s · sign(u) · |u|^p               power p > 0, scale s > 0

and the mixed classifier outputs log((1-α)·ĝ(x) + α·softmax(M(z_h(x)))), computed with logsumexp, where ĝ is
the one-hot vector of the accurate model g's argmax (the *exact* model).  A hard argmax has no gradient, so
attacks use a *smooth stand-in*: ĝ replaced by softmax(z_g/T) (T = ``smooth``; the authors use T = 1),
the map kept (its gradient flows).  Reported accuracy is always judged on the exact model: in the default
``path="auto"`` a forward pass on an input that requires gradients (an attack step) goes through the
smooth stand-in and every other pass (``predict``, the final judgement, gradient-free attacks such as Square)
through the exact model; ``model.using("exact")`` / ``using("smooth")`` force one.

(s, p, c) are chosen on held-out images as the authors do (:func:`fit`): attack h alone (PGD), take the
mapped probabilities' margin (top-1 minus top-2) on the attacked images h still gets right, set the cutoff
at the percentile that keeps ``percentile`` % of them above it, and choose the grid point at which the
fewest clean images that g gets right but h gets wrong have an h-margin at or above the cutoff (those are
where the mixture would overturn a correct g).  The authors' mixing weight is α = 1/(1 + cutoff);
:func:`calibrate_alpha` instead sets α to a target clean accuracy, to compare mixers at matched accuracy.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoint, zoo
from .attacks import pgd
from .calibration import bisect_to_accuracy, check_target
from .mixing import PairShape, check_alpha, mix_log_probs
from .runtime import batches, get_device

log = logging.getLogger(__name__)

PATHS = ("auto", "exact", "smooth")
# the authors' CIFAR-10 search box (s log-spaced, c and p linear), coarser: 4 x 4 x 4 points
DEFAULT_GRID = {"s": [0.05, 0.2, 1.0, 5.0], "p": [1.0, 2.0, 3.0, 4.0], "c": [-1.1, -0.7, -0.35, 0.0]}


# ---------------------------------------------------------------------------------------------
# Parameter checks
# ---------------------------------------------------------------------------------------------
def _finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_params(s, p, c, k=None, smooth=1.0) -> None:
    """Raise ``ValueError`` naming the first parameter outside its range: s > 0, p > 0, c finite,
    k None or an int >= 2, smooth (the stand-in's temperature) > 0 — all finite numbers."""
    for name, v, positive in (("s", s, True), ("p", p, True), ("c", c, False), ("smooth", smooth, True)):
        if not _finite_number(v) or (positive and v <= 0):
            want = "a finite number > 0" if positive else "a finite number"
            raise ValueError(f"{name} must be {want}, got {v!r}")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 2):
        raise ValueError(f"k must be None (all classes) or an int >= 2, got {k!r}")


def _check_path(path):
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    return path


# ---------------------------------------------------------------------------------------------
# The map
# ---------------------------------------------------------------------------------------------
def normalize_topk(z: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """(z - mean) / sqrt(var + 1e-8), mean and unbiased variance over each row's k largest logits
    (all of them when k is None or at least the class count)."""
    top = z if k is None or k >= z.shape[1] else z.topk(k, dim=1).values
    mean = top.mean(1, keepdim=True)
    var = top.var(1, keepdim=True)
    return (z - mean) / (var + 1e-8).sqrt()


def nonlinear_map(z: torch.Tensor, s: float, p: float, c: float, k: int | None = None) -> torch.Tensor:
    """M(z) = s·sign(u)·|u|^p with u = GELU(z̃ + c), z̃ :func:`normalize_topk` (computed in float64,
    returned in z's dtype; differentiable, with a zero gradient where u = 0)."""
    check_params(s, p, c, k)
    zd = z.double()
    u = F.gelu(normalize_topk(zd, k) + c)
    out = s * torch.sign(u) * u.abs().clamp_min(1e-30).pow(p)
    return out.to(z.dtype)


# ---------------------------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------------------------
class NutsClassifier(PairShape, nn.Module):
    """MixedNUTS of g (accurate, entering as its hard argmax) and h (robust, through the map M).

    ``forward(x)`` returns log-probabilities: exact ``log((1-α)·onehot(argmax g) + α·softmax(M(z_h)))``
    or, on the smooth path, ``log((1-α)·softmax(z_g/smooth) + α·softmax(M(z_h)))``.  ``path``: ``"auto"``
    (smooth when gradients are enabled and x requires them: attack steps; exact otherwise), ``"exact"``
    or ``"smooth"``; :meth:`using` switches it for a block.  At α = 0 the exact model returns
    log_softmax(z_g) (g's decisions, finite); at α = 1 both paths return log_softmax(M(z_h)).
    """

    def __init__(self, g: nn.Module, h: nn.Module, s: float, p: float, c: float, alpha: float,
                 k: int | None = None, smooth: float = 1.0, path: str = "auto"):
        super().__init__()
        check_params(s, p, c, k, smooth)
        if torch.is_tensor(alpha) or not _finite_number(alpha):
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        check_alpha(alpha, "alpha")
        self.g, self.h = g, h
        self.s, self.p, self.c, self.k, self.smooth = float(s), float(p), float(c), k, float(smooth)
        self.alpha = float(alpha)
        self.path = _check_path(path)

    def params(self) -> dict:
        """The mixer's parameters (JSON-ready)."""
        return {"s": self.s, "p": self.p, "c": self.c, "k": self.k, "alpha": self.alpha, "smooth": self.smooth}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items()) + f", path={self.path!r}"

    @contextlib.contextmanager
    def using(self, path: str):
        """``with model.using("exact"): ...`` runs the block on that path, then restores the previous one."""
        before, self.path = self.path, _check_path(path)
        try:
            yield self
        finally:
            self.path = before

    def mapped(self, z_h: torch.Tensor) -> torch.Tensor:
        """M(z_h), the robust model's mapped logits."""
        return nonlinear_map(z_h, self.s, self.p, self.c, self.k)

    def mix(self, z_g: torch.Tensor, z_h: torch.Tensor, path: str = "exact", alpha: float | None = None):
        """The mixed log-probabilities from the two models' logits on ``path`` ("exact" or "smooth")."""
        a = self.alpha if alpha is None else float(check_alpha(alpha, "alpha"))
        if path == "exact" and a == 0.0:
            return F.log_softmax(z_g, 1)
        logp_h = F.log_softmax(self.mapped(z_h), 1)
        if a == 1.0:
            return logp_h
        if path == "smooth":
            logp_g = F.log_softmax(z_g / self.smooth, 1)
        else:  # log of the one-hot argmax: 0 there, -inf elsewhere (dropped by the logsumexp since α > 0)
            logp_g = torch.full_like(z_g, -float("inf")).scatter(1, z_g.argmax(1, keepdim=True), 0.0)
        return mix_log_probs(logp_g, logp_h, a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        path = self.path
        if path == "auto":
            path = "smooth" if torch.is_grad_enabled() and x.requires_grad else "exact"
        if self.alpha == 1.0:
            return F.log_softmax(self.mapped(self.h(x)), 1)
        if self.alpha == 0.0 and path == "exact":
            return F.log_softmax(self.g(x), 1)
        z_g, z_h = self.g(x), self.h(x)
        if z_g.shape != z_h.shape:
            raise ValueError(f"h must return as many classes as g: g gives {tuple(z_g.shape)}, "
                             f"h gives {tuple(z_h.shape)}")
        return self.mix(z_g, z_h, path)


# ---------------------------------------------------------------------------------------------
# Fitting (s, p, c) and calibrating α
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _logits(model, x, device, batch_size):
    return torch.cat([model(x[sl].to(device)).float() for sl in batches(len(x), batch_size)]).cpu()


def _check_grid(grid) -> dict:
    grid = DEFAULT_GRID if grid is None else grid
    if not isinstance(grid, dict) or set(grid) != {"s", "p", "c"}:
        raise ValueError(f"grid must be a dict with the keys 's', 'p' and 'c' (lists of values), got {grid!r}")
    out = {}
    for name in ("s", "p", "c"):
        vals = grid[name]
        if not isinstance(vals, (list, tuple)) or not vals:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of numbers, got {vals!r}")
        for v in vals:
            check_params(**{"s": 1.0, "p": 1.0, "c": 0.0, name: v})
        out[name] = [float(v) for v in vals]
    return out


def _margins(logits: torch.Tensor) -> torch.Tensor:
    """top-1 minus top-2 softmax probability per row."""
    top = logits.softmax(1).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def fit(g: nn.Module, h: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor, *, eps: float, norm: str = "linf",
        percentile: float = 95.0, grid: dict | None = None, k: int | None = None, steps: int = 20, seed: int = 0,
        batch_size: int = 500, device=None) -> dict:
    """Choose (s, p, c) on held-out images (x_val, y_val) as the MixedNUTS authors do (module docstring).

    PGD (CE, ``steps`` steps, random start seeded by ``seed``, radius ``eps`` in ``norm``) attacks h alone;
    on the attacked images h still classifies correctly the mapped margins give the cutoff, the
    (100 - ``percentile``)-th percentile (so ``percentile`` % of them stay above it); the objective,
    minimised over ``grid`` (``{"s": [...], "p": [...], "c": [...]}``, default :data:`DEFAULT_GRID`), is
    the fraction of clean images g gets right and h gets wrong whose mapped h-margin reaches the cutoff
    (all of h's clean mistakes when g is right on none of them).  Ties go to the lower mean margin of those
    images, then to the grid order.  Deterministic under ``seed``.  Returns a JSON-ready dict: the chosen
    ``s``, ``p``, ``c``, ``k``, its ``cutoff`` and the authors' ``alpha_cutoff`` = 1/(1 + cutoff), the
    objective, the image counts, every grid point's objective and cutoff, and the seconds taken.
    """
    grid = _check_fit(x_val, y_val, eps=eps, percentile=percentile, grid=grid, k=k, steps=steps)
    device = get_device(device)
    t0 = time.perf_counter()
    g, h = g.to(device).eval(), h.to(device).eval()
    y = y_val.cpu()
    zg = _logits(g, x_val, device, batch_size)
    zh = _logits(h, x_val, device, batch_size)
    g_ok, h_ok = zg.argmax(1) == y, zh.argmax(1) == y
    x_adv = torch.cat([pgd(h, x_val[sl].to(device), y_val[sl].to(device), eps=eps, steps=steps, norm=norm, loss="ce",
                           seed=seed + i) for i, sl in enumerate(batches(len(x_val), batch_size))])
    zh_adv = _logits(h, x_adv, device, batch_size)
    atk_ok = zh_adv.argmax(1) == y
    clean_set = g_ok & ~h_ok
    which = "g right, h wrong"
    if not clean_set.any():
        clean_set, which = ~h_ok, "h wrong"
    z_atk, z_cln = zh_adv[atk_ok], zh[clean_set]
    if len(z_atk) == 0:
        raise ValueError("h is wrong on every attacked validation image: no attacked-correct margins to fit on")
    rows = _grid_objectives(z_atk, z_cln, grid, k, 1.0 - percentile / 100.0)
    best = min(range(len(rows)), key=lambda i: (rows[i]["objective"], rows[i]["clean_mean_margin"], i))
    b = rows[best]
    return {"s": b["s"], "p": b["p"], "c": b["c"], "k": k, "cutoff": b["cutoff"],
            "alpha_cutoff": 1.0 / (1.0 + b["cutoff"]), "objective": b["objective"], "percentile": float(percentile),
            "n_fit": len(y), "n_attacked_correct": int(atk_ok.sum()), "n_clean_set": int(clean_set.sum()),
            "clean_set": which, "acc_g": float(g_ok.double().mean()), "acc_h": float(h_ok.double().mean()),
            "acc_h_attacked": float(atk_ok.double().mean()),
            "attack": {"name": "pgd-ce on h", "eps": float(eps), "norm": norm, "steps": steps, "seed": seed},
            "grid": grid, "grid_results": rows, "seconds": round(time.perf_counter() - t0, 2),
            "forward_passes_per_image": 2 + 2 * steps}


def _check_fit(x_val, y_val, *, eps, percentile, grid, k, steps) -> dict:
    """:func:`fit`'s arguments checked; returns the grid (:func:`_check_grid`)."""
    if not _finite_number(percentile) or not 0 < percentile < 100:
        raise ValueError(f"percentile must be a number in (0, 100), got {percentile!r}")
    if not _finite_number(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    check_params(1.0, 1.0, 0.0, k)
    grid = _check_grid(grid)
    if len(x_val) != len(y_val) or len(y_val) == 0:
        raise ValueError(f"x_val and y_val must hold the same, non-zero number of images: {len(x_val)}, {len(y_val)}")
    return grid


def _grid_objectives(z_atk: torch.Tensor, z_cln: torch.Tensor, grid: dict, k, q: float) -> list[dict]:
    """Per grid point (s, p, c): the cutoff (the ``q``-quantile of the mapped margins of the attacked images h
    gets right, ``z_atk``) and the objective (the fraction of ``z_cln``'s mapped margins reaching it)."""
    rows = []
    for s in grid["s"]:
        for p in grid["p"]:
            for c in grid["c"]:
                m_atk = _margins(nonlinear_map(z_atk, s, p, c, k).double())
                cutoff = float(torch.quantile(m_atk, q))
                if len(z_cln):
                    m_cln = _margins(nonlinear_map(z_cln, s, p, c, k).double())
                    obj, mean_m = float((m_cln >= cutoff).double().mean()), float(m_cln.mean())
                else:
                    obj, mean_m = 0.0, 0.0
                rows.append({"s": s, "p": p, "c": c, "cutoff": cutoff, "objective": obj, "clean_mean_margin": mean_m})
    return rows


def _weights_sha(*modules: nn.Module) -> str:
    hsh = hashlib.sha256()
    for m in modules:
        for key, v in sorted(m.state_dict().items()):
            hsh.update(key.encode())
            hsh.update(v.detach().cpu().contiguous().numpy().tobytes())
    return hsh.hexdigest()


def _images_sha(x, y) -> str:
    hsh = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes())
    hsh.update(y.detach().cpu().numpy().tobytes())
    return hsh.hexdigest()


def fit_path(g: nn.Module, h: nn.Module, x_val, y_val, root=None, **config):
    """Where :func:`get_or_fit` caches the fit: ``<zoo>/nuts-<hash>.json``, the hash over g's and h's
    weights (sha256), the images and the fit configuration (:func:`checkpoint.config_hash`)."""
    key = {"g_sha256": _weights_sha(g), "h_sha256": _weights_sha(h), "images": _images_sha(x_val, y_val),
           "config": config}
    return zoo.cache_dir(root) / f"nuts-{checkpoint.config_hash(key)}.json"


def get_or_fit(g: nn.Module, h: nn.Module, x_val, y_val, *, root=None, use_cache: bool = True, device=None,
               **config) -> dict:
    """:func:`fit`, read from its JSON in the zoo cache when there (``cached: True``), else fitted and written
    there atomically (``config``: :func:`fit`'s keyword arguments, batch size excluded from the key)."""
    key_cfg = {k: v for k, v in config.items() if k != "batch_size"}
    key_cfg["grid"] = _check_grid(key_cfg.get("grid"))
    path = fit_path(g, h, x_val, y_val, root, **key_cfg)
    if use_cache and path.exists():
        try:
            doc = json.loads(path.read_text())
            return {**doc, "cached": True, "path": str(path)}
        except ValueError:
            log.warning("ignoring unreadable MixedNUTS fit %s", path)
    doc = fit(g, h, x_val, y_val, device=device, **config)
    if use_cache:
        checkpoint.atomic_write_json(path, doc)
    return {**doc, "cached": False, "path": str(path)}


def calibrate_alpha(g: nn.Module, h: nn.Module, params: dict, x: torch.Tensor, y: torch.Tensor,
                    target_clean_acc: float, tol: float = 2e-4, *, smooth: float = 1.0, batch_size: int = 500,
                    max_iter: int = 200, device=None):
    """The α ∈ [0, 1] at which the exact MixedNUTS with ``params`` (s, p, c, k) has clean accuracy
    ``target_clean_acc`` on (x, y): a bisection on logits computed once
    (:func:`calibration.bisect_to_accuracy`: the closest achievable accuracy when none is within ``tol``).
    Returns :class:`calibration.Calibration` (``value`` is α)."""
    check_target(target_clean_acc, tol)
    device = get_device(device)
    g, h = g.to(device).eval(), h.to(device).eval()
    model = NutsClassifier(g, h, params["s"], params["p"], params["c"], 0.5, k=params.get("k"), smooth=smooth)
    zg, zh = _logits(g, x, device, batch_size), _logits(h, x, device, batch_size)
    y = y.cpu()

    def acc(alpha):
        return (model.mix(zg, zh, "exact", alpha=alpha).argmax(1) == y).double().mean().item()

    res = bisect_to_accuracy(acc, 0.0, 1.0, float(target_clean_acc), tol, len(y), max_iter, "MixedNUTS α", "α = 0 .. 1")
    check_alpha(res.value, "alpha")
    return res
