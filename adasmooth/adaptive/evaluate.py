"""Robust accuracy of the adaptive model h^{α_θ} under both threat models.

``robust_accuracy_adaptive`` reports ``full`` and the per-sample worst case over both threats
(and over the attack losses, and examples transferred from g and h alone).  Under ``full`` it also
runs APGD-T (pyautoattack) on the whole mixed model, on the inputs PGD left correct: on the default zoo,
PGD-20 read 57 % where APGD-T found 36.5 % (Sigmoid scale 2, 200 images).  Its attacks are the runner suite
:func:`tables_suite` (:mod:`adasmooth.runner`).
"""
from __future__ import annotations

import contextlib
import math

import torch

from ..attacks import apgd_targeted, pgd
from ..runner import Attack, run
from ..runtime import get_device
from .attacks import attack_adaptive, softened_head
from .model import THREATS, AdaptiveMixedClassifier, _eval_mode

EVAL_LOSSES = ("ce", "margin")


def robust_accuracy_adaptive(model: AdaptiveMixedClassifier, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                             steps: int = 20, norm: str = "linf", losses=EVAL_LOSSES, alpha_weights=(0.0, 0.2),
                             random_start: bool = True, seed: int = 0, batch_size: int = 250,
                             apgd_iter: int = 100, n_targets: int = 3, transfer: bool = True,
                             surrogate_scale: float | None = None, identity: str | None = None,
                             use_cache: bool = False, return_masks: bool = False, device=None,
                             progress: bool = False) -> dict:
    """Clean and attacked accuracy of h^{α_θ} under both threat models (the tables' suite, :func:`tables_suite`,
    run by :func:`runner.run`).

    ``full`` runs one PGD-``steps`` attack per loss in ``losses`` and per attacker weight w in
    ``alpha_weights``; ``detached`` one PGD per loss.  With ``transfer``, CE-PGD examples crafted
    on g alone and on h alone are tried too (they need no gradient of α_θ, so they count under
    both threats).  With ``surrogate_scale`` below the head's Sigmoid scale s, a saturated Sigmoid
    cannot hide α_θ's gradient: PGD (each loss, the largest w) also attacks a surrogate whose γ is
    divided by T = s / surrogate_scale (α_θ on the same side of 1/2, softer), and its examples are
    judged on the model itself (``full/surrogate/<loss>``).  Last, APGD-T (``apgd_iter``
    iterations, ``n_targets`` classes; 0: skip) on the whole model (gradients through α_θ), only on
    the inputs every full-threat attack left correct.  With ``identity`` (the model's content address) and
    ``use_cache``, each attack's per-image outcome is read from or written to the attack cache.
    Returns ``{"clean", "full", "detached", "worst", "per_attack": {"full/ce/w=0.2": ...,
    "transfer/g": ..., "full/apgd-t": ..., "detached/margin": ...}, "n"}`` where ``full`` and
    ``detached`` are per-sample worst cases within a threat model and ``worst`` over both
    (``full/apgd-t`` is cumulative: correct under every full-threat attack), ``seconds`` (the attacks' computation,
    as recorded where cached) and ``cached``; with ``return_masks`` also
    ``"masks": {"clean", "full", "detached", "worst"}`` (bool, per image).
    """
    _check_eval_args(apgd_iter, surrogate_scale)
    device = get_device(device)
    model = model.to(device)
    x, y = x.to(device), y.to(device)
    kw = dict(eps=eps, steps=steps, norm=norm, random_start=random_start, seed=seed, batch_size=batch_size)
    suite = tables_suite(model, losses=losses, alpha_weights=alpha_weights, transfer=transfer,
                         surrogate_scale=surrogate_scale, apgd_iter=apgd_iter, n_targets=n_targets, progress=progress,
                         **kw)
    question = None
    if identity is not None:
        question = {"what": "adaptive.robust_accuracy_adaptive", "model": identity,
                    "params": {**kw, "losses": list(losses), "alpha_weights": list(alpha_weights), "transfer": transfer,
                               "surrogate_scale": surrogate_scale, "apgd_iter": apgd_iter, "n_targets": n_targets}}
    with _eval_mode(model):
        res = run(model, x, y, suite, question=question, label=(identity or "")[:12], use_cache=use_cache,
                  batch_size=500)
    clean = res.clean
    per_attack, threat_ok = {}, {t: clean.clone() for t in THREATS}
    for a in suite:
        ok = res.masks[a.name]
        alone = ok if a.on != "all" else ok & clean
        per_attack[a.name] = alone.float().mean().item()
        for t in _threats_of(a.name):
            threat_ok[t] &= alone
    out = {"clean": clean.float().mean().item(), "full": threat_ok["full"].float().mean().item(),
           "detached": threat_ok["detached"].float().mean().item(), "worst": res.accuracy,
           "per_attack": per_attack, "n": len(x), "seconds": round(res.seconds, 1), "cached": res.cached}
    if return_masks:
        out["masks"] = {"clean": clean, "full": threat_ok["full"], "detached": threat_ok["detached"],
                        "worst": res.correct}
    return out


def _threats_of(name: str) -> tuple:
    """The threat models under which the tables' attack ``name`` counts (transfers: both)."""
    return THREATS if name.startswith("transfer/") else (name.split("/")[0],)


def tables_suite(model: AdaptiveMixedClassifier, *, eps: float, steps: int, norm: str, losses, alpha_weights,
                 random_start: bool, seed: int, batch_size: int, apgd_iter: int, n_targets: int, transfer: bool,
                 surrogate_scale: float | None, progress: bool = False) -> list[Attack]:
    """The tables' attacks (:func:`robust_accuracy_adaptive`) as a runner suite: every PGD on every image (its
    column: the attack alone), APGD-T last on what every full-threat attack left correct."""
    kw = dict(eps=eps, steps=steps, norm=norm, random_start=random_start, seed=seed, batch_size=batch_size)

    def adaptive_pgd(threat, loss, w, scale=None):
        def fn(xs, ys):
            with contextlib.nullcontext() if scale is None else softened_head(model.net, scale):
                return attack_adaptive(model, xs, ys, threat=threat, loss=loss, alpha_weight=w, progress=progress, **kw)
        return fn

    suite = [Attack(f"full/{loss}/w={w:g}", adaptive_pgd("full", loss, w), on="all")
             for loss in losses for w in alpha_weights]
    suite += [Attack(f"detached/{loss}", adaptive_pgd("detached", loss, 0.0), on="all") for loss in losses]
    if surrogate_scale is not None and surrogate_scale < float(model.net.scale):
        suite += [Attack(f"full/surrogate/{loss}", adaptive_pgd("full", loss, max(alpha_weights), surrogate_scale),
                         on="all") for loss in losses]
    if transfer:  # crafted on g or h alone: the same examples under either threat model
        suite += [Attack(f"transfer/{name}", (lambda xs, ys, src=src: pgd(src, xs, ys, loss="ce", **kw)), on="all")
                  for name, src in (("g", model.g), ("h", model.h))]
    if apgd_iter:
        def apgd_t(xs, ys):
            with model.threat("full"):
                return apgd_targeted(model, xs, ys, eps=eps, norm=norm, n_iter=apgd_iter, n_targets=n_targets,
                                     seed=seed, batch_size=batch_size)
        suite.append(Attack("full/apgd-t", apgd_t, on=tuple(a.name for a in suite if "full" in _threats_of(a.name))))
    return suite


def _check_eval_args(apgd_iter, surrogate_scale):
    if not isinstance(apgd_iter, int) or apgd_iter < 0:
        raise ValueError(f"apgd_iter must be an int >= 0 (0: no APGD-T), got {apgd_iter!r}")
    if surrogate_scale is not None and not (math.isfinite(surrogate_scale) and surrogate_scale > 0):
        raise ValueError(f"surrogate_scale must be a finite number > 0 or None, got {surrogate_scale!r}")


