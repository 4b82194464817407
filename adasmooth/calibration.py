"""Calibration: setting one scalar knob of a mixer (a constant α, the head's shift, α_min, MixedNUTS's α)
so that its clean accuracy on given images reaches a target.

The accuracy as a function of the knob is passed in as ``acc_fn(value) -> float`` (computed from
logits or probabilities evaluated once), so every mixer with one scalar knob uses the same routines:

- :func:`bisect_to_accuracy`: bisection for a monotone ``acc_fn`` (the constant α and the shift of
  :mod:`adasmooth.adaptive`, the validation head of :mod:`adasmooth.learned`, MixedNUTS's α in
  :mod:`adasmooth.nuts`); the closest achievable accuracy when none is within ``tol``.
- :func:`grid_to_accuracy`: the grid point whose accuracy is closest to the target, ties to the
  largest value (Fig. SM1's matched α, :func:`adasmooth.certify.match_alpha`, which needs no monotonicity).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Calibration:
    """Result of a calibration: the parameter ``value`` (shift or α) and the accuracy it gives."""

    value: float
    accuracy: float
    target: float
    n: int
    within_tol: bool
    iterations: int


def check_target(target, tol) -> None:
    """A target clean accuracy lies in [0, 1] and a tolerance is >= 0 (ValueError otherwise)."""
    if not 0 <= target <= 1:
        raise ValueError(f"target_clean_acc must lie in [0, 1], got {target}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")


def bisect_to_accuracy(acc_fn: Callable[[float], float], lo: float, hi: float, target: float, tol: float, n: int,
                       max_iter: int, what: str, ends: str) -> Calibration:
    """Find v in [lo, hi] with acc_fn(v) ≈ target, acc_fn monotone; closest achievable otherwise.

    ``n`` is the number of images (accuracies are multiples of 1/n), ``what`` names the knob and
    ``ends`` its range in the ValueError raised when the target lies outside [acc(lo), acc(hi)] ± tol.
    """
    a_lo, a_hi = acc_fn(lo), acc_fn(hi)
    if not (min(a_lo, a_hi) - tol <= target <= max(a_lo, a_hi) + tol):
        raise ValueError(f"target_clean_acc={target:.4f} is out of reach: {what} spans clean accuracies "
                         f"[{min(a_lo, a_hi):.4f}, {max(a_lo, a_hi):.4f}] ({ends})")
    best = min(((abs(a_lo - target), lo, a_lo), (abs(a_hi - target), hi, a_hi)))
    decreasing = a_hi < a_lo
    it = 0
    while best[0] > tol and it < max_iter and hi - lo > 1e-9 * max(1.0, abs(lo) + abs(hi)):
        it += 1
        mid = 0.5 * (lo + hi)
        a = acc_fn(mid)
        best = min(best, (abs(a - target), mid, a))
        if (a > target) == decreasing:
            lo = mid
        else:
            hi = mid
    err, value, acc = best
    if err > tol:
        log.warning("%s: closest achievable clean accuracy %.4f for target %.4f (n=%d: steps of %.4f)",
                    what, acc, target, n, 1 / n)
    return Calibration(value=float(value), accuracy=float(acc), target=target, n=n, within_tol=err <= tol,
                       iterations=it)


def grid_to_accuracy(acc_fn: Callable[[float], float], grid, target: float) -> tuple[float, float]:
    """The value of ``grid`` whose accuracy is closest to ``target``, ties to the largest value (the
    most robust α).  Returns (value, accuracy)."""
    if not 0 <= target <= 1:
        raise ValueError(f"target must lie in [0, 1], got {target}")
    grid = np.asarray(grid, dtype=np.float64)
    accs = np.array([acc_fn(float(a)) for a in grid])
    gap = np.abs(accs - target)
    best = np.flatnonzero(gap <= gap.min() + 1e-12)
    i = best[np.argmax(grid[best])]
    return float(grid[i]), float(accs[i])
