"""The composite loss (B.2) that trains α_θ, on clean inputs (pseudo-label ᾱ = 0) and on inputs
attacked through the whole mixed model (ᾱ = 1):

    ℓ = c_CE·CE(h^{α_θ}(x+δ), y) + c_BCE·BCE(γ, ᾱ) + c_prod·CE·BCE,     α_θ = σ(γ).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
