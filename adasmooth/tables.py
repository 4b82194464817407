"""Tables and captions of results, as the library's procedures return them: a table is ``{"columns", "rows"}``
(:func:`table`, :func:`markdown_table`), a caption the line under every figure (n, ε, attacks, intervals)."""
from __future__ import annotations

from .statistics import interval as interval_of


def table(columns: list[str], rows: list[list]) -> dict:
    """A table for the results file and the summary; every row must have one cell per column."""
    for i, r in enumerate(rows):
        if len(r) != len(columns):
            raise ValueError(f"rows[{i}] has {len(r)} cells, expected {len(columns)} (columns {columns})")
    return {"columns": list(columns), "rows": [list(r) for r in rows]}


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "–"
    if isinstance(v, (list, tuple)):  # e.g. the options tied for best: "prob, logit", cells "(0.1, 1), (0.2, 0)"
        return ", ".join(f"({_cell(u)})" if isinstance(u, (list, tuple)) else _cell(u) for u in v)
    return str(v)


def markdown_table(tab: dict) -> str:
    """A results table (``{"columns", "rows"}``) as markdown."""
    lines = ["| " + " | ".join(map(str, tab["columns"])) + " |", "|" + "---|" * len(tab["columns"])]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in tab["rows"]]
    return "\n".join(lines)


INTERVAL = "95 % Clopper-Pearson"
NORMS = {"linf": "ℓ∞", "l2": "ℓ2"}


def caption(*, n: int, eps: float | None = None, norm: str | None = None, attacks=None,
            interval: str | None = INTERVAL, drawn: bool = True, what: str = "test images",
            extra: str | None = None) -> str:
    """The line every figure states: ``n`` (of ``what``, test images by default), the attack radius (``norm``
    ε = ``eps``), the attack set (``attacks``: names, or a phrase; [] reads "none"), the interval type
    (``interval``; None: "no intervals") and whether it is drawn (not drawn: its largest half-width at this
    ``n`` is given, so a reader can still judge a difference), then ``extra``, e.g.
    ``n = 200 test images; ℓ∞ ε = 0.1; attacks: pgd_ce, transfer_g; intervals: 95 % Clopper-Pearson``."""
    parts = [f"n = {int(n)} {what}"]
    if eps is not None:
        parts.append(f"{NORMS.get(norm, norm or '')} ε = {float(eps):g}".strip())
    if attacks is not None:
        parts.append("attacks: " + (attacks if isinstance(attacks, str) else ", ".join(map(str, attacks)) or "none"))
    if not interval:
        parts.append("no intervals")
    elif drawn:
        parts.append(f"intervals: {interval}")
    else:
        lo, hi = interval_of(int(n) // 2, int(n))
        parts.append(f"intervals: {interval}, not drawn (half-width up to {100 * (hi - lo) / 2:.1f} points "
                     f"at n = {int(n)})")
    if extra:
        parts.append(extra)
    return "; ".join(parts)
