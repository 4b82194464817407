"""Lemma 1 (the margin μ = (1-α)/α that h needs) and Theorem 1 (the Lipschitz radius r^α_Lip) of
supplement Appendix D."""
from __future__ import annotations

import math

import torch

from ..mixing import check_alpha
from .inputs import _alphas, _probs, _top2


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
