"""Input checks shared by the certificates: probabilities, α, confidence levels, the top two classes."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..mixing import check_alpha


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
