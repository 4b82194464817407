"""The mixed classifier h^α from g's and h's class probabilities: its predictions and clean accuracy, the α
that matches a target accuracy, and Fig. SM1's certificates of one α (Theorems 1 and 2)."""
from __future__ import annotations

import numpy as np
import torch

from ..calibration import grid_to_accuracy
from ..mixing import check_alpha, mix_log_probs
from .inputs import _alphas, _probs
from .lipschitz import lipschitz_radius
from .smoothing import bounded_probs, rs_radius, smoothed_lipschitz


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
