"""Attacks on the adaptive model h^{α_θ}: the randomized training attack, PGD under a threat model
(``full`` or ``detached``, see :mod:`adasmooth.adaptive.model`), and the softened-head surrogate.

Training attacks use randomized radii ε' = ε·U(0.4, 1.1) per sample, round(χ²(20)) PGD steps
of size 5ε'/steps, a random start, α_θ in its full (0, 1) range, and the attacker's loss
(1 - w)·CE + w·BCE(γ, 1), w ~ U(0, 0.4), which also tries to push α_θ toward g.  (The
published code adds PGD momentum; ``attacks.pgd`` has none, so we leave it out.)
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..attacks import attack_loss, loss_name, pgd
from ..mixing_net import MixingNetwork, full_range
from ..runtime import generator
from .model import THREATS, AdaptiveMixedClassifier, _eval_mode


class _AlphaTermAttack:
    """Adapter for ``attacks.pgd``: the model call keeps γ, the loss adds the attacker's α-term

        L = (1 - w)·L_base(h^α(x'), y) + w·BCE(γ(x'), 1)   (maximised: pushes α_θ toward g)

    ``w`` is a float or a per-sample tensor (then pgd must see the whole batch at once).
    """

    def __init__(self, model: AdaptiveMixedClassifier, base_loss, w, targeted: bool = False):
        self.model, self.base_loss, self.w, self.gamma = model, base_loss, w, None
        self.targeted = targeted

    def __call__(self, x):
        logp, _, self.gamma = self.model(x, return_alpha=True)
        return logp

    def loss(self, z, y):
        base = attack_loss(self.base_loss, z, y, self.targeted)
        if isinstance(self.w, (int, float)) and self.w == 0:
            return base
        w = torch.as_tensor(self.w, dtype=z.dtype, device=z.device)
        if w.ndim and w.shape[0] != z.shape[0]:
            raise ValueError(f"per-sample w has {w.shape[0]} entries for a batch of {z.shape[0]}")
        bce = F.binary_cross_entropy_with_logits(self.gamma.float(), torch.ones_like(self.gamma.float()),
                                                 reduction="none")
        return (1 - w) * base + w * bce



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
                    schedule: str = "constant", start: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                    progress: bool = False) -> torch.Tensor:
    """PGD on h^{α_θ} under threat model ``threat`` (see the module docstring); returns x_adv.

    ``loss`` is ``ce`` or ``margin`` (also ``dlr``); ``alpha_weight`` is the attacker's w on
    BCE(γ, 1) under ``full`` (ignored under ``detached``, where γ carries no gradient to x).
    ``schedule`` and ``start``: as in :func:`attacks.pgd`; with ``targets`` (one class per input) the
    base loss pulls toward that class (targeted CE or margin) and success means reaching it.
    The model is attacked in eval mode, with its evaluation α range.
    """
    if threat not in THREATS:
        raise ValueError(f"threat must be one of {THREATS}, got {threat!r}")
    if not 0 <= alpha_weight <= 1:
        raise ValueError(f"alpha_weight must lie in [0, 1], got {alpha_weight}")
    w = float(alpha_weight) if threat == "full" else 0.0
    adapter = _AlphaTermAttack(model, loss_name(loss), w, targeted=targets is not None)
    with _eval_mode(model), model.threat(threat):
        return pgd(adapter, x, y if targets is None else targets, eps=eps, steps=steps, norm=norm,
                   step_size=step_size, random_start=random_start, loss=adapter.loss, seed=seed,
                   batch_size=batch_size, schedule=schedule, start=start, targeted=targets is not None,
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
