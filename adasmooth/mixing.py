"""The mixed classifier h^α(x) = log((1-α)·softmax(g(x)) + α·softmax(h(x))).

Computed as logsumexp([log(1-α) + log_softmax(g(x)), log(α) + log_softmax(h(x))]) so that
extreme logits and α ∈ {0, 1} stay finite.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def check_alpha(alpha, name: str = "alpha") -> torch.Tensor | float:
    """Raise ``ValueError`` unless every α lies in [0, 1]."""
    a = torch.as_tensor(alpha, dtype=torch.float64) if not torch.is_tensor(alpha) else alpha.detach().double()
    if torch.isnan(a).any() or (a < 0).any() or (a > 1).any():
        shown = alpha if a.numel() == 1 else f"values in [{a.min().item():.4g}, {a.max().item():.4g}]"
        raise ValueError(f"{name} must lie in [0, 1], got {shown}")
    return alpha


def mix_log_probs(logp_g: torch.Tensor, logp_h: torch.Tensor, alpha) -> torch.Tensor:
    """log((1-α)·exp(logp_g) + α·exp(logp_h)) via logsumexp; α a float or a per-sample (N,) tensor.

    Where a weight is 0 its term is dropped exactly (log 0 = -inf would give NaN gradients).
    """
    a = torch.as_tensor(alpha, dtype=logp_g.dtype, device=logp_g.device)
    if a.ndim == 1:
        a = a[:, None]
    a = a.expand_as(logp_g)
    # log-weights, with 0-weights replaced by a finite value and masked below
    la = torch.log(torch.where(a > 0, a, torch.ones_like(a)))
    l1a = torch.log1p(-torch.where(a < 1, a, torch.zeros_like(a)))
    term_g = torch.where(a < 1, l1a + logp_g, torch.full_like(logp_g, -float("inf")))
    term_h = torch.where(a > 0, la + logp_h, torch.full_like(logp_h, -float("inf")))
    # torch.logsumexp is finite (with finite gradients) when one of the two terms is -inf
    return torch.logsumexp(torch.stack([term_g, term_h]), 0)
