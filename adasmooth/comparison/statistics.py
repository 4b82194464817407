"""Clopper-Pearson intervals, McNemar's exact test on the same images and the AUC of a score (scipy)."""
from __future__ import annotations

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
