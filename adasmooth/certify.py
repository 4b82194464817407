"""Certified robustness of the mixed classifier h^α (supplement Appendix D, Fig. SM1).

Notation: g is the accurate classifier, h the robust one, both as class probabilities; the mixed
classifier predicts argmax_i h^α_i(x) = argmax_i (1-α)·g_i(x) + α·h_i(x); y = argmax_i h_i(x) and
y' = argmax_{i≠y} h_i(x) is the runner-up.

- **Lemma 1.** If α ∈ [1/2, 1] and h keeps the margin μ = (1-α)/α on the ball ‖δ‖_p ≤ r
  (h_y(x+δ) ≥ h_i(x+δ) + μ for all i ≠ y), then h^α predicts y on that ball, whatever g is.
- **Theorem 1** (Lipschitz h, any ℓp):
  r^α_Lip(x) = min_{i≠y} [α(h_y(x) - h_i(x)) + α - 1] / [α(Lip(h_y) + Lip(h_i))].
- **Theorem 2** (h = E_ξ[h̄(x+ξ)], ξ ~ N(0, σ²I), h̄ ∈ [0, 1], ℓ2):
  r^α_σ(x) = (σ/2)[Φ⁻¹(α·h_y(x)) - Φ⁻¹(α·h_y'(x) + 1 - α)]; at α = 1 this is Cohen et al.'s radius.
- **Theorem 3.** The oracle α(x+δ) = 0 where g is right, 1 elsewhere, is right wherever g or h is.

Radii are 0 where the formula is ≤ 0 and for α < 1/2 (no certificate).  :class:`Smooth` is
Cohen et al.'s randomized-smoothing classifier (PREDICT, CERTIFY) and the Monte-Carlo estimate of
h(x) = E[h̄(x+ξ)] used by Fig. SM1, batched over many inputs at once.  Its default h̄ is the one-hot
vote of the base model (Cohen et al.'s smoothed classifier, and what the authors' Fig. SM1 code
mixes); the softmax is an option.  Fig. SM1 plugs the estimate into Theorems 1 and 2 without a
confidence bound, so at α = 1 an image whose n votes all agree gets an infinite Theorem 2 radius;
:func:`bounded_probs` (used by :func:`mixed_certificates` when given the number of votes) replaces
the estimate by Clopper-Pearson bounds, and :meth:`Smooth.certify` is Cohen et al.'s certificate.
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import beta as beta_dist
from scipy.stats import binomtest, norm

from .calibration import grid_to_accuracy
from .mixing import check_alpha, mix_log_probs
from .runtime import batches, generator, get_device, progress_bar

log = logging.getLogger(__name__)

ABSTAIN = -1


# ---- input checks -----------------------------------------------------------------------------
def _probs(p, name: str = "probs_h") -> torch.Tensor:
    """``p`` as a float64 (N, C) tensor with entries in [0, 1] (a single (C,) vector becomes (1, C))."""
    t = torch.as_tensor(p).detach().to(torch.float64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, C) with C >= 2 classes, got {tuple(t.shape)}")
    if t.numel() and (torch.isnan(t).any() or (t < 0).any() or (t > 1).any()):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")
    return t


def _alphas(alpha, n: int, ref: torch.Tensor) -> torch.Tensor:
    """α (float or (N,) tensor, checked to lie in [0, 1]) as a float64 (N,) tensor on ``ref``'s device."""
    check_alpha(alpha, "alpha")
    a = torch.as_tensor(alpha, dtype=torch.float64, device=ref.device)
    if a.ndim == 0:
        return a.expand(n)
    if a.shape != (n,):
        raise ValueError(f"alpha must be a float or have shape ({n},), got shape {tuple(a.shape)}")
    return a


def _check_failure_prob(failure_prob) -> None:
    """The probability that a confidence bound fails (1 - its confidence level) must lie in (0, 1)."""
    if (isinstance(failure_prob, bool) or not isinstance(failure_prob, (int, float, np.floating))
            or not 0 < failure_prob < 1):
        raise ValueError("failure_prob (the probability that the bound fails) must lie in (0, 1), "
                         f"got {failure_prob!r}")


def _positive(v, name: str) -> float:
    v = float(v)
    if not v > 0 or math.isinf(v):
        raise ValueError(f"{name} must be a positive finite number, got {v}")
    return v


def _top2(p: torch.Tensor):
    """(y, h_y, h_y') per row: y = argmax h, h_y' = max_{i≠y} h_i."""
    y = p.argmax(1)
    h_y = p.gather(1, y[:, None]).squeeze(1)
    h_y2 = p.scatter(1, y[:, None], -1.0).max(1).values
    return y, h_y, h_y2


# ---- Lemma 1 ----------------------------------------------------------------------------------
def required_margin(alpha):
    """μ = (1-α)/α, the margin (in probability) that h needs for h^α to keep h's prediction (∞ at α = 0).

    Not :func:`attacks.logit_margin` (z_y - max_{i≠y} z_i of one model's logits)."""
    check_alpha(alpha, "alpha")
    a = torch.as_tensor(alpha, dtype=torch.float64)
    mu = torch.where(a > 0, (1 - a) / torch.where(a > 0, a, torch.ones_like(a)), torch.full_like(a, math.inf))
    return float(mu) if mu.ndim == 0 else mu


def has_margin(probs_h, mu) -> torch.Tensor:
    """Whether h_y - h_i ≥ μ for every i ≠ y (y = argmax h), per row of ``probs_h``."""
    p = _probs(probs_h)
    _, h_y, h_y2 = _top2(p)
    return (h_y - h_y2) >= torch.as_tensor(mu, dtype=torch.float64, device=p.device)


def lemma1_certified(probs_h, alpha) -> torch.Tensor:
    """Lemma 1's test at one point: α ∈ [1/2, 1] and h has margin μ = (1-α)/α there.

    Where it holds, argmax h^α = argmax h for *every* g.  Applied to h's outputs at all points of a
    ball (or to bounds on them) it certifies h^α on that ball.
    """
    p = _probs(probs_h)
    a = _alphas(alpha, p.shape[0], p)
    return (a >= 0.5) & has_margin(p, required_margin(a))


# ---- Theorems 1 and 2 -------------------------------------------------------------------------
def lipschitz_radius(probs_h, alpha, lip) -> torch.Tensor:
    """Theorem 1: r = min_{i≠y} [α(h_y - h_i) + α - 1] / [α(Lip(h_y) + Lip(h_i))], per input.

    ``probs_h`` (N, C) in [0, 1]; ``alpha`` a float or (N,) tensor in [0, 1]; ``lip`` the ℓp
    Lipschitz constant of every h_i (a float) or one per class (C,).  Returns float64 (N,), 0 where
    the numerator is negative and where α < 1/2.
    """
    p = _probs(probs_h)
    n, c = p.shape
    a = _alphas(alpha, n, p)
    L = torch.as_tensor(lip, dtype=torch.float64, device=p.device)
    if L.ndim == 0:
        L = L.expand(c)
    if L.shape != (c,):
        raise ValueError(f"lip must be a float or have shape ({c},), got shape {tuple(L.shape)}")
    if torch.isnan(L).any() or (L <= 0).any() or torch.isinf(L).any():
        raise ValueError("lip must be positive and finite")
    y, h_y, _ = _top2(p)
    a_ = torch.where(a > 0, a, torch.ones_like(a))[:, None]  # α = 0 is zeroed below
    num = a_ * (h_y[:, None] - p) + a_ - 1
    den = a_ * (L[y][:, None] + L[None, :])
    r = (num / den).scatter(1, y[:, None], math.inf).min(1).values
    return torch.where((a >= 0.5) & (r > 0), r, torch.zeros_like(r))


def rs_radius(probs_h, alpha, sigma) -> torch.Tensor:
    """Theorem 2: r = (σ/2)[Φ⁻¹(α·h_y) - Φ⁻¹(α·h_y' + 1 - α)], per input (ℓ2).

    ``probs_h`` are the smoothed probabilities h_i(x) = E[h̄_i(x+ξ)]; at α = 1 this is Cohen et
    al.'s (σ/2)(Φ⁻¹(p_A) - Φ⁻¹(p_B)) (+∞ when h_y = 1).  0 where negative and where α < 1/2.
    """
    p = _probs(probs_h)
    sigma = _positive(sigma, "sigma")
    a = _alphas(alpha, p.shape[0], p)
    _, h_y, h_y2 = _top2(p)
    r = sigma / 2 * (torch.special.ndtri(a * h_y) - torch.special.ndtri(a * h_y2 + 1 - a))
    return torch.where((a >= 0.5) & (r > 0), r, torch.zeros_like(r))  # NaN (∞ - ∞) -> 0 too


def smoothed_lipschitz(sigma) -> float:
    """√(2/π)/σ: the ℓ2 Lipschitz constant of x ↦ E_ξ[h̄(x+ξ)], ξ ~ N(0, σ²I), for any h̄ ∈ [0, 1]."""
    return math.sqrt(2 / math.pi) / _positive(sigma, "sigma")


# ---- Theorem 3 --------------------------------------------------------------------------------
def oracle_alpha(logits_g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Theorem 3's α(·): 0 where g predicts the label y, 1 elsewhere (float, shape (N,))."""
    if logits_g.ndim != 2 or y.shape != (logits_g.shape[0],):
        raise ValueError(f"logits_g must be (N, C) and y (N,), got {tuple(logits_g.shape)} and {tuple(y.shape)}")
    return (logits_g.argmax(1) != y).to(logits_g.dtype)


def oracle_correct(logits_g: torch.Tensor, logits_h: torch.Tensor, y: torch.Tensor) -> dict:
    """Per-input correctness of g, h and the oracle mix h^{α(·)} (all bool (N,)).

    The oracle's prediction is argmax of mix_log_probs(log g, log h, α(·)) with α(·) from
    :func:`oracle_alpha`; Theorem 3 says it is right wherever g or h is.
    """
    if logits_g.shape != logits_h.shape:
        raise ValueError(f"logits_h must have the shape of logits_g {tuple(logits_g.shape)}, got {tuple(logits_h.shape)}")
    a = oracle_alpha(logits_g, y)
    mixed = mix_log_probs(F.log_softmax(logits_g, 1), F.log_softmax(logits_h, 1), a)
    return {"g": logits_g.argmax(1) == y, "h": logits_h.argmax(1) == y, "oracle": mixed.argmax(1) == y}


@torch.no_grad()
def theorem3_accuracy(g: Callable, h: Callable, inputs, y: torch.Tensor, *, batch_size: int = 500) -> dict:
    """Accuracy of g, h and the oracle mix under a given attack: Theorem 3 evaluated (its one home;
    :func:`adasmooth.theory.theorem3_violations` reads ``per_set`` from here).

    ``inputs`` is a tensor or a mapping name -> tensor of perturbed inputs (e.g. the clean images
    and the adversarial examples crafted against each model), all aligned with ``y``.  An input
    counts as correct for a model when it is classified right in every set (the worst case over
    the given attacks).  Returns ``{"g", "h", "oracle"}`` accuracies and ``"per_set"``: per set, the
    accuracies and ``"violations"``, the inputs where g or h is right but the oracle is not (the
    theorem says 0).
    """
    sets = {"inputs": inputs} if torch.is_tensor(inputs) else dict(inputs)
    if not sets:
        raise ValueError("inputs must hold at least one tensor")
    worst, per_set = None, {}
    for name, xs in sets.items():
        if xs.shape[0] != y.shape[0]:
            raise ValueError(f"inputs[{name!r}] has {xs.shape[0]} rows but y has {y.shape[0]}")
        parts = []
        for sl in batches(len(y), batch_size):
            parts.append(oracle_correct(g(xs[sl]), h(xs[sl]), y[sl]))
        ok = {k: torch.cat([p[k] for p in parts]) for k in ("g", "h", "oracle")}
        per_set[name] = {k: int(v.sum()) / len(y) for k, v in ok.items()}
        per_set[name]["violations"] = int(((ok["g"] | ok["h"]) & ~ok["oracle"]).sum())
        worst = ok if worst is None else {k: worst[k] & ok[k] for k in ok}
    out = {k: v.double().mean().item() for k, v in worst.items()}
    out["per_set"] = per_set
    return out


# ---- randomized smoothing ---------------------------------------------------------------------
def lower_confidence_bound(k, n: int, failure_prob: float) -> np.ndarray:
    """One-sided (1-``failure_prob``) Clopper-Pearson lower bound on a binomial proportion:
    Beta⁻¹(failure_prob; k, n-k+1), 0 at k = 0."""
    k = np.asarray(k, dtype=np.int64)
    _check_failure_prob(failure_prob)
    if n < 1 or (k < 0).any() or (k > n).any():
        raise ValueError(f"counts must lie in [0, n] with n >= 1, got n={n}")
    with np.errstate(invalid="ignore"):
        lo = beta_dist.ppf(failure_prob, k, n - k + 1)
    return np.where(k == 0, 0.0, lo)


class Smooth:
    """Cohen et al.'s smoothed classifier of ``base`` (logits -> argmax) under N(0, σ²I) noise.

    Every method takes a batch x of shape (B, ...) and evaluates B inputs × n noise draws in
    forward passes of at most ``batch_size`` samples; the noise comes from a generator seeded with
    ``seed`` (same seed => same numbers).  ``base`` runs on ``device`` (default: its parameters'
    device, else :func:`runtime.get_device`).
    """

    ABSTAIN = ABSTAIN

    def __init__(self, base: Callable[[torch.Tensor], torch.Tensor], num_classes: int, sigma: float,
                 device=None):
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.base, self.num_classes, self.sigma = base, num_classes, _positive(sigma, "sigma")
        if device is None:
            params = list(base.parameters()) if hasattr(base, "parameters") else []
            device = params[0].device if params else get_device(None)
        self.device = torch.device(device)
        if hasattr(base, "eval"):
            base.eval()

    # -- sampling
    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int, batch_size: int = 1000, *, soft: bool = False,
               gen: torch.Generator | None = None, seed: int = 0, progress: bool = False) -> torch.Tensor:
        """Sums over n draws ξ ~ N(0, σ²I) of h̄(x+ξ), shape (B, C).

        ``soft=False``: h̄ = one-hot of argmax base (int64 vote counts); ``soft=True``: h̄ =
        softmax of base (float64 sums).  Blocks of k inputs × m draws (k·m ≤ batch_size) go through
        the model together.
        """
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
        x = x.to(self.device)
        gen = gen if gen is not None else generator(seed, self.device)
        b, c = x.shape[0], self.num_classes
        m = min(n, batch_size)
        k = max(1, batch_size // m)
        out = torch.zeros(b, c, dtype=torch.float64 if soft else torch.int64, device=self.device)
        steps = [(blk, d) for blk in batches(b, k) for d in batches(n, m)]
        for blk, d in progress_bar(steps, progress=progress, desc="noise", leave=False):
            xb = x[blk]
            kb, mb = xb.shape[0], d.stop - d.start
            rep = xb.unsqueeze(1).expand(kb, mb, *xb.shape[1:]).reshape(kb * mb, *xb.shape[1:])
            noise = torch.randn(rep.shape, generator=gen, device=self.device, dtype=rep.dtype)
            z = self.base(rep + self.sigma * noise)
            if z.shape[-1] != c:
                raise ValueError(f"base returned {z.shape[-1]} classes, num_classes is {c}")
            hbar = F.softmax(z.double(), 1) if soft else F.one_hot(z.argmax(1), c)
            out[blk] += hbar.view(kb, mb, c).sum(1).to(out.dtype)
        return out

    def probabilities(self, x: torch.Tensor, n: int, batch_size: int = 1000, *, soft: bool = False,
                      seed: int = 0, progress: bool = False) -> torch.Tensor:
        """Monte-Carlo estimate of h(x) = E_ξ[h̄(x+ξ)] from n draws (float64 (B, C), rows sum to 1).

        The default h̄ is the one-hot vote of the base model (Cohen et al.'s smoothed classifier,
        as the authors' Fig. SM1 code uses); ``soft=True`` uses its softmax.  Both satisfy
        Assumption 2 (h̄ ∈ [0, 1]), so both have Lipschitz constant :func:`smoothed_lipschitz`.
        """
        s = self.sample(x, n, batch_size, soft=soft, seed=seed, progress=progress)
        return s.double() / n

    # -- Cohen et al.'s PREDICT and CERTIFY
    def predict(self, x: torch.Tensor, n: int, failure_prob: float, batch_size: int = 1000, *, seed: int = 0,
                progress: bool = False) -> torch.Tensor:
        """PREDICT: the top class of n votes, or ABSTAIN (-1) where the two-sided binomial test of
        its count against the runner-up's (p = 1/2) has p-value > ``failure_prob``.  int64 (B,) on CPU."""
        _check_failure_prob(failure_prob)
        counts = self.sample(x, n, batch_size, seed=seed, progress=progress).cpu()
        top = counts.topk(2, dim=1)
        pred = top.indices[:, 0].clone()
        for i, (c1, c2) in enumerate(top.values.tolist()):
            if binomtest(c1, c1 + c2, 0.5).pvalue > failure_prob:
                pred[i] = ABSTAIN
        return pred

    def certify(self, x: torch.Tensor, n0: int, n: int, failure_prob: float, batch_size: int = 1000, *,
                seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """CERTIFY: ĉ_A from n0 votes; p̲_A = Clopper-Pearson (1-``failure_prob``) lower bound of its count
        among n fresh votes; returns (ĉ_A, σΦ⁻¹(p̲_A)), or (ABSTAIN, 0) where p̲_A < 1/2.  CPU int64 / float64 (B,)."""
        _check_failure_prob(failure_prob)
        gen = generator(seed, self.device)
        c_a = self.sample(x, n0, batch_size, gen=gen, progress=progress).argmax(1)
        counts = self.sample(x, n, batch_size, gen=gen, progress=progress)
        n_a = counts.gather(1, c_a[:, None]).squeeze(1).cpu().numpy()
        p_a = lower_confidence_bound(n_a, n, failure_prob)
        ok = p_a >= 0.5
        pred = torch.where(torch.from_numpy(ok), c_a.cpu(), torch.full_like(c_a.cpu(), ABSTAIN))
        radius = torch.from_numpy(np.where(ok, self.sigma * norm.ppf(np.where(ok, p_a, 0.5)), 0.0))
        return pred, radius


# ---- certified-accuracy curves ----------------------------------------------------------------
def certified_accuracy(radii, correct, r_grid) -> np.ndarray:
    """Fraction of inputs that are correct and certified at radius r, for each r in ``r_grid``.

    Certified at r means radius ≥ r with a real certificate (radius > 0): a radius of 0 marks
    "no certificate" (non-positive bound, α < 1/2, abstention), so at r = 0 this is the right
    limit that Fig. SM1 draws, not the clean accuracy (report that separately).
    """
    rad = np.asarray(torch.as_tensor(radii).detach().cpu(), dtype=np.float64)
    ok = np.asarray(torch.as_tensor(correct).detach().cpu(), dtype=bool)
    if rad.shape != ok.shape or rad.ndim != 1:
        raise ValueError(f"radii and correct must be 1-D of the same length, got {rad.shape} and {ok.shape}")
    grid = np.atleast_1d(np.asarray(r_grid, dtype=np.float64))
    if (grid < 0).any():
        raise ValueError("r_grid must be >= 0")
    hit = ok[:, None] & (rad[:, None] > 0) & (rad[:, None] >= grid[None, :])
    return hit.mean(0) if len(rad) else np.zeros(len(grid))


def largest_certified_radius(r_grid, acc) -> tuple[float, bool]:
    """The largest radius of ``r_grid`` at which the certified-accuracy curve ``acc`` is positive (0.0 if
    none), and whether the curve is still positive at the grid's end (then the true largest radius is
    beyond the grid)."""
    pos = [float(r) for r, a in zip(r_grid, acc) if a and a > 0]
    return (pos[-1] if pos else 0.0), bool(len(acc) and acc[-1] and acc[-1] > 0)


def curve_interval(acc, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise 95 % Clopper-Pearson intervals (low, high) of a certified-accuracy curve measured on ``n``
    images (each point an accuracy k/n; :func:`adasmooth.verdicts.accuracy`)."""
    from .verdicts import accuracy

    pts = [accuracy(float(a), n) for a in np.asarray(acc, dtype=np.float64)]
    return np.array([p.low for p in pts]), np.array([p.high for p in pts])


def crossing_radius(r_grid, mix, base) -> float | None:
    """Where h^α's certified-accuracy curve ``mix`` crosses the baseline's ``base`` (Fig. SM1): the first
    radius of ``r_grid`` at which mix's value is above base's after base was above at a smaller radius;
    None when that never happens."""
    below = False
    for r, m, b in zip(r_grid, mix, base):
        below = below or m < b
        if below and m > b:
            return float(r)
    return None


def key_radii(r_grid, curves: Mapping[str, Mapping[str, np.ndarray]], mix: str, base: str) -> dict:
    """The radii that resolve Fig. SM1, per bound of ``curves`` (``{"lip": {label: acc}, "rs": {...}}``, each
    curve on ``r_grid``): ``{bound: {"crossing": r or None, "largest": {label: r}, "beyond": {label: bool}}}``
    for the h^α curve ``mix`` against the baseline ``base`` (:func:`crossing_radius`,
    :func:`largest_certified_radius`)."""
    out = {}
    for bound, cs in curves.items():
        ends = {k: largest_certified_radius(r_grid, list(v)) for k, v in cs.items()}
        out[bound] = {"crossing": crossing_radius(r_grid, cs[mix], cs[base]),
                      "largest": {k: e[0] for k, e in ends.items()}, "beyond": {k: e[1] for k, e in ends.items()}}
    return out


def table_radii(radii, key: Mapping[str, Mapping]) -> list[float]:
    """``radii`` (the table's fixed radii) together with every crossing and largest certified radius of
    ``key`` (:func:`key_radii`), sorted, duplicates (to 1e-9) dropped, rounded to 6 decimals."""
    extra = [b["crossing"] for b in key.values() if b["crossing"] is not None]
    extra += [r for b in key.values() for r in b["largest"].values() if r > 0]
    out = []
    for r in sorted(round(float(r), 6) for r in list(radii) + extra):
        if not out or r - out[-1] > 1e-9:
            out.append(r)
    return out


def fitted_x_max(r_grid, *curve_sets: Mapping[str, np.ndarray], margin: float = 0.15) -> float:
    """The x range that fits the curves: a little (``margin`` of it, at least one grid step) beyond the
    largest radius any curve certifies, at most the grid's end (the grid's end when nothing is certified)."""
    grid = np.asarray(r_grid, dtype=np.float64)
    top = max((largest_certified_radius(grid, list(acc))[0] for cs in curve_sets for acc in cs.values()), default=0.0)
    if top <= 0:
        return float(grid[-1])
    step = float(np.max(np.diff(grid))) if len(grid) > 1 else 0.0
    return float(min(grid[-1], top + max(margin * top, step)))


def radii_table(cert: Mapping[str, Mapping], key: Mapping[str, Mapping], radii) -> dict:
    """Fig. SM1's certified-accuracy table (a :func:`adasmooth.results.table`): one row per model (``cert``,
    label -> :func:`mixed_certificates`) and bound, its clean accuracy, its largest certified radius and the
    bound's crossing radius (``key``, :func:`key_radii`), then the certified accuracy (%) at ``radii``
    together with every crossing and largest radius (:func:`table_radii`), so the table resolves each
    curve's end and the crossing."""
    from .results import table

    rs = table_radii(radii, key)

    def fmt(r):
        return "–" if r is None else f"{r:g}"

    def largest(bound, label):
        return ("≥ " if key[bound]["beyond"][label] else "") + fmt(key[bound]["largest"][label])

    rows = [[label, bound, 100 * c["clean"], largest(bound, label), fmt(key[bound]["crossing"])]
            + [100 * float(v) for v in certified_accuracy(c[bound], c["h_correct"], rs)]
            for label, c in cert.items() for bound in ("lip", "rs")]
    return table(["model", "bound", "clean %", "largest certified r", "crossing r (h^α over baseline)"]
                 + [f"r = {r:g}" for r in rs], rows)


def key_metrics(key: Mapping[str, Mapping], mix: str, base: str) -> dict:
    """:func:`key_radii` as flat metrics: ``crossing_<bound>`` (None: no crossing), ``largest_<bound>_mix`` and
    ``largest_<bound>_baseline``."""
    out = {}
    for bound, k in key.items():
        out[f"crossing_{bound}"] = k["crossing"]
        out[f"largest_{bound}_mix"] = k["largest"][mix]
        out[f"largest_{bound}_baseline"] = k["largest"][base]
    return out


def mixed_predictions(probs_g, probs_h, alpha) -> torch.Tensor:
    """argmax h^α = argmax log((1-α)g + αh), through :func:`mixing.mix_log_probs` (int64 (N,))."""
    pg, ph = _probs(probs_g, "probs_g"), _probs(probs_h, "probs_h")
    if pg.shape != ph.shape:
        raise ValueError(f"probs_h must have the shape of probs_g {tuple(pg.shape)}, got {tuple(ph.shape)}")
    a = _alphas(alpha, pg.shape[0], pg)
    return mix_log_probs(pg.log(), ph.log(), a).argmax(1)


def mixed_accuracy(probs_g, probs_h, y, alpha) -> float:
    """Clean accuracy of h^α given g's and h's class probabilities and labels y."""
    y = torch.as_tensor(y)
    return (mixed_predictions(probs_g, probs_h, alpha).cpu() == y.cpu()).double().mean().item()


def match_alpha(probs_g, probs_h, y, target: float, alphas=None) -> tuple[float, float]:
    """The α (on a grid, default 1001 points of [0, 1]) whose h^α clean accuracy is closest to
    ``target`` (Fig. SM1 matches a baseline RS model's); ties go to the largest α (most robust).
    Returns (α, accuracy).  A grid search (:func:`calibration.grid_to_accuracy`), not the bisection
    the other calibrations use: notebook 03's recorded α comes from this grid."""
    if not 0 <= target <= 1:
        raise ValueError(f"target must lie in [0, 1], got {target}")
    grid = np.linspace(0, 1, 1001) if alphas is None else np.asarray(alphas, dtype=np.float64)
    check_alpha(torch.as_tensor(grid), "alphas")
    return grid_to_accuracy(lambda a: mixed_accuracy(probs_g, probs_h, y, a), grid, target)


def bounded_probs(probs_h, n: int, failure_prob: float = 0.001) -> torch.Tensor:
    """Sound stand-ins for Monte-Carlo estimates of h from n votes (Cohen et al.'s CERTIFY bound).

    Row-wise: p̲_A = Clopper-Pearson (1-``failure_prob``) lower bound of the top class's count, put at the
    top class, and 1 - p̲_A (an upper bound for every other class, since they sum to ≤ 1 - h_A) at the
    estimated runner-up; 0 elsewhere.  With probability ≥ 1 - failure_prob, h_A ≥ p̲_A and h_i ≤ 1 - p̲_A,
    so Theorems 1 and 2 evaluated on these rows give valid, finite radii.  float64 (N, C).
    """
    p = _probs(probs_h)
    if p.shape[1] < 2:
        raise ValueError(f"probs_h needs at least 2 classes, got {p.shape[1]}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (noise draws per input) must be an int >= 1, got {n!r}")
    n = int(n)
    _check_failure_prob(failure_prob)
    top = p.topk(2, dim=1)
    k = torch.round(top.values[:, 0] * n).long().clamp(0, n).numpy()
    lo = torch.from_numpy(lower_confidence_bound(k, n, failure_prob)).to(p)
    out = torch.zeros_like(p)
    out.scatter_(1, top.indices[:, :1], lo[:, None])
    out.scatter_(1, top.indices[:, 1:2], (1 - lo)[:, None])
    return out


def mixed_certificates(probs_g, probs_h, y, alpha, sigma: float, lip=None, *, n: int | None = None,
                       failure_prob: float = 0.001) -> dict:
    """Fig. SM1's quantities for one α: h^α's clean accuracy, h's correctness, and the Theorem 1
    (``lip``, default √(2/π)/σ) and Theorem 2 radii, set to 0 where h is wrong.

    ``n=None`` plugs the estimates of h into the theorems (as the paper's Fig. SM1 does; at α = 1
    a unanimous vote gets r = ∞).  With ``n`` (the number of votes behind ``probs_h``) the radii use
    :func:`bounded_probs` instead: certificates that hold with probability ≥ 1 - ``failure_prob``, and 0
    wherever p̲_A ≤ 1/2.
    """
    y = torch.as_tensor(y).cpu()
    ph = _probs(probs_h)
    h_ok = ph.argmax(1).cpu() == y
    lip = smoothed_lipschitz(sigma) if lip is None else lip
    zero = torch.zeros(len(y), dtype=torch.float64)
    pc = ph
    if n is not None:
        pc = bounded_probs(ph, n, failure_prob)
        h_ok = h_ok & (pc.gather(1, ph.argmax(1, keepdim=True)).squeeze(1) > 0.5).cpu()  # p̲_A > 1/2
    return {"clean": mixed_accuracy(probs_g, ph, y, alpha), "h_correct": h_ok,
            "lip": torch.where(h_ok, lipschitz_radius(pc, alpha, lip).cpu(), zero),
            "rs": torch.where(h_ok, rs_radius(pc, alpha, sigma).cpu(), zero)}


def plot_certified_accuracy(r_grid, lip_curves: Mapping[str, np.ndarray], rs_curves: Mapping[str, np.ndarray],
                            clean: Mapping[str, float] | None = None, path=None, *, x_max: float | None = None,
                            key: Mapping[str, Mapping] | None = None, n: int | None = None,
                            title: str | None = None):
    """Fig. SM1's two panels: certified accuracy vs ℓ2 radius, Lip-based (Theorem 1) and RS-based
    (Theorem 2), one line per label; ``clean`` accuracies are drawn as dots at r = 0.  The x range ends at
    ``x_max`` (None: :func:`fitted_x_max`, a little beyond the largest radius any curve certifies); the
    crossings of ``key`` (:func:`key_radii`) are marked by a dotted vertical line; with ``n`` (the number of
    images) each curve gets its pointwise 95 % Clopper-Pearson band (:func:`curve_interval`); ``title``
    becomes the figure's suptitle.  Returns the matplotlib Figure (saved to ``path`` when given)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    grid = np.asarray(r_grid, dtype=np.float64)
    x_max = fitted_x_max(grid, lip_curves, rs_curves) if x_max is None else float(x_max)
    for ax, bound, name, curves in zip(axes, ("lip", "rs"), ("Lip-based (Theorem 1)", "RS-based (Theorem 2)"),
                                       (lip_curves, rs_curves)):
        for i, (label, acc) in enumerate(curves.items()):
            color = f"C{i}"
            ax.plot(grid, 100 * np.asarray(acc), color=color, label=label)
            ax.plot(grid[:1], 100 * np.asarray(acc)[:1], "o", mfc="none", color=color)
            if n:
                low, high = curve_interval(acc, n)
                ax.fill_between(grid, 100 * low, 100 * high, color=color, alpha=0.2, lw=0)
            if clean and label in clean:
                ax.plot([0], [100 * clean[label]], "o", color=color)
        r = ((key or {}).get(bound) or {}).get("crossing")
        if r is not None:
            ax.axvline(r, color="gray", ls=":", lw=1, label=f"crossing r = {r:.3g}")
        ax.set_title(name)
        ax.set_xlabel(r"$\ell_2$ radius")
        ax.set_xlim(0, x_max)
        ax.grid(alpha=0.3)
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Certified accuracy (%)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        import io
        from pathlib import Path

        from .checkpoint import atomic_write_bytes

        buf = io.BytesIO()
        fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png")
        atomic_write_bytes(path, buf.getvalue())
    return fig
