"""The statistics every result and verdict uses: Clopper-Pearson intervals of an accuracy, McNemar's exact
test on the same images, the AUC of a score (scipy), and the decision rules on intervals: "A beats B" when the
intervals do not overlap (:func:`compare`), the options tied for best (:func:`best_options`)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import torch


def interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k/n (scipy)."""
    from scipy.stats import binomtest

    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(int(k), int(n)).proportion_ci(level, method="exact")
    return float(ci.low), float(ci.high)


def summary(mask: torch.Tensor) -> dict:
    """Accuracy of a per-image bool mask with its 95 % interval."""
    k, n = int(mask.sum()), int(mask.numel())
    lo, hi = interval(k, n)
    return {"acc": k / n if n else float("nan"), "low": lo, "high": hi, "k": k, "n": n}


def mcnemar(a: torch.Tensor, b: torch.Tensor) -> dict:
    """McNemar's exact test of "a and b are equally accurate" on the same images (two-sided):
    a binomial test on the discordant pairs (scipy)."""
    from scipy.stats import binomtest

    if a.shape != b.shape:
        raise ValueError(f"paired masks must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": float(p), "diff": (only_a - only_b) / a.numel()}


def auc(neg: torch.Tensor, pos: torch.Tensor) -> float:
    """Area under the ROC curve of a score separating ``pos`` from ``neg`` (Mann-Whitney U, scipy)."""
    from scipy.stats import mannwhitneyu

    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    u = mannwhitneyu(pos.double().cpu().numpy(), neg.double().cpu().numpy()).statistic
    return float(u) / (len(neg) * len(pos))


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
