"""Robust accuracy of the adaptive model h^{α_θ} under both threat models.

``robust_accuracy_adaptive`` reports ``full`` and the per-sample worst case over both threats
(and over the attack losses, and examples transferred from g and h alone).  Under ``full`` it also
runs APGD-T (pyautoattack) on the whole mixed model, on the inputs PGD left correct: on the default zoo, PGD-20 read 57 % where APGD-T
found 36.5 % (Sigmoid scale 2, 200 images).
"""
from __future__ import annotations

import math

import torch

from ..attacks import apgd_targeted, pgd
from ..runtime import batches, get_device
from .attacks import attack_adaptive, softened_head
from .model import THREATS, AdaptiveMixedClassifier, _eval_mode

EVAL_LOSSES = ("ce", "margin")


@torch.no_grad()
def _correct(model, x, y, batch_size=500) -> torch.Tensor:
    out = torch.empty(len(x), dtype=torch.bool, device=x.device)
    for sl in batches(len(x), batch_size):
        out[sl] = model(x[sl]).argmax(1) == y[sl]
    return out


def robust_accuracy_adaptive(model: AdaptiveMixedClassifier, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                             steps: int = 20, norm: str = "linf", losses=EVAL_LOSSES, alpha_weights=(0.0, 0.2),
                             random_start: bool = True, seed: int = 0, batch_size: int = 250,
                             apgd_iter: int = 100, n_targets: int = 3, transfer: bool = True,
                             surrogate_scale: float | None = None, device=None, progress: bool = False) -> dict:
    """Clean and attacked accuracy of h^{α_θ} under both threat models.

    ``full`` runs one PGD-``steps`` attack per loss in ``losses`` and per attacker weight w in
    ``alpha_weights``; ``detached`` one PGD per loss.  With ``transfer``, CE-PGD examples crafted
    on g alone and on h alone are tried too (they need no gradient of α_θ, so they count under
    both threats).  With ``surrogate_scale`` below the head's Sigmoid scale s, a saturated Sigmoid
    cannot hide α_θ's gradient: PGD (each loss, the largest w) also attacks a surrogate whose γ is
    divided by T = s / surrogate_scale (α_θ on the same side of 1/2, softer), and its examples are
    judged on the model itself (``full/surrogate/<loss>``).  Last, APGD-T (``apgd_iter``
    iterations, ``n_targets`` classes; 0: skip) on the whole model (gradients through α_θ), only on
    the inputs every full-threat attack left correct.
    Returns ``{"clean", "full", "detached", "worst", "per_attack": {"full/ce/w=0.2": ...,
    "transfer/g": ..., "full/apgd-t": ..., "detached/margin": ...}, "n"}`` where ``full`` and
    ``detached`` are per-sample worst cases within a threat model and ``worst`` over both
    (``full/apgd-t`` is cumulative: correct under every full-threat attack).
    """
    _check_eval_args(apgd_iter, surrogate_scale)
    device = get_device(device)
    model = model.to(device)
    x, y = x.to(device), y.to(device)
    with _eval_mode(model):
        clean = _correct(model, x, y)
    per_threat = {t: clean.clone() for t in THREATS}
    per_attack = {}
    kw = dict(eps=eps, steps=steps, norm=norm, random_start=random_start, seed=seed, batch_size=batch_size)
    _pgd_attacks(model, x, y, clean, per_threat, per_attack, losses, alpha_weights, progress, kw)
    if surrogate_scale is not None and surrogate_scale < float(model.net.scale):
        _surrogate_attacks(model, x, y, clean, per_threat, per_attack, losses, alpha_weights, surrogate_scale,
                           progress, kw)
    if transfer:  # crafted on g or h alone: the same examples under either threat model
        _transfer_attacks(model, x, y, clean, per_threat, per_attack, kw)
    if apgd_iter:
        _apgd_attack(model, x, y, per_threat, per_attack, apgd_iter, n_targets, eps, norm, seed, batch_size)
    worst = per_threat["full"] & per_threat["detached"]
    return {"clean": clean.float().mean().item(), "full": per_threat["full"].float().mean().item(),
            "detached": per_threat["detached"].float().mean().item(), "worst": worst.float().mean().item(),
            "per_attack": per_attack, "n": len(x)}


def _check_eval_args(apgd_iter, surrogate_scale):
    if not isinstance(apgd_iter, int) or apgd_iter < 0:
        raise ValueError(f"apgd_iter must be an int >= 0 (0: no APGD-T), got {apgd_iter!r}")
    if surrogate_scale is not None and not (math.isfinite(surrogate_scale) and surrogate_scale > 0):
        raise ValueError(f"surrogate_scale must be a finite number > 0 or None, got {surrogate_scale!r}")


def _still_correct(model, adv, y, clean) -> torch.Tensor:
    """Correct on ``adv`` (in eval mode) and on the clean input."""
    with _eval_mode(model):
        return _correct(model, adv, y) & clean


def _pgd_attacks(model, x, y, clean, per_threat, per_attack, losses, alpha_weights, progress, kw):
    """PGD per loss and attacker weight w under ``full``, per loss under ``detached``."""
    runs = ([("full", loss, w) for loss in losses for w in alpha_weights]
            + [("detached", loss, 0.0) for loss in losses])
    for threat, loss, w in runs:
        adv = attack_adaptive(model, x, y, threat=threat, loss=loss, alpha_weight=w, progress=progress, **kw)
        ok = _still_correct(model, adv, y, clean)
        per_attack[f"{threat}/{loss}" + (f"/w={w:g}" if threat == "full" else "")] = ok.float().mean().item()
        per_threat[threat] &= ok


def _surrogate_attacks(model, x, y, clean, per_threat, per_attack, losses, alpha_weights, surrogate_scale,
                       progress, kw):
    """PGD (each loss, the largest w) on the softened-head surrogate, judged on the model itself."""
    for loss in losses:
        with softened_head(model.net, surrogate_scale):
            adv = attack_adaptive(model, x, y, threat="full", loss=loss, alpha_weight=max(alpha_weights),
                                  progress=progress, **kw)
        ok = _still_correct(model, adv, y, clean)
        per_attack[f"full/surrogate/{loss}"] = ok.float().mean().item()
        per_threat["full"] &= ok


def _transfer_attacks(model, x, y, clean, per_threat, per_attack, kw):
    """CE-PGD examples crafted on g alone and on h alone: they count under both threat models."""
    for name, source in (("g", model.g), ("h", model.h)):
        adv = pgd(source, x, y, loss="ce", **kw)
        ok = _still_correct(model, adv, y, clean)
        per_attack[f"transfer/{name}"] = ok.float().mean().item()
        for t in THREATS:
            per_threat[t] &= ok


def _apgd_attack(model, x, y, per_threat, per_attack, apgd_iter, n_targets, eps, norm, seed, batch_size):
    """APGD-T on the whole model (gradients through α_θ), only on the inputs still correct under ``full``."""
    idx = per_threat["full"].nonzero().flatten()
    if len(idx):
        with _eval_mode(model), model.threat("full"):
            adv = apgd_targeted(model, x[idx], y[idx], eps=eps, norm=norm, n_iter=apgd_iter,
                                n_targets=n_targets, seed=seed, batch_size=batch_size)
            per_threat["full"][idx] = _correct(model, adv, y[idx])
    per_attack["full/apgd-t"] = per_threat["full"].float().mean().item()
