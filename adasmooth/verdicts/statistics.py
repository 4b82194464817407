"""The decision rules every claim uses: an accuracy with its 95 % Clopper-Pearson interval, "A beats B" when
the intervals do not overlap (:func:`compare`), the options tied for best (:func:`best_options`)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping


@dataclass(frozen=True)
class Accuracy:
    """An accuracy measured on ``n`` images with its 95 % Clopper-Pearson interval [``low``, ``high``]."""

    acc: float
    n: int
    low: float
    high: float

    def __str__(self) -> str:
        return f"{100 * self.acc:.1f} % [{100 * self.low:.1f}, {100 * self.high:.1f}]"


def accuracy(acc: float, n: int) -> Accuracy:
    """``acc`` on ``n`` images with its Clopper-Pearson interval (``k = round(acc * n)``)."""
    n = int(n)
    lo, hi = _interval(int(round(float(acc) * n)), n)
    return Accuracy(float(acc), n, lo, hi)


@lru_cache(maxsize=None)
def _interval(k: int, n: int) -> tuple[float, float]:
    from ..comparison import interval

    return interval(k, n)


def compare(a: Accuracy, b: Accuracy) -> int:
    """1 when ``a`` beats ``b`` (a's interval wholly above b's), -1 when ``b`` beats ``a``, 0 for a tie
    (the intervals overlap or touch)."""
    if a.low > b.high:
        return 1
    if a.high < b.low:
        return -1
    return 0


def best_options(values: Mapping, n: int) -> list:
    """The options tied for best among ``values`` (option -> accuracy on the same ``n`` images): the leader
    (the largest point estimate) and every option whose 95 % Clopper-Pearson interval overlaps the leader's
    (:func:`compare` gives 0, so equal point estimates tie too), by point estimate, largest first (equal
    estimates keep the order of ``values``).  One option means a clear winner; notebooks record the whole
    list (``best_*`` metrics) instead of naming the first of a tie."""
    vals = {k: v for k, v in values.items() if v is not None}
    if not vals:
        return []
    acc = {k: accuracy(v, n) for k, v in vals.items()}
    order = sorted(vals, key=lambda k: -vals[k])
    return [k for k in order if k == order[0] or compare(acc[order[0]], acc[k]) == 0]
