"""Tables SM2 and SM3: mixing networks at one clean accuracy, with and without the evaluation range.

The supplement's protocol for its tables: every network's head is shifted so that h^{α_θ} reaches the
common clean accuracy on the evaluation images (90 % ± 0.02 on CIFAR-10), then attacked
(:func:`adaptive.robust_accuracy_adaptive`: PGD through α_θ with CE and margin losses under both threat
models, transfers from g and h, PGD on a softened surrogate, APGD-T through α_θ).  With the
evaluation range of width w, α = α_min + w·σ(γ): α_min is chosen on the same images so that the clean
accuracy stays at the target (the supplement's rule, as :func:`learned.choose_head` does on the
validation split; :func:`adaptive.calibrate_range`), and the clamped model is attacked again.  A fooled α_θ then costs at most what the
constant α_min would, but α_max = α_min + w also caps what α_θ can add.

The baseline is the constant α at the same clean accuracy, attacked with CE- and margin-PGD, the
transfers and APGD-T.  Every attack result is cached by content (:mod:`adasmooth.attack_cache`).
"""
from __future__ import annotations

import logging

from . import attack_cache, evaluate
from .adaptive import calibrate_constant_alpha, calibrate_range, calibrate_shift, robust_accuracy_adaptive

log = logging.getLogger(__name__)


def common_target(g, h, x, y, *, target_clean: float | None, target_position: float, batch_size: int = 500) -> dict:
    """``{"acc_g", "acc_h", "target"}``: the common clean accuracy, ``target_clean`` or the point
    ``target_position`` of the way from acc(h) to acc(g) on (x, y)."""
    acc_g = evaluate.accuracy(g, x, y, batch_size)
    acc_h = evaluate.accuracy(h, x, y, batch_size)
    target = target_clean if target_clean is not None else acc_h + target_position * (acc_g - acc_h)
    return {"acc_g": acc_g, "acc_h": acc_h, "target": target}


def constant_baseline(g, h, x, y, target: float, *, eps: float, steps: int, norm: str, apgd_iter: int, seed: int,
                      batch_size: int = 500, use_cache: bool = False) -> dict:
    """The constant α with clean accuracy ``target`` on (x, y), attacked with CE- and margin-PGD (random
    start), PGD transferred from g and h, and APGD-T (``apgd_iter`` iterations; 0: none)."""
    const = calibrate_constant_alpha(g, h, x, y, target, batch_size=batch_size)
    attacks = ("pgd_ce", "pgd_margin", "transfer_g", "transfer_h") + (("apgd_t",) if apgd_iter else ())
    row = evaluate.tradeoff_curve(g, h, [const.value], ["prob"], x, y, eps=eps, steps=steps, norm=norm,
                                  random_start=True, attacks=attacks, apgd_iter=max(apgd_iter, 1),
                                  batch_size=batch_size, seed=seed, use_cache=use_cache)[0]
    return {"alpha": const.value, "clean": const.accuracy, "attacked": row["attacked"], "n": len(y), "row": row}


def robust(model, x, y, *, use_cache: bool = False, **attack_kw) -> dict:
    """:func:`adaptive.robust_accuracy_adaptive` of ``model`` as it stands (weights, head, range), read
    from the attack cache when it was computed before; adds ``seconds`` and ``cached``."""
    def compute():
        return robust_accuracy_adaptive(model, x, y, **attack_kw)

    question = {"what": "adaptive.robust_accuracy_adaptive", "model": attack_cache.fingerprint(model),
                "images": attack_cache.images_hash(x, y),
                "params": {k: v for k, v in attack_kw.items() if k not in ("device", "progress")}}
    out, seconds, hit = attack_cache.cached_doc(question, compute, use_cache)
    return {**out, "seconds": round(seconds, 1), "cached": hit}


def evaluate_network(model, x, y, target: float, *, range_width: float | None, use_cache: bool = False,
                     batch_size: int = 500, **attack_kw) -> dict:
    """One cell of Table SM2 / SM3: shift ``model`` to clean accuracy ``target`` on (x, y) and attack it
    (``attack_kw``: :func:`adaptive.robust_accuracy_adaptive`'s); with ``range_width`` also choose its
    evaluation range there and attack it again (``"range"``).  The model is left with the full range."""
    model.net.set_alpha_range(0.0, 1.0)
    cal = calibrate_shift(model, x, y, target, batch_size=batch_size)
    out = {"shift": cal.value, "clean": cal.accuracy, "within_tol": cal.within_tol,
           **robust(model, x, y, use_cache=use_cache, batch_size=batch_size, **attack_kw)}
    if range_width:
        try:
            rng = calibrate_range(model, x, y, target, range_width, batch_size=batch_size)
            ranged = robust(model, x, y, use_cache=use_cache, batch_size=batch_size, **attack_kw)
            out["range"] = {"alpha_min": rng.value, "alpha_max": rng.value + range_width, "width": range_width,
                            "clean": rng.accuracy, "within_tol": rng.within_tol, **ranged}
        finally:
            model.net.set_alpha_range(0.0, 1.0)
    return out


def grid(cells: dict, rows, cols, field: str) -> list[list]:
    """``field`` of ``cells[(r, c)]`` in percent, one list per row r (columns c): a result field
    ("full", "worst", "clean", ...) or "range/<field>" (the same with the evaluation range; None without)."""
    def value(r):
        if field.startswith("range/"):
            return 100 * r["range"][field[6:]] if "range" in r else None
        return 100 * r[field]

    return [[value(cells[(r, c)]) for c in cols] for r in rows]
