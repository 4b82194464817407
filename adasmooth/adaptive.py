"""Adaptive smoothing: the mixed classifier h^{α_θ(x)}(x) with a learned, per-input α (Appendix B).

    h^{α_θ}(x) = log((1 - α_θ(x))·softmax(g(x)) + α_θ(x)·softmax(h(x)))

g (accurate) and h (robust) are frozen; only the mixing network α_θ (``mixing_net``) is trained,
with the composite loss (B.2) on clean inputs (pseudo-label ᾱ = 0) and on inputs attacked
through the whole mixed model (ᾱ = 1):

    ℓ = c_CE·CE(h^{α_θ}(x+δ), y) + c_BCE·BCE(γ, ᾱ) + c_prod·CE·BCE,     α_θ = σ(γ).

Training attacks use randomized radii ε' = ε·U(0.4, 1.1) per sample, round(χ²(20)) PGD steps
of size 5ε'/steps, a random start, α_θ in its full (0, 1) range, and the attacker's loss
(1 - w)·CE + w·BCE(γ, 1), w ~ U(0, 0.4), which also tries to push α_θ toward g.  (The
published code adds PGD momentum; ``attacks.pgd`` has none, so we leave it out.)

Threat models.  The supplement's "Setting A/B" are not defined in what we have, so we name ours:

- ``detached``: the attacker treats α_θ(x) as a constant: gradients reach x only through g and
  h (the taps feeding α_θ are detached); the attack loss is CE or the margin.
- ``full``: gradients also flow through α_θ, and the attacker adds the α-term
  w·BCE(γ, 1) to push α_θ toward the non-robust g (evaluated at w = 0 and w = 0.2 by default).

``robust_accuracy_adaptive`` reports ``full`` and the per-sample worst case over both threats
(and over the attack losses, and examples transferred from g and h alone).  Under ``full`` it also
runs APGD-T (pyautoattack) on the whole mixed model, on the inputs PGD left correct: on the default zoo, PGD-20 read 57 % where APGD-T
found 36.5 % (Sigmoid scale 2, 200 images).  Calibration (``calibrate_shift``) moves the head's shift so that
the clean accuracy hits a target, as the supplement does at 90 % ± 0.02 pt on CIFAR-10;
``calibrate_constant_alpha`` does the same for a constant-α mixture (the baseline).
"""
from __future__ import annotations

import contextlib
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoint, data, zoo
from .attacks import apgd_targeted, attack_loss, loss_name, pgd
from .calibration import Calibration, bisect_to_accuracy, check_target  # noqa: F401  (Calibration: re-exported)
from .mixing import check_alpha, mix_log_probs
from .mixing_net import MixingNetwork, for_models, full_range
from .runtime import __version__, batches, generator, get_device, progress_bar, seed_everything

log = logging.getLogger(__name__)

THREATS = ("full", "detached")
EVAL_LOSSES = ("ce", "margin")


# ---------------------------------------------------------------------------------------------
# The adaptive mixed classifier
# ---------------------------------------------------------------------------------------------
class AdaptiveMixedClassifier(nn.Module):
    """h^{α_θ(x)}(x): returns log-probabilities; ``forward(x, return_alpha=True)`` gives (logp, α, γ).

    g and h run once each (``forward_with_taps``), are frozen and stay in eval mode even after
    ``.train()``.  ``attack_through_alpha=False`` detaches the taps that feed α_θ, so input
    gradients do not flow through α_θ (α_θ's own parameters still get gradients).
    """

    def __init__(self, g: nn.Module, h: nn.Module, net: MixingNetwork, attack_through_alpha: bool = True):
        super().__init__()
        if g.num_classes != h.num_classes:
            raise ValueError(f"g and h must have the same number of classes, got {g.num_classes} "
                             f"and {h.num_classes}")
        if g.in_channels != h.in_channels:
            raise ValueError(f"g and h must take the same input channels, got {g.in_channels} and {h.in_channels}")
        if tuple(g.tap_channels) != net.g_taps or tuple(h.tap_channels) != net.h_taps:
            raise ValueError(f"net expects g_taps={net.g_taps}, h_taps={net.h_taps}; the models have "
                             f"{tuple(g.tap_channels)} and {tuple(h.tap_channels)}")
        self.g, self.h, self.net = g, h, net
        self.attack_through_alpha = bool(attack_through_alpha)
        self.num_classes, self.in_channels = g.num_classes, g.in_channels
        for p in list(g.parameters()) + list(h.parameters()):
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.g.eval()
        self.h.eval()
        return self

    def forward(self, x: torch.Tensor, return_alpha: bool = False):
        zg, taps_g = self.g.forward_with_taps(x)
        zh, taps_h = self.h.forward_with_taps(x)
        if not self.attack_through_alpha:
            taps_g, taps_h = [t.detach() for t in taps_g], [t.detach() for t in taps_h]
        alpha, gamma = self.net(taps_g, taps_h, return_gamma=True)
        logp = mix_log_probs(F.log_softmax(zg.float(), 1), F.log_softmax(zh.float(), 1), alpha)
        return (logp, alpha, gamma) if return_alpha else logp

    @contextlib.contextmanager
    def threat(self, name: str):
        """Temporarily switch to threat model ``name`` (``full``: gradients through α_θ; ``detached``)."""
        if name not in THREATS:
            raise ValueError(f"threat must be one of {THREATS}, got {name!r}")
        old = self.attack_through_alpha
        self.attack_through_alpha = name == "full"
        try:
            yield self
        finally:
            self.attack_through_alpha = old


# ---------------------------------------------------------------------------------------------
# Composite loss (B.2)
# ---------------------------------------------------------------------------------------------
def composite_loss(logp: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor, pseudo: torch.Tensor, *,
                   c_ce: float = 0.0, c_bce: float = 1.5, c_prod: float = 0.2,
                   weight: torch.Tensor | None = None):
    """Mean over samples of c_CE·CE(h^α, y) + c_BCE·BCE(γ, ᾱ) + c_prod·CE·BCE, and its parts.

    ``logp`` are the mixed log-probabilities (CE = -logp_y), ``gamma`` the pre-Sigmoid output
    (BCE with logits), ``pseudo`` the pseudo-labels ᾱ ∈ {0, 1}, ``weight`` optional per-sample
    weights.  Returns ``(mean, {"ce", "bce", "per_sample"})`` with per-sample tensors.
    """
    n = logp.shape[0]
    if y.shape != (n,) or gamma.shape != (n,) or pseudo.shape != (n,):
        raise ValueError(f"y, gamma and pseudo must have shape ({n},), got {tuple(y.shape)}, "
                         f"{tuple(gamma.shape)}, {tuple(pseudo.shape)}")
    if ((pseudo != 0) & (pseudo != 1)).any():
        raise ValueError("pseudo labels must be 0 (clean) or 1 (attacked)")
    ce = F.nll_loss(logp.float(), y, reduction="none")
    bce = F.binary_cross_entropy_with_logits(gamma.float(), pseudo.float(), reduction="none")
    per = c_ce * ce + c_bce * bce + c_prod * ce * bce
    if weight is not None:
        per = per * weight
    return per.mean(), {"ce": ce, "bce": bce, "per_sample": per}


# ---------------------------------------------------------------------------------------------
# Attacks on the adaptive model
# ---------------------------------------------------------------------------------------------
class _AlphaTermAttack:
    """Adapter for ``attacks.pgd``: the model call keeps γ, the loss adds the attacker's α-term

        L = (1 - w)·L_base(h^α(x'), y) + w·BCE(γ(x'), 1)   (maximised: pushes α_θ toward g)

    ``w`` is a float or a per-sample tensor (then pgd must see the whole batch at once).
    """

    def __init__(self, model: AdaptiveMixedClassifier, base_loss, w):
        self.model, self.base_loss, self.w, self.gamma = model, base_loss, w, None

    def __call__(self, x):
        logp, _, self.gamma = self.model(x, return_alpha=True)
        return logp

    def loss(self, z, y):
        base = attack_loss(self.base_loss, z, y)
        if isinstance(self.w, (int, float)) and self.w == 0:
            return base
        w = torch.as_tensor(self.w, dtype=z.dtype, device=z.device)
        if w.ndim and w.shape[0] != z.shape[0]:
            raise ValueError(f"per-sample w has {w.shape[0]} entries for a batch of {z.shape[0]}")
        bce = F.binary_cross_entropy_with_logits(self.gamma.float(), torch.ones_like(self.gamma.float()),
                                                 reduction="none")
        return (1 - w) * base + w * bce


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def training_attack(model: AdaptiveMixedClassifier, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                    norm: str = "linf", seed: int = 0, eps_range=(0.4, 1.1), steps_df: int = 20,
                    step_factor: float = 5.0, w_max: float = 0.4, momentum_max: float = 0.0,
                    losses=("ce",), random_start: bool = True) -> torch.Tensor:
    """PGD with randomized radii through the whole mixed model, α_θ in its full (0, 1) range.

    Per sample ε' = ε·U(eps_range), w ~ U(0, w_max); per call steps = max(1, round(χ²(steps_df)))
    and step size step_factor·ε'/steps; loss (1 - w)·CE + w·BCE(γ, 1); with ``momentum_max`` > 0 a
    per-sample PGD momentum μ ~ U(0, momentum_max) (the published code: 0.9).  With several
    ``losses`` (``ce``, ``margin``, ``dlr``) each call draws one for the attacker's base loss, so α_θ
    also sees the evaluation's losses in training.  Runs in eval mode
    (BatchNorm running statistics) and restores the model's mode.
    """
    lo, hi = eps_range
    if not (0 <= lo <= hi):
        raise ValueError(f"eps_range must satisfy 0 <= low <= high, got {eps_range}")
    if steps_df < 1:
        raise ValueError(f"steps_df must be >= 1, got {steps_df}")
    gen = generator(seed)  # drawn on the CPU: the same numbers on every device
    n = x.shape[0]
    eps_i = eps * (lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64))
    chi2 = torch.randn(steps_df, generator=gen, dtype=torch.float64).pow(2).sum().item()
    steps = max(1, round(chi2))
    w = w_max * torch.rand(n, generator=gen)
    pgd_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen).item())
    mom = (momentum_max * torch.rand(n, generator=gen)).to(x.device) if momentum_max > 0 else None
    losses = tuple(losses)
    if not losses:
        raise ValueError("losses must name at least one attack loss")
    base = losses[int(torch.randint(0, len(losses), (1,), generator=gen).item())] if len(losses) > 1 else losses[0]
    adapter = _AlphaTermAttack(model, loss_name(base), w.to(x.device))
    with _eval_mode(model), full_range(model.net), model.threat("full"):
        return pgd(adapter, x, y, eps=eps_i.to(x.device, x.dtype), steps=steps, norm=norm,
                   step_size=(step_factor * eps_i / steps).to(x.device, x.dtype),
                   random_start=random_start, loss=adapter.loss, seed=pgd_seed, momentum=mom)


def attack_adaptive(model: AdaptiveMixedClassifier, x: torch.Tensor, y: torch.Tensor, *, threat: str = "full",
                    eps: float, steps: int = 20, norm: str = "linf", loss: str = "ce", alpha_weight: float = 0.2,
                    step_size=None, random_start: bool = True, seed: int = 0, batch_size: int | None = None,
                    progress: bool = False) -> torch.Tensor:
    """PGD on h^{α_θ} under threat model ``threat`` (see the module docstring); returns x_adv.

    ``loss`` is ``ce`` or ``margin`` (also ``dlr``); ``alpha_weight`` is the attacker's w on
    BCE(γ, 1) under ``full`` (ignored under ``detached``, where γ carries no gradient to x).
    The model is attacked in eval mode, with its evaluation α range.
    """
    if threat not in THREATS:
        raise ValueError(f"threat must be one of {THREATS}, got {threat!r}")
    if not 0 <= alpha_weight <= 1:
        raise ValueError(f"alpha_weight must lie in [0, 1], got {alpha_weight}")
    w = float(alpha_weight) if threat == "full" else 0.0
    adapter = _AlphaTermAttack(model, loss_name(loss), w)
    with _eval_mode(model), model.threat(threat):
        return pgd(adapter, x, y, eps=eps, steps=steps, norm=norm, step_size=step_size,
                   random_start=random_start, loss=adapter.loss, seed=seed, batch_size=batch_size,
                   progress=progress)


@contextlib.contextmanager
def softened_head(net: MixingNetwork, surrogate_scale: float):
    """Temporarily divide the head's γ by T = scale / ``surrogate_scale`` (α_θ stays on the same side of 1/2,
    softer): the surrogate that a saturated Sigmoid cannot hide its gradient from.  Restores the head."""
    scale, shift = float(net.scale), float(net.shift)
    temp = scale / surrogate_scale
    net.set_head(scale / temp, shift / temp)
    try:
        yield net
    finally:
        net.set_head(scale, shift)


@torch.no_grad()
def _correct(model, x, y, batch_size=500) -> torch.Tensor:
    out = torch.empty(len(x), dtype=torch.bool, device=x.device)
    for sl in batches(len(x), batch_size):
        out[sl] = model(x[sl]).argmax(1) == y[sl]
    return out


def robust_accuracy_adaptive(model: AdaptiveMixedClassifier, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                             steps: int = 20, norm: str = "linf", losses=EVAL_LOSSES, alpha_weights=(0.0, 0.2),
                             random_start: bool = True, seed: int = 0, batch_size: int = 250,
                             apgd_iter: int = 100, n_targets: int = 3, transfer: bool = True,
                             surrogate_scale: float | None = None, device=None, progress: bool = False) -> dict:
    """Clean and attacked accuracy of h^{α_θ} under both threat models.

    ``full`` runs one PGD-``steps`` attack per loss in ``losses`` and per attacker weight w in
    ``alpha_weights``; ``detached`` one PGD per loss.  With ``transfer``, CE-PGD examples crafted
    on g alone and on h alone are tried too (they need no gradient of α_θ, so they count under
    both threats).  With ``surrogate_scale`` below the head's Sigmoid scale s, a saturated Sigmoid
    cannot hide α_θ's gradient: PGD (each loss, the largest w) also attacks a surrogate whose γ is
    divided by T = s / surrogate_scale (α_θ on the same side of 1/2, softer), and its examples are
    judged on the model itself (``full/surrogate/<loss>``).  Last, APGD-T (``apgd_iter``
    iterations, ``n_targets`` classes; 0: skip) on the whole model (gradients through α_θ), only on
    the inputs every full-threat attack left correct.
    Returns ``{"clean", "full", "detached", "worst", "per_attack": {"full/ce/w=0.2": ...,
    "transfer/g": ..., "full/apgd-t": ..., "detached/margin": ...}, "n"}`` where ``full`` and
    ``detached`` are per-sample worst cases within a threat model and ``worst`` over both
    (``full/apgd-t`` is cumulative: correct under every full-threat attack).
    """
    if not isinstance(apgd_iter, int) or apgd_iter < 0:
        raise ValueError(f"apgd_iter must be an int >= 0 (0: no APGD-T), got {apgd_iter!r}")
    if surrogate_scale is not None and not (math.isfinite(surrogate_scale) and surrogate_scale > 0):
        raise ValueError(f"surrogate_scale must be a finite number > 0 or None, got {surrogate_scale!r}")
    device = get_device(device)
    model = model.to(device)
    x, y = x.to(device), y.to(device)
    with _eval_mode(model):
        clean = _correct(model, x, y)
    per_threat = {t: clean.clone() for t in THREATS}
    per_attack = {}
    runs = ([("full", loss, w) for loss in losses for w in alpha_weights]
            + [("detached", loss, 0.0) for loss in losses])
    for threat, loss, w in runs:
        adv = attack_adaptive(model, x, y, threat=threat, eps=eps, steps=steps, norm=norm, loss=loss,
                              alpha_weight=w, random_start=random_start, seed=seed, batch_size=batch_size,
                              progress=progress)
        with _eval_mode(model):
            ok = _correct(model, adv, y) & clean
        per_attack[f"{threat}/{loss}" + (f"/w={w:g}" if threat == "full" else "")] = ok.float().mean().item()
        per_threat[threat] &= ok
    if surrogate_scale is not None and surrogate_scale < float(model.net.scale):
        for loss in losses:
            with softened_head(model.net, surrogate_scale):
                adv = attack_adaptive(model, x, y, threat="full", eps=eps, steps=steps, norm=norm, loss=loss,
                                      alpha_weight=max(alpha_weights), random_start=random_start, seed=seed,
                                      batch_size=batch_size, progress=progress)
            with _eval_mode(model):
                ok = _correct(model, adv, y) & clean
            per_attack[f"full/surrogate/{loss}"] = ok.float().mean().item()
            per_threat["full"] &= ok
    if transfer:  # crafted on g or h alone: the same examples under either threat model
        for name, source in (("g", model.g), ("h", model.h)):
            adv = pgd(source, x, y, eps=eps, steps=steps, norm=norm, loss="ce", random_start=random_start,
                      seed=seed, batch_size=batch_size)
            with _eval_mode(model):
                ok = _correct(model, adv, y) & clean
            per_attack[f"transfer/{name}"] = ok.float().mean().item()
            for t in THREATS:
                per_threat[t] &= ok
    if apgd_iter:
        idx = per_threat["full"].nonzero().flatten()
        if len(idx):
            with _eval_mode(model), model.threat("full"):
                adv = apgd_targeted(model, x[idx], y[idx], eps=eps, norm=norm, n_iter=apgd_iter,
                                    n_targets=n_targets, seed=seed, batch_size=batch_size)
                per_threat["full"][idx] = _correct(model, adv, y[idx])
        per_attack["full/apgd-t"] = per_threat["full"].float().mean().item()
    worst = per_threat["full"] & per_threat["detached"]
    return {"clean": clean.float().mean().item(), "full": per_threat["full"].float().mean().item(),
            "detached": per_threat["detached"].float().mean().item(), "worst": worst.float().mean().item(),
            "per_attack": per_attack, "n": len(x)}


# ---------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------
@dataclass
class MixingConfig:
    """Hyper-parameters of one mixing-network run (all of it goes into the checkpoint's hash)."""

    eps: float = 0.1
    norm: str = "linf"
    epochs: int = 1
    batch_size: int = 128           # clean images per step (plus as many attacked ones)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_frac: float = 0.04       # share of the steps with a linear warm-up (then cosine)
    grad_clip: float = 10.0
    c_ce: float = 0.0
    c_bce: float = 1.5
    c_prod: float = 0.2
    clean_weight: float = 1.0       # per-sample weight of clean inputs in the loss (attacked: 1)
    eps_low: float = 0.4            # ε' = ε·U(eps_low, eps_high)
    eps_high: float = 1.1
    steps_df: int = 20              # PGD steps = round(χ²(steps_df))
    step_factor: float = 5.0        # step size = step_factor·ε'/steps
    w_max: float = 0.4              # attacker's α-term weight w ~ U(0, w_max)
    momentum_max: float = 0.0       # training-attack momentum μ ~ U(0, momentum_max) (published: 0.9)
    attack_losses: tuple = ("ce",)  # training-attack base losses, one drawn per step (ce, margin, dlr)
    width: int = 64
    blocks: int = 1
    # momentum of the head's BatchNorm running statistics (used by training attacks and at
    # evaluation). The published 0.01 averages over ~1000s of updates; in runs of a few hundred
    # steps it lags the drifting γ_raw far behind, so we default to 0.1.
    bn_momentum: float = 0.1
    train_subset: int | None = None  # class-balanced subset of the training set
    split: str = "fit"              # training images: the training set less the validation slice
    seed: int = 0
    amp: bool = True                # bf16 autocast, used on CUDA only

    def __post_init__(self):
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {self.norm!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must lie in [0, 1), got {self.warmup_frac}")
        if min(self.c_ce, self.c_bce, self.c_prod) < 0:
            raise ValueError("c_ce, c_bce and c_prod must be >= 0")
        if not 0 <= self.eps_low <= self.eps_high:
            raise ValueError(f"need 0 <= eps_low <= eps_high, got ({self.eps_low}, {self.eps_high})")
        if not 0 <= self.w_max <= 1:
            raise ValueError(f"w_max must lie in [0, 1], got {self.w_max}")
        self.attack_losses = tuple(self.attack_losses)
        for loss in self.attack_losses or ("",):
            loss_name(loss)  # ValueError naming the allowed losses
        if not 0 <= self.momentum_max < 1:
            raise ValueError(f"momentum_max must lie in [0, 1), got {self.momentum_max}")
        if self.split not in ("train", "fit"):
            raise ValueError(f"split must be 'train' or 'fit', got {self.split!r}")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must lie in (0, 1], got {self.bn_momentum}")

    def to_dict(self) -> dict:
        """The config as JSON types (tuples as lists), as it is stored in a checkpoint's metadata."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _scheduler(opt, total: int, warmup_frac: float):
    warm = max(1, int(round(warmup_frac * total)))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_mixing_network(g: nn.Module, h: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         config: MixingConfig | None = None, *, net: MixingNetwork | None = None, device=None,
                         progress: bool = False, state_path: str | Path | None = None, save_every: int = 50,
                         max_steps: int | None = None, **kwargs) -> tuple[AdaptiveMixedClassifier, dict]:
    """Train α_θ on (x, y) with g, h frozen; return ``(model, {"loss", "ce", "bce", "seconds", "steps"})``.

    Each step takes ``batch_size`` clean images (ᾱ = 0) and their training attacks (ᾱ = 1),
    minimises the composite loss with AdamW (linear warm-up, cosine decay), clips the gradient
    norm, and uses bf16 autocast on CUDA only.  The head's BatchNorm running statistics are
    initialised from the first batch (then an exponential average with ``bn_momentum``).
    Step k draws its randomness from a generator seeded with (seed, k), so a run resumed from
    ``state_path`` (written atomically every ``save_every`` steps) gives the same weights.
    ``kwargs`` build a ``MixingConfig`` when ``config`` is None; ``max_steps`` stops early.
    """
    if config is not None and kwargs:
        raise ValueError("pass either config or keyword hyper-parameters, not both")
    cfg = config if config is not None else MixingConfig(**kwargs)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    device = get_device(device)
    seed_everything(cfg.seed)
    if net is None:
        net = for_models(g, h, width=cfg.width, blocks=cfg.blocks)
    net.bn.momentum = cfg.bn_momentum
    model = AdaptiveMixedClassifier(g, h, net).to(device)
    n = x.shape[0]
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"need at least batch_size={cfg.batch_size} training images, got {n}")
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(opt, total, cfg.warmup_frac)
    hist = {"loss": [], "ce": [], "bce": [], "seconds": 0.0, "steps": 0}
    meta = checkpoint.resume(state_path, cfg.to_dict(), {"net": net, "optimizer": opt, "scheduler": sched},
                             map_location=device)
    if meta is not None:
        hist = meta["history"]
        log.info("resuming the mixing network from step %d", hist["steps"])
    use_amp = cfg.amp and device.type == "cuda"
    last = total if max_steps is None else min(total, max_steps)
    bar = progress_bar(range(hist["steps"], last), progress=progress, desc="mixing network", leave=False)
    t0 = time.perf_counter()
    perm, perm_epoch = None, -1
    for k in bar:
        epoch, i = divmod(k, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = torch.randperm(n, generator=generator(cfg.seed * 100_003 + epoch)), epoch
        idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        xb, yb = x[idx].to(device), y[idx].to(device)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            adv = training_attack(model, xb, yb, eps=cfg.eps, norm=cfg.norm, seed=cfg.seed * 1_000_003 + k,
                                  eps_range=(cfg.eps_low, cfg.eps_high), steps_df=cfg.steps_df,
                                  step_factor=cfg.step_factor, w_max=cfg.w_max,
                                  momentum_max=cfg.momentum_max, losses=cfg.attack_losses)
            model.train()
            if k == 0:  # the head's running statistics start from the first batch's, not (0, 1)
                net.bn.reset_running_stats()
                net.bn.momentum, momentum = None, net.bn.momentum
            logp, _, gamma = model(torch.cat([xb, adv]), return_alpha=True)
            if k == 0:
                net.bn.momentum = momentum
        m = len(yb)
        pseudo = torch.cat([torch.zeros(m, device=device), torch.ones(m, device=device)])
        weight = torch.cat([torch.full((m,), cfg.clean_weight, device=device), torch.ones(m, device=device)])
        loss, parts = composite_loss(logp, torch.cat([yb, yb]), gamma, pseudo, c_ce=cfg.c_ce, c_bce=cfg.c_bce,
                                     c_prod=cfg.c_prod, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        hist["loss"].append(loss.item())
        hist["ce"].append(parts["ce"].mean().item())
        hist["bce"].append(parts["bce"].mean().item())
        hist["steps"] = k + 1
        if progress:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if state_path is not None and ((k + 1) % save_every == 0 or k + 1 == last):
            hist["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpoint.save(state_path, {"net": net.state_dict(), "optimizer": opt.state_dict(),
                                         "scheduler": sched.state_dict()},
                            {"config": cfg.to_dict(), "history": hist})
    hist["seconds"] += time.perf_counter() - t0
    model.eval()
    return model, hist


def training_curve(hist: dict, points: int = 25) -> dict:
    """The training curve recorded with a mixing network: the composite loss and its CE and BCE parts,
    averaged over ``points`` consecutive windows of steps (``step`` is each window's last step)."""
    n = len(hist["loss"])
    if n == 0:
        return {"step": [], "loss": [], "ce": [], "bce": []}
    edges = sorted({round(i * n / points) for i in range(1, points + 1)} | {n})
    out, start = {"step": [], "loss": [], "ce": [], "bce": []}, 0
    for end in edges:
        if end <= start:
            continue
        out["step"].append(end)
        for k in ("loss", "ce", "bce"):
            vals = hist[k][start:end]
            out[k].append(sum(vals) / len(vals))
        start = end
    return out


# ---------------------------------------------------------------------------------------------
# Checkpoints in the zoo cache
# ---------------------------------------------------------------------------------------------
def _identity(g_name, h_name, cfg: MixingConfig, base_overrides, root) -> dict:
    metas = {}
    for role, name in (("g", g_name), ("h", h_name)):
        meta = zoo.metadata(name, base_overrides, root)
        if meta is None:
            raise checkpoint.CheckpointError(
                f"base model {name!r} is not cached in {zoo.cache_dir(root)}; train it first "
                f"(python -m adasmooth zoo train {name})")
        metas[role] = {"name": name, "config_hash": meta["config_hash"], "sha256": meta["sha256"]}
    return {"kind": "mixing-network", "g": metas["g"], "h": metas["h"], "mixing": cfg.to_dict()}


def mixing_stem(g_name: str, h_name: str, config: MixingConfig, *, base_overrides=None, root=None,
                net_root=None) -> Path:
    """Checkpoint path (without suffix) ``<zoo cache>/mixnet-<g>-<h>-<hash>``."""
    ident = _identity(g_name, h_name, config, base_overrides, root)
    folder = zoo.cache_dir(net_root if net_root is not None else root)
    return folder / f"mixnet-{g_name}-{h_name}-{checkpoint.config_hash(ident)}"


def get_mixing_network(g_name: str, h_name: str, config: MixingConfig | None = None, *,
                       train_if_missing: bool = True, root=None, net_root=None,
                       base_overrides: dict | None = None, device=None, progress: bool = False,
                       **kwargs) -> AdaptiveMixedClassifier:
    """Load (or train and cache) α_θ for zoo models g = ``g_name``, h = ``h_name``.

    The base models must already be cached in ``root`` (they are never trained here); the
    network's checkpoint lives in ``net_root`` (default: the same zoo cache).  The checkpoint's
    name and metadata hold a hash of the mixing config and of both base checkpoints, so a
    retrained base model never reuses a stale network; a corrupt or partial checkpoint raises
    ``CheckpointError``.  Returns the eval-mode ``AdaptiveMixedClassifier`` with a
    ``metadata`` attribute (training time, loss history summary).
    """
    cfg = config if config is not None else MixingConfig(**kwargs)
    device = get_device(device)
    if zoo.recipe(g_name).dataset != zoo.recipe(h_name).dataset:
        raise ValueError(f"g and h must share a dataset, got {zoo.recipe(g_name).dataset} and "
                         f"{zoo.recipe(h_name).dataset}")
    g = zoo.get(g_name, train_if_missing=False, overrides=base_overrides, root=root, device=device)
    h = zoo.get(h_name, train_if_missing=False, overrides=base_overrides, root=root, device=device)
    ident = _identity(g_name, h_name, cfg, base_overrides, root)
    s = mixing_stem(g_name, h_name, cfg, base_overrides=base_overrides, root=root, net_root=net_root)
    if not checkpoint.path_for(s, ".json").exists():
        if not train_if_missing:
            raise checkpoint.CheckpointError(f"mixing network {s.name} is not cached at {s}.pt")
        dataset = zoo.recipe(g_name).dataset
        x, y = data.load(dataset, cfg.split)
        if cfg.train_subset:
            idx = data.balanced_subset(y, cfg.train_subset // data.info(dataset)["num_classes"], seed=cfg.seed)
            x, y = x[idx], y[idx]
        state_path = s.parent / (s.name + ".train-state")
        log.info("training mixing network %s on %s (%d images)", s.name, device, len(x))
        model, hist = train_mixing_network(g, h, x, y, cfg, device=device, progress=progress,
                                           state_path=state_path)
        import torchvision

        meta = {"name": s.name, "config": ident, "config_hash": checkpoint.config_hash(ident),
                "train_seconds": round(hist["seconds"], 1), "steps": hist["steps"],
                "final_loss": hist["loss"][-1], "first_loss": hist["loss"][0],
                "curve": training_curve(hist),
                "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                             "python": platform.python_version(), "adasmooth": __version__},
                "device": str(device), "threads": torch.get_num_threads()}
        checkpoint.save(s, {k: v.detach().cpu() for k, v in model.net.state_dict().items()}, meta)
        checkpoint.remove(state_path)
    state, meta = checkpoint.load(s, map_location="cpu")
    if meta.get("config") != ident:
        raise checkpoint.CheckpointError(f"checkpoint {s} was made with another configuration")
    net = for_models(g, h, width=cfg.width, blocks=cfg.blocks, bn_momentum=cfg.bn_momentum)
    net.load_state_dict(state, strict=True)
    model = AdaptiveMixedClassifier(g, h, net).to(device).eval()
    model.metadata = meta
    return model


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _log_probs(model, x, device, batch_size):
    out = []
    for sl in batches(len(x), batch_size):
        out.append(F.log_softmax(model(x[sl].to(device)).float(), 1))
    return torch.cat(out)


@torch.no_grad()
def mixture_parts(model: AdaptiveMixedClassifier, x: torch.Tensor, device, batch_size: int = 500):
    """g's and h's log-probabilities and BN(γ_raw) on ``x``: everything a re-mix with another head needs."""
    lg, lh, zs = [], [], []
    for sl in batches(len(x), batch_size):
        xb = x[sl].to(device)
        zg, tg = model.g.forward_with_taps(xb)
        zh, th = model.h.forward_with_taps(xb)
        lg.append(F.log_softmax(zg.float(), 1))
        lh.append(F.log_softmax(zh.float(), 1))
        zs.append(model.net.normalized_gamma(tg, th))
    return torch.cat(lg), torch.cat(lh), torch.cat(zs)


def calibrate_shift(model: AdaptiveMixedClassifier, x: torch.Tensor, y: torch.Tensor, target_clean_acc: float,
                    tol: float = 2e-4, *, batch_size: int = 500, max_iter: int = 200, device=None) -> Calibration:
    """Set the head's shift so that the clean accuracy of h^{α_θ} on (x, y) is ``target_clean_acc``.

    g's and h's log-probabilities and BN(γ_raw) are computed once; each bisection step then
    re-mixes with α = α_min + (α_max - α_min)·σ(scale·BN(γ_raw) + shift).  Larger shift → larger
    α → closer to h.  Raises ``ValueError`` when the target lies outside
    [acc(h^{α_max}), acc(h^{α_min})] (± tol); with n images the achievable accuracies are
    multiples of 1/n, so when none lies within ``tol`` the closest one is used
    (``within_tol=False``).  The shift is set on ``model.net`` and the result returned.
    """
    check_target(target_clean_acc, tol)
    device = get_device(device)
    model = model.to(device).eval()
    y = y.to(device)
    net = model.net
    lg, lh, z = mixture_parts(model, x, device, batch_size)
    amin, amax = net.alpha_range

    def acc(shift):
        a = amin + (amax - amin) * torch.sigmoid(z * net.scale + shift)
        return (mix_log_probs(lg, lh, a).argmax(1) == y).double().mean().item()

    # σ(±60) is 0 / 1 in float32: the ends give α_min and α_max for every input
    span = 60.0 + float(net.scale) * float(z.abs().max())
    res = bisect_to_accuracy(acc, -span, span, float(target_clean_acc), tol, len(y), max_iter, "the head's shift",
                  f"α_min={amin:g} .. α_max={amax:g}")
    net.set_head(shift=res.value)
    return res


def calibrate_constant_alpha(g: nn.Module, h: nn.Module, x: torch.Tensor, y: torch.Tensor, target_clean_acc: float,
                             tol: float = 2e-4, *, batch_size: int = 500, max_iter: int = 200,
                             device=None) -> Calibration:
    """The constant α ∈ [0, 1] at which h^α on (x, y) has clean accuracy ``target_clean_acc``
    (same rules as :func:`calibrate_shift`; ``value`` is α)."""
    check_target(target_clean_acc, tol)
    device = get_device(device)
    g, h = g.to(device).eval(), h.to(device).eval()
    y = y.to(device)
    lg, lh = _log_probs(g, x, device, batch_size), _log_probs(h, x, device, batch_size)

    def acc(alpha):
        return (mix_log_probs(lg, lh, alpha).argmax(1) == y).double().mean().item()

    res = bisect_to_accuracy(acc, 0.0, 1.0, float(target_clean_acc), tol, len(y), max_iter, "constant α",
                  "α = 0 .. 1")
    check_alpha(res.value, "alpha")
    return res
