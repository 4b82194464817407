"""The per-sample losses an attacker maximises: cross-entropy, the Carlini-Wagner margin (alias ``cw``) and
Croce & Hein's DLR, untargeted and targeted (:func:`attack_loss`, :func:`dlr_targeted_loss`)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSSES = ("ce", "dlr", "margin")
LOSS_ALIASES = {"cw": "margin"}  # the Carlini-Wagner margin loss under its other name


def loss_name(name: str) -> str:
    """The canonical name of an attack loss (one of :data:`LOSSES`; ``"cw"`` is read as ``"margin"``).

    The one place that parses loss names: :func:`attack_loss` and the adaptive attacks and trainer
    (:mod:`adasmooth.adaptive`) all go through it.  ValueError for anything else.
    """
    name = LOSS_ALIASES.get(name, name) if isinstance(name, str) else name
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES} (or {tuple(LOSS_ALIASES)}), got {name!r}")
    return name


def logit_margin(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i≠y} z_i, per sample: how far the true class leads (< 0 where the model is wrong).

    Not :func:`certify.required_margin` (the probability margin μ = (1-α)/α of Lemma 1)."""
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return zy - other.max(1).values


def attack_loss(name: str | Callable, z: torch.Tensor, y: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """Per-sample loss that the attacker *maximises*.

    ``ce``: cross-entropy (targeted: minus the CE to the target);
    ``margin`` (Carlini-Wagner, also accepted as ``cw``): max_{i≠y} z_i - z_y (targeted: z_t - max_{i≠t} z_i);
    ``dlr``: -(z_y - max_{i≠y} z_i) / (z_π1 - z_π3) (Croce & Hein 2020; targeted:
    -(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2), y then the true label and t the target).
    A callable ``f(z, y) -> per-sample loss`` is used as is.
    """
    if callable(name):
        return name(z, y)
    name = loss_name(name)
    if name == "ce":
        ce = F.cross_entropy(z, y, reduction="none")
        return -ce if targeted else ce
    if name == "margin":
        return logit_margin(z, y) if targeted else -logit_margin(z, y)
    if name == "dlr":
        zs = z.sort(1, descending=True).values
        if not targeted:
            return -logit_margin(z, y) / (zs[:, 0] - zs[:, 2] + 1e-12)
        raise ValueError("loss='dlr' with targeted=True needs the true label as well as the target: "
                         "use pgd_targeted (or a callable built on dlr_targeted_loss)")


def dlr_targeted_loss(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020), maximised: -(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2).

    ``y`` the true labels, ``t`` the targets, z_π the sorted logits; invariant to shifting and
    positively scaling z, so logits and log-probabilities give the same loss.  Needs 4+ classes.
    """
    if z.shape[1] < 4:
        raise ValueError(f"targeted DLR needs at least 4 classes, got z with {z.shape[1]}")
    zs = z.sort(1, descending=True).values
    zy = z.gather(1, y[:, None]).squeeze(1)
    zt = z.gather(1, t[:, None]).squeeze(1)
    return -(zy - zt) / (zs[:, 0] - (zs[:, 2] + zs[:, 3]) / 2 + 1e-12)
