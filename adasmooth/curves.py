"""Trade-off curve arithmetic: per-option series (:func:`by_option`), the value between two grid points
(:func:`interpolate`, :func:`bracket`), the area under a curve (:func:`area`) and the clean-accuracy
range that several curves share (:func:`common_range`).

A trade-off curve is the list of rows of :func:`adasmooth.evaluate.tradeoff_curve` (one row per
option and α, with ``clean`` and ``attacked`` accuracy).  The area under the attacked-vs-clean
curve summarises an option of Fig. 1 / SM2 in one number: higher is a better trade-off.
"""
from __future__ import annotations

import numpy as np


def by_option(rows: list[dict], keys=("clean", "attacked")) -> dict[str, dict[str, np.ndarray]]:
    """``{option: {"alpha": ..., key: ...}}`` with α ascending, from trade-off rows."""
    if not rows:
        raise ValueError("rows must hold at least one trade-off row")
    out = {}
    for opt in dict.fromkeys(r["option"] for r in rows):
        rs = sorted((r for r in rows if r["option"] == opt), key=lambda r: r["alpha"])
        out[opt] = {"alpha": np.array([r["alpha"] for r in rs], dtype=np.float64)}
        for k in keys:
            out[opt][k] = np.array([r[k] for r in rs], dtype=np.float64)
    return out


def interpolate(alphas, values, alpha: float) -> float:
    """The value at ``alpha`` on the piecewise-linear curve through (alphas, values); α ascending."""
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim != 1 or len(a) == 0 or np.any(np.diff(a) < 0):
        raise ValueError("alphas must be a non-empty ascending 1-D sequence")
    if not a[0] <= alpha <= a[-1]:
        raise ValueError(f"alpha must lie in the grid's range [{a[0]:g}, {a[-1]:g}], got {alpha}")
    return float(np.interp(alpha, a, np.asarray(values, dtype=np.float64)))


def bracket(alphas, alpha: float) -> tuple[float, float]:
    """The grid points (a_lo, a_hi) around ``alpha`` (equal when ``alpha`` is on the grid)."""
    a = np.asarray(alphas, dtype=np.float64)
    hit = np.isclose(a, alpha, rtol=0, atol=1e-9)
    if hit.any():
        v = float(a[np.argmax(hit)])
        return v, v
    i = int(np.searchsorted(a, alpha))
    if i == 0 or i == len(a):
        raise ValueError(f"alpha must lie in the grid's range [{a[0]:g}, {a[-1]:g}], got {alpha}")
    return float(a[i - 1]), float(a[i])


def area(clean, attacked, lo: float | None = None, hi: float | None = None) -> float:
    """Mean attacked accuracy over the clean-accuracy interval [lo, hi]: the area under the
    attacked-vs-clean curve (points sorted by clean accuracy, linear in between) divided by hi - lo.

    Defaults: the curve's own clean range.  Comparing options on a common [lo, hi] (e.g. from
    :func:`common_range`) makes the numbers comparable."""
    c = np.asarray(clean, dtype=np.float64)
    r = np.asarray(attacked, dtype=np.float64)
    if c.shape != r.shape or c.ndim != 1 or len(c) < 2:
        raise ValueError("clean and attacked must be 1-D of the same length >= 2")
    order = np.argsort(c, kind="stable")
    c, r = c[order], r[order]
    lo = c[0] if lo is None else lo
    hi = c[-1] if hi is None else hi
    if not c[0] - 1e-12 <= lo < hi <= c[-1] + 1e-12:
        raise ValueError(f"[lo, hi] = [{lo}, {hi}] must be a non-empty part of the curve's clean range "
                         f"[{c[0]}, {c[-1]}]")
    inside = (c > lo) & (c < hi)
    xs = np.concatenate([[lo], c[inside], [hi]])
    ys = np.interp(xs, c, r)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / (hi - lo))


def common_range(curves: dict[str, dict]) -> tuple[float, float]:
    """The clean-accuracy interval covered by every curve of :func:`by_option`."""
    lo = max(float(np.min(c["clean"])) for c in curves.values())
    hi = min(float(np.max(c["clean"])) for c in curves.values())
    if not lo < hi:
        raise ValueError(f"the curves share no clean-accuracy interval (lo {lo}, hi {hi})")
    return lo, hi
