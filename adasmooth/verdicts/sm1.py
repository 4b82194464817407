"""Claim (e): Fig. SM1's two observations (notebook 03), judged radius by radius on the recorded curves."""
from __future__ import annotations

from typing import Mapping

from ..certify import crossing_radius, largest_certified_radius
from ..results import table
from ..statistics import accuracy, compare
from .common import SM1, _n_eval, _row, paper_reference


def _dense(grid) -> bool:
    """Whether the recorded radii resolve a curve: at least 50 radii, no gap wider than 1/25 of their range."""
    if len(grid) < 50:
        return False
    span = grid[-1] - grid[0]
    return span > 0 and max(b - a for a, b in zip(grid, grid[1:])) <= span / 25


def _split(curves: Mapping[str, list]) -> tuple[str, str] | None:
    """(h^α label, baseline label) among a bound's curves."""
    base = [k for k in curves if "baseline" in k.lower()]
    mix = [k for k in curves if "baseline" not in k.lower()]
    return (mix[0], base[0]) if len(base) == 1 and len(mix) == 1 else None


def sm1_curves(doc: dict | None) -> dict | None:
    """Fig. SM1's numbers read off the recorded curves (``data.r_grid``, ``data.lip``, ``data.rs``), per bound
    (``"lip"``, ``"rs"``): ``{"mix", "base"}`` labels, ``crossing`` (:func:`adasmooth.certify.crossing_radius`:
    the first grid radius at which h^α's point estimate is above the baseline's after the baseline was above
    at a smaller radius; None if never), ``largest`` (each curve's largest certified radius on the grid,
    :func:`adasmooth.certify.largest_certified_radius`), ``beyond`` (still positive at the grid's end),
    ``base_above`` / ``mix_above`` (the radii where one curve's interval lies above the other's), ``n`` and
    ``step``.  None when the notebook recorded no curves or too few radii (:func:`_dense`)."""
    doc = doc or {}
    data = doc.get("data") or {}
    grid, n = data.get("r_grid"), _n_eval(doc)
    if not grid or not n or not _dense(grid):
        return None
    out = {"n": int(n), "step": round(max(b - a for a, b in zip(grid, grid[1:])), 6), "r_max": grid[-1]}
    for bound in ("lip", "rs"):
        curves = data.get(bound) or {}
        labels = _split(curves)
        if labels is None or any(len(curves[k]) != len(grid) for k in labels):
            return None
        mix, base = (curves[k] for k in labels)
        cmp = [compare(accuracy(m, n), accuracy(b, n)) for m, b in zip(mix, base)]
        crossing = crossing_radius(grid, mix, base)
        (lm, bm), (lb, bb) = largest_certified_radius(grid, mix), largest_certified_radius(grid, base)
        out[bound] = {"mix": labels[0], "base": labels[1], "crossing": crossing,
                      "largest": {"mix": lm, "base": lb}, "beyond": {"mix": bm, "base": bb},
                      "base_above": [r for r, c in zip(grid, cmp) if c == -1],
                      "mix_above": [r for r, c in zip(grid, cmp) if c == 1],
                      "at": {r: (accuracy(m, n), accuracy(b, n)) for r, m, b in zip(grid, mix, base)}}
    return out


def _radius(info: dict, who: str) -> str:
    return f"{'≥ ' if info['beyond'][who] else ''}{info['largest'][who]:g}"


def _gap_example(info: dict, radii: list, sign: int) -> str:
    """The radius among ``radii`` with the largest gap in the given direction, as 'r = ...: h^α ... vs baseline ...'."""
    r = max(radii, key=lambda r: sign * (info["at"][r][0].acc - info["at"][r][1].acc))
    m, b = info["at"][r]
    return f"r = {r:g}: h^α {m} vs baseline {b}"


def certified_radii(doc: dict | None) -> list[dict]:
    """Claim (e), Fig. SM1's two observations, judged radius by radius on the recorded curves (each point an
    accuracy on ``n`` images; "above" means disjoint intervals):

    (e1) Lipschitz bound: the curves cross, the baseline above at smaller radii and h^α above at larger ones.
    ``reproduced`` when the baseline is above at some radius and h^α above at a larger one, and never the
    other way round; ``not reproduced`` when h^α is above at some radius and the baseline above at a larger
    one (and never the claimed way), or when the baseline is above somewhere and h^α's point estimate
    never exceeds the baseline's at any radius (no crossing); else ``inconclusive``.
    (e2) RS bound: the baseline certifies more.  ``reproduced`` when the baseline is above at some radius and
    h^α at none; ``not reproduced`` when h^α is above at some radius; else ``inconclusive``.

    With only a few radii recorded (no dense ``data.r_grid``) both rows are ``inconclusive``."""
    ref = paper_reference()["fig_sm1"]
    src = f"Fig. SM1, notebook {SM1}"
    c1 = "(e1) Fig. SM1, Lipschitz bound: the curves cross, h^α certifies more at larger radii, the baseline at smaller"
    c2 = "(e2) Fig. SM1, RS bound: the baseline certifies more points than h^α"
    p1, p2 = f"\"{ref['lipschitz']['quote']}\"", f"\"{ref['rs']['quote']}\""
    info = sm1_curves(doc)
    if info is None:
        tables = (doc or {}).get("tables") or []
        cols = [c for t in tables for c in t.get("columns", []) if str(c).startswith("r = ")]
        why = (f"only sparse radii recorded ({', '.join(cols)}): the crossing cannot be placed" if cols
               else "no certified-accuracy curves recorded")
        return [_row("e1", c1, p1, why, "inconclusive", src), _row("e2", c2, p2, why, "inconclusive", src)]
    n, step = info["n"], info["step"]
    lip, rs = info["lip"], info["rs"]
    a, b = lip["base_above"], lip["mix_above"]
    claimed = bool(a and b and min(a) < max(b))
    reversed_ = bool(a and b and min(b) < max(a))
    mix_ever_above = any(m.acc > bb.acc for m, bb in lip["at"].values())
    if claimed and not reversed_:
        v1 = "reproduced"
    elif (reversed_ and not claimed) or (a and not mix_ever_above):
        v1 = "not reproduced"
    else:
        v1 = "inconclusive"
    ours1 = (f"crossing at r ≈ {lip['crossing']:g}" if lip["crossing"] is not None else "no crossing") + \
        f" (grid step {step:g}, n = {n}); largest certified radius on the grid: h^α {_radius(lip, 'mix')}, " \
        f"baseline {_radius(lip, 'base')}"
    if a:
        ours1 += f"; baseline above at {len(a)} radii in [{min(a):g}, {max(a):g}] ({_gap_example(lip, a, -1)})"
    if b:
        ours1 += f"; h^α above at {len(b)} radii in [{min(b):g}, {max(b):g}] ({_gap_example(lip, b, 1)})"
    if not a and not b:
        ours1 += "; tie at every radius"
    a2, b2 = rs["base_above"], rs["mix_above"]
    v2 = "not reproduced" if b2 else "reproduced" if a2 else "inconclusive"
    ours2 = f"largest certified radius on the grid: h^α {_radius(rs, 'mix')}, baseline {_radius(rs, 'base')} (n = {n})"
    if a2:
        ours2 += f"; baseline above at {len(a2)} radii in [{min(a2):g}, {max(a2):g}] ({_gap_example(rs, a2, -1)})"
    ours2 += f"; h^α above at {len(b2)} radii" + (f" in [{min(b2):g}, {max(b2):g}]" if b2 else "")
    if rs["crossing"] is not None:
        ours2 += f"; point estimates cross at r ≈ {rs['crossing']:g}"
    rs_wider = all(rs["largest"][w] >= lip["largest"][w] for w in ("mix", "base"))
    ours2 += f"; RS radii ≥ Lipschitz radii for both: {'yes' if rs_wider else 'no'}"
    if not a2 and not b2:
        ours2 += "; tie at every radius"
    return [_row("e1", c1, p1, ours1, v1, src), _row("e2", c2, p2, ours2, v2, src)]


def sm1_table(doc: dict | None) -> dict | None:
    """Fig. SM1 read off the recorded curves, one row per bound: the crossing radius, each curve's largest
    certified radius and both accuracies (95 % CI) at the crossing.  None when the curves are not recorded
    densely (:func:`sm1_curves`).  A :func:`adasmooth.tables.table` result."""
    info = sm1_curves(doc)
    if info is None:
        return None
    rows = []
    for bound, name in (("lip", "Lipschitz (Theorem 1)"), ("rs", "RS (Theorem 2)")):
        b = info[bound]
        r = b["crossing"]
        m, bb = b["at"][r] if r is not None else (None, None)
        rows.append([name, "–" if r is None else f"{r:g}", _radius(b, "mix"), _radius(b, "base"),
                     "–" if m is None else str(m), "–" if bb is None else str(bb)])
    return table(["bound", f"crossing r (grid step {info['step']:g})", "largest certified r: h^α",
                  "largest certified r: baseline", "h^α % at crossing [95 % CI]",
                  "baseline % at crossing [95 % CI]"], rows)


SM1_TABLE_TITLE = "Fig. SM1 from the recorded curves: crossing radius and largest certified radii"
