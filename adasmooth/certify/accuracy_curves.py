"""Certified-accuracy curves (Fig. SM1): accuracy at each radius, the largest certified radius, where two
curves cross, the table of the key radii and the two-panel plot."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..statistics import accuracy
from ..tables import table


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

        from ..checkpoint import atomic_write_bytes

        buf = io.BytesIO()
        fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png")
        atomic_write_bytes(path, buf.getvalue())
    return fig
