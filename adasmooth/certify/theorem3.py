"""Theorem 3: the oracle α(x+δ) (0 where g is right, 1 elsewhere) is right wherever g or h is."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..mixing import mix_log_probs
from ..runtime import batches


def oracle_alpha(logits_g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Theorem 3's α(·): 0 where g predicts the label y, 1 elsewhere (float, shape (N,))."""
    if logits_g.ndim != 2 or y.shape != (logits_g.shape[0],):
        raise ValueError(f"logits_g must be (N, C) and y (N,), got {tuple(logits_g.shape)} and {tuple(y.shape)}")
    return (logits_g.argmax(1) != y).to(logits_g.dtype)


def oracle_correct(logits_g: torch.Tensor, logits_h: torch.Tensor, y: torch.Tensor) -> dict:
    """Per-input correctness of g, h and the oracle mix h^{α(·)} (all bool (N,)).

    The oracle's prediction is argmax of mix_log_probs(log g, log h, α(·)) with α(·) from
    :func:`oracle_alpha`; Theorem 3 says it is right wherever g or h is.
    """
    if logits_g.shape != logits_h.shape:
        raise ValueError(f"logits_h must have the shape of logits_g {tuple(logits_g.shape)}, got {tuple(logits_h.shape)}")
    a = oracle_alpha(logits_g, y)
    mixed = mix_log_probs(F.log_softmax(logits_g, 1), F.log_softmax(logits_h, 1), a)
    return {"g": logits_g.argmax(1) == y, "h": logits_h.argmax(1) == y, "oracle": mixed.argmax(1) == y}


@torch.no_grad()
def theorem3_accuracy(g: Callable, h: Callable, inputs, y: torch.Tensor, *, batch_size: int = 500) -> dict:
    """Accuracy of g, h and the oracle mix under a given attack: Theorem 3 evaluated (its one home;
    :func:`adasmooth.theory.theorem3_violations` reads ``per_set`` from here).

    ``inputs`` is a tensor or a mapping name -> tensor of perturbed inputs (e.g. the clean images
    and the adversarial examples crafted against each model), all aligned with ``y``.  An input
    counts as correct for a model when it is classified right in every set (the worst case over
    the given attacks).  Returns ``{"g", "h", "oracle"}`` accuracies and ``"per_set"``: per set, the
    accuracies and ``"violations"``, the inputs where g or h is right but the oracle is not (the
    theorem says 0).
    """
    sets = {"inputs": inputs} if torch.is_tensor(inputs) else dict(inputs)
    if not sets:
        raise ValueError("inputs must hold at least one tensor")
    worst, per_set = None, {}
    for name, xs in sets.items():
        if xs.shape[0] != y.shape[0]:
            raise ValueError(f"inputs[{name!r}] has {xs.shape[0]} rows but y has {y.shape[0]}")
        parts = []
        for sl in batches(len(y), batch_size):
            parts.append(oracle_correct(g(xs[sl]), h(xs[sl]), y[sl]))
        ok = {k: torch.cat([p[k] for p in parts]) for k in ("g", "h", "oracle")}
        per_set[name] = {k: int(v.sum()) / len(y) for k, v in ok.items()}
        per_set[name]["violations"] = int(((ok["g"] | ok["h"]) & ~ok["oracle"]).sum())
        worst = ok if worst is None else {k: worst[k] & ok[k] for k in ok}
    out = {k: v.double().mean().item() for k, v in worst.items()}
    out["per_set"] = per_set
    return out
