"""What was reproduced: each claim of the supplement beside our number, with a verdict decided by a fixed rule.

The rules below were written before looking at the numbers they judge.  They read only the results
JSON a notebook records (``results/<profile>/NN_*.json``: its ``metrics``, ``tables`` and ``data``) and
return one row per claim::

    {"id", "claim", "paper", "ours", "verdict", "source"}

``verdict`` is one of :data:`VERDICTS`:

- ``reproduced``: our numbers show the paper's statement, beyond the noise of our sample;
- ``not reproduced``: our numbers show the opposite, beyond the noise of our sample;
- ``inconclusive``: anything else: the intervals are too wide to tell, or the compared numbers tie
  (the ``ours`` text then says "tie" and names the options that tie), or the notebook recorded too little.

Uncertainty (decision rules shared by every claim):

- every accuracy gets a 95 % Clopper-Pearson interval, :func:`adasmooth.comparison.interval` with
  ``k = round(acc * n)`` on the ``n`` images it was measured on (:func:`accuracy`);
- "A beats B" where per-image results exist is McNemar's exact test on the same images (notebook 04's
  headline records it, with its own rule, in ``data.verdicts``: claim (b) reuses that verdict);
- where only accuracies are recorded, "A beats B" is decided only when the two intervals do not overlap
  (:func:`compare`); overlapping intervals are a tie.  This is conservative (two disjoint 95 % intervals
  mean a difference well beyond the 5 % level), and it ignores that the accuracies share their images;
- a mean of accuracies measured on the same ``n`` images (an area under an accuracy curve, the mean over
  Table SM2's cells) gets the interval of a single accuracy on ``n`` images: its standard deviation is at
  most the largest of its terms', so this is not narrower than the truth;
- Fig. SM1 compares two curves radius by radius (each point an accuracy on ``n`` images) on the dense grid
  notebook 03 records; with only a few radii recorded the rule cannot place the crossing and says so.

Our setting differs from the paper's (:data:`SETTING_NOTE`), so shapes and signs are compared, not raw
numbers.  The paper's side comes from :func:`paper_reference` (``paper_reference.json``, quoting the
supplement with the table or figure each number comes from).

The rules live in :mod:`.ablations` (claims (a)-(d)), :mod:`.sm1` (claim (e), Fig. SM1) and :mod:`.theorems`
(Lemma 1, Theorems 1-3); the decision rules they share in :mod:`adasmooth.statistics`, the vocabulary and the paper's
side in :mod:`.common`.  This module assembles the claim table (:func:`rows`, :func:`table`).
"""
from __future__ import annotations

from typing import Mapping

from .. import results
from ..results import table as make
from ..statistics import Accuracy, accuracy, best_options, compare  # noqa: F401
from .ablations import c_prod_helps, learned_vs_constant, ri_choice, sigmoid_scale
from .common import (COLUMNS, HEADLINE, LOSS, PANELS, RI, RI_LABELS, RULE_NOTE, SCALE, SETTING_NOTE, SM1, THEORY,  # noqa: F401
                     VERDICTS, paper_reference)
from .sm1 import SM1_TABLE_TITLE, certified_radii, sm1_curves, sm1_table  # noqa: F401
from .theorems import theory

RULES = ((RI, ri_choice), (HEADLINE, learned_vs_constant), (LOSS, c_prod_helps), (SCALE, sigmoid_scale),
         (SM1, certified_radii), (THEORY, theory))


def rows(docs: Mapping[str, dict | None]) -> list[dict]:
    """Every claim's row, in the order (a)-(e), Lemma 1, Theorems 1-3, from ``docs`` (results JSON by notebook
    stem, e.g. ``{"02_ri_ablation": {...}}``); a notebook missing from ``docs`` gives ``inconclusive`` rows."""
    out = []
    for stem, rule in RULES:
        out += rule(docs.get(stem))
    return out


def has_claims(names) -> bool:
    """Whether any of the notebooks ``names`` (stems) carries a claim judged here."""
    return bool({stem for stem, _ in RULES} & set(names))


def table(verdict_rows: list[dict]) -> dict:
    """The verdict rows as a :func:`adasmooth.tables.table` (columns :data:`COLUMNS`)."""
    return make(COLUMNS, [[r["claim"], r["paper"], r["ours"], r["verdict"], r["source"]] for r in verdict_rows])


def from_folder(folder) -> list[dict]:
    """The verdict rows computed from the results JSON in ``folder`` (e.g. ``results/default``)."""
    from pathlib import Path

    docs = {}
    for stem, _ in RULES:
        p = results.path(folder, stem)
        if Path(p).exists():
            docs[stem] = results.read(p)
    return rows(docs)


def counts(verdict_rows: list[dict]) -> dict:
    """How many rows got each verdict."""
    return {v: sum(1 for r in verdict_rows if r["verdict"] == v) for v in VERDICTS}
