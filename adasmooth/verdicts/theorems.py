"""Lemma 1 and Theorems 1-3: notebook 01's numerical checks find no violation."""
from __future__ import annotations

from ..comparison import interval
from .common import THEORY, _n_eval, _row, paper_reference


def theory(doc: dict | None) -> list[dict]:
    """Lemma 1 and Theorems 1-3, one row each: the numerical checks of notebook 01 find no violation.

    Rule: ``reproduced`` when ``<check>_violations == 0`` and the check certified something (for Theorem 3:
    it ran on at least one image); ``not reproduced`` when violations > 0; else ``inconclusive`` (nothing
    certified: a vacuous check, or nothing recorded).  ``ours`` gives the Clopper-Pearson upper bound of the
    violation rate."""
    ref = paper_reference()["theory"]
    doc = doc or {}
    m, data = doc.get("metrics") or {}, doc.get("data") or {}
    rows = []
    for key, name in (("lemma1", "Lemma 1"), ("theorem1", "Theorem 1"), ("theorem2", "Theorem 2"),
                      ("theorem3", "Theorem 3")):
        claim = f"{name}: {ref[key]['claim']}"
        paper = f"proved, so 0 violations ({ref[key]['where']})"
        src = f"{name}, notebook {THEORY}"
        viol = m.get(f"{key}_violations")
        if key == "theorem3":
            sets = data.get("theorem3") or {}
            n = _n_eval(doc)
            checked = n * len(sets) if n and sets else None
            what = f"{len(sets)} input sets × {n} images" if checked else "?"
            extra = ""
            if sets:
                ok = all(s["oracle"] >= max(s["g"], s["h"]) for s in sets.values())
                extra = f"; oracle α ≥ max(g, h) accuracy on {', '.join(sets)}: {'yes' if ok else 'no'}"
        else:
            checked = m.get(f"{key}_certified")
            what = f"{checked} certified cases" if checked is not None else "?"
            extra = ""
        if viol is None:
            rows.append(_row(key, claim, paper, "no violation count recorded", "inconclusive", src))
            continue
        if viol > 0:
            verdict = "not reproduced"
        elif checked:
            verdict = "reproduced"
        else:
            verdict = "inconclusive"
        ours = f"{viol} violations in {what}"
        if checked:
            ours += f" (violation rate ≤ {interval(int(viol), int(checked))[1]:.2g}, 95 % CI upper end)"
        rows.append(_row(key, claim, paper, ours + extra, verdict, src))
    return rows
