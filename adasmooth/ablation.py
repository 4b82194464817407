"""Tables SM2 and SM3: mixing networks at one clean accuracy, with and without the evaluation range.

The supplement's protocol for its tables: every network's head is shifted so that h^{α_θ} reaches the
common clean accuracy on the evaluation images (90 % ± 0.02 on CIFAR-10), then attacked
(:func:`adaptive.robust_accuracy_adaptive`: PGD through α_θ with CE and margin losses under both threat
models, transfers from g and h, PGD on a softened surrogate, APGD-T through α_θ).  With the
evaluation range of width w, α = α_min + w·σ(γ): α_min is chosen on the same images so that the clean
accuracy stays at the target (the supplement's rule, as :func:`learned.choose_head` does on the
validation split; :func:`adaptive.calibrate_range`), and the clamped model is attacked again.  A fooled α_θ
then costs at most what the constant α_min would, but α_max = α_min + w also caps what α_θ can add.

The baseline is the constant α at the same clean accuracy, attacked with CE- and margin-PGD, the
transfers and APGD-T.  Every attack result is cached by content (:mod:`adasmooth.attack_cache`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import attack_cache, evaluate
from .adaptive import calibrate_constant_alpha, calibrate_range, calibrate_shift, robust_accuracy_adaptive
from .learned import table_network
from .mixing_net import TRAIN_SHIFT
from .statistics import best_options, mcnemar
from .tables import caption, table

log = logging.getLogger(__name__)

CAL_TOL = 2e-4  # the calibrations' tolerance (part of a calibrated model's cache key)


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
    const = calibrate_constant_alpha(g, h, x, y, target, tol=CAL_TOL, batch_size=batch_size)
    attacks = ("pgd_ce", "pgd_margin", "transfer_g", "transfer_h") + (("apgd_t",) if apgd_iter else ())
    provenance = {"calibrated": {"knob": "alpha", "target": target, "images": attack_cache.images_hash(x, y),
                                 "method": "adaptive.calibrate_constant_alpha", "tol": CAL_TOL}}
    row = evaluate.tradeoff_curve(g, h, [const.value], ["prob"], x, y, eps=eps, steps=steps, norm=norm,
                                  random_start=True, attacks=attacks, apgd_iter=max(apgd_iter, 1),
                                  batch_size=batch_size, seed=seed, use_cache=use_cache,
                                  alpha_keys={const.value: provenance})[0]
    return {"alpha": const.value, "clean": const.accuracy, "attacked": row["attacked"], "n": len(y), "row": row}


def robust(model, x, y, *, identity: str | None = None, use_cache: bool = False, **attack_kw) -> dict:
    """:func:`adaptive.robust_accuracy_adaptive` of ``model`` as it stands (weights, head, range), each attack's
    outcome read from the attack cache when it was computed before (``seconds``: as recorded, ``cached``), and its
    per-image ``masks`` (clean, full, detached, worst) packed as hex (:func:`attack_cache.pack`), for paired tests.
    ``identity``: the model's content address (default: its weights and head as they are; a calibrated model
    passes :func:`attack_cache.calibrated`'s address instead)."""
    out = robust_accuracy_adaptive(model, x, y, identity=identity or attack_cache.fingerprint(model),
                                   use_cache=use_cache, return_masks=True, **attack_kw)
    return {**out, "masks": {k: attack_cache.pack(v) for k, v in out["masks"].items()}}


def evaluate_network(model, x, y, target: float, *, range_width: float | None, use_cache: bool = False,
                     batch_size: int = 500, **attack_kw) -> dict:
    """One cell of Table SM2 / SM3: shift ``model`` to clean accuracy ``target`` on (x, y) and attack it
    (``attack_kw``: :func:`adaptive.robust_accuracy_adaptive`'s); with ``range_width`` also choose its
    evaluation range there and attack it again (``"range"``).  The model is left with the full range."""
    model.net.set_alpha_range(0.0, 1.0)
    model.net.set_head(shift=TRAIN_SHIFT)  # the knob calibration sets: its canonical value in the address
    images = attack_cache.images_hash(x, y)
    shifted = attack_cache.calibrated(attack_cache.fingerprint(model), knob="shift", target=target, images=images,
                                      method="adaptive.calibrate_shift", tol=CAL_TOL)
    cal = calibrate_shift(model, x, y, target, tol=CAL_TOL, batch_size=batch_size)
    out = {"shift": cal.value, "clean": cal.accuracy, "within_tol": cal.within_tol,
           **robust(model, x, y, identity=shifted, use_cache=use_cache, batch_size=batch_size, **attack_kw)}
    if range_width:
        try:
            rng = calibrate_range(model, x, y, target, range_width, tol=CAL_TOL, batch_size=batch_size)
            ranged_id = attack_cache.calibrated(shifted, knob="alpha_min", width=range_width, target=target,
                                                images=images, method="adaptive.calibrate_range", tol=CAL_TOL)
            ranged = robust(model, x, y, identity=ranged_id, use_cache=use_cache, batch_size=batch_size, **attack_kw)
            out["range"] = {"alpha_min": rng.value, "alpha_max": rng.value + range_width, "width": range_width,
                            "clean": rng.accuracy, "within_tol": rng.within_tol, **ranged}
        finally:
            model.net.set_alpha_range(0.0, 1.0)
    return out


def _part(r: dict, field: str):
    """``(the cell or its "range" part, the field's name there)`` for ``field`` or "range/<field>"; None when a
    range field is asked of a cell evaluated without the range."""
    if field.startswith("range/"):
        return (r["range"], field[6:]) if "range" in r else None
    return r, field


def mask(r: dict, field: str, n: int):
    """The per-image mask ``field`` ("full", "worst", or "range/full", ...) of one cell (None without the range)."""
    part = _part(r, field)
    return None if part is None else attack_cache.unpack(part[0]["masks"][part[1]], n)


def paired(cells: dict, pairs, n: int, fields=("full", "range/full")) -> dict:
    """McNemar's exact test (same images) of each pair ``(a, b)`` of cell keys, per field: ``{(a, b): {field:
    statistics.mcnemar(a's mask, b's mask)}}`` (fields a cell lacks are left out)."""
    out = {}
    for a, b in pairs:
        tests = {}
        for f in fields:
            ma, mb = mask(cells[a], f, n), mask(cells[b], f, n)
            if ma is not None and mb is not None:
                tests[f] = mcnemar(ma, mb)
        out[(a, b)] = tests
    return out


def paired_table(tests: dict, label) -> dict:
    """:func:`paired` as a results table: one row per pair and field (``label(key)`` names a cell)."""
    rows = [[label(a), label(b), "with the range" if f.startswith("range/") else "full range", t["only_a"],
             t["only_b"], round(100 * t["diff"], 1), f"{t['p_value']:.3g}"]
            for (a, b), per in tests.items() for f, t in per.items()]
    return table(["cell a", "cell b", "α range", "only a right", "only b right", "a - b (points)", "McNemar exact p"],
                 rows)


def value(r: dict, field: str, percent: bool = True):
    """``field`` of one cell's result ("full", "worst", "clean", "shift", ...), or "range/<field>" (the same with
    the evaluation range; None without), in percent with ``percent``."""
    part = _part(r, field)
    if part is None:
        return None
    v = part[0][part[1]]
    return 100 * v if percent else v


def grid(cells: dict, rows, cols, field: str, percent: bool = True) -> list[list]:
    """:func:`value` ``field`` of ``cells[(r, c)]`` (in percent with ``percent``), one list per row r (columns c)."""
    return [[value(cells[(r, c)], field, percent) for c in cols] for r in rows]


def grid_table(cells: dict, rows, cols, field: str, *, row_name: str, col_names, percent: bool = True) -> dict:
    """:func:`grid` as a results table: a first column ``row_name`` holding the rows, then ``col_names``."""
    return table([row_name, *col_names], [[r, *vals] for r, vals in zip(rows, grid(cells, rows, cols, field, percent))])


def heatmap(ax, values, *, xticklabels, yticklabels, label: str, title: str):
    """A grid of accuracies in percent (:func:`grid`) on ``ax``, annotated, its colour bar named ``label``."""
    import numpy as np
    import seaborn as sns

    sns.heatmap(np.array(values, dtype=float), annot=True, fmt=".1f", cmap="viridis", xticklabels=xticklabels,
                yticklabels=yticklabels, cbar_kws={"label": label}, ax=ax)
    ax.set_title(title, fontsize=9)


def best_metrics(cells: dict, n: int, name: str, range_width: float | None, key=lambda k: k) -> dict:
    """``best_<name>`` (the cell with the best full-threat accuracy on the same ``n`` images, and every cell whose
    95 % interval overlaps it, best first: ``statistics.best_options``; each as ``key(k)``) and ``best_pgd_full``;
    with ``range_width``, the same with the evaluation range (``range_best_<name>``, ``range_best_pgd_full``)."""
    out = {}
    for prefix, field in [("", "full")] + ([("range_", "range/full")] if range_width else []):
        best = best_options({k: value(r, field, percent=False) for k, r in cells.items()}, n)
        out.update({f"{prefix}best_{name}": [key(k) for k in best],
                    f"{prefix}best_pgd_full": value(cells[best[0]], field, percent=False)})
    return {**out, "range_width": range_width} if range_width else out


def attacks_caption(label: str, n: int, eps: float, norm: str) -> str:
    """The caption of a Table SM2/SM3 figure: ``n`` images, the attacks of :func:`evaluate_network` and of
    :func:`constant_baseline` (``label``: "PGD-20 + APGD-T"), intervals not drawn."""
    attacks = (f"{label} through α_θ (CE and margin, full and detached threats), PGD transferred from g and h, "
               "PGD on a softened-Sigmoid surrogate; the constant α: the same PGD, transfers and APGD-T")
    return caption(n=n, eps=eps, norm=norm, attacks=attacks, drawn=False)


def summary(r: dict, range_width: float | None) -> str:
    """One cell's clean, full-threat and worst-case accuracies (and with the range), as printed."""
    return (f"clean {100 * r['clean']:.2f} %, full {100 * r['full']:.2f} %, worst {100 * r['worst']:.2f} %"
            + (f"; with the range {100 * r['range']['full']:.2f} %" if range_width else ""))


@dataclass
class Baseline:
    """What every cell of Tables SM2/SM3 is compared at: the evaluation images (x, y), g's and h's clean accuracy,
    the common ``target``, the constant α there (:func:`constant_baseline`), the attack ``label`` and the
    keyword arguments of :func:`evaluate_network` (attack budget, range width, cache, batch size)."""

    x: object
    y: object
    acc_g: float
    acc_h: float
    target: float
    const: dict
    label: str
    cell_kw: dict

    def evaluate(self, model) -> dict:
        """:func:`evaluate_network` of ``model`` at the common target."""
        return evaluate_network(model, self.x, self.y, self.target, **self.cell_kw)

    def metrics(self) -> dict:
        """The metrics every table records: the target, g's and h's clean accuracy, the constant α."""
        return {"target_clean": self.target, "clean_g": self.acc_g, "clean_h": self.acc_h,
                "constant_alpha": self.const["alpha"], "constant_pgd": self.const["attacked"], "n_eval": len(self.y)}


def baseline(nb, p: dict) -> Baseline:
    """The common target and the constant-α baseline of a Tables SM2/SM3 notebook (printed): ``nb`` its
    :func:`notebook.setup` (g, h, the images, the device), ``p`` its parameters."""
    (g, h), x, y = nb.models, nb.x, nb.y
    common = common_target(g, h, x, y, target_clean=p["target_clean"], target_position=p["target_position"],
                           batch_size=p["batch_size"])
    target = common["target"]
    print(f"clean accuracy: g {100 * common['acc_g']:.2f} %, h {100 * common['acc_h']:.2f} %; "
          f"every model is shifted to {100 * target:.2f} %")
    label = f"PGD-{p['steps']}" + (" + APGD-T" if p["apgd_iter"] else "")
    budget = dict(eps=p["eps"], steps=p["steps"], norm=p["norm"], apgd_iter=p["apgd_iter"], seed=p["seed"])
    run = dict(use_cache=p["use_attack_cache"], batch_size=p["batch_size"])
    const = constant_baseline(g, h, x, y, target, **budget, **run)
    print(f"constant α = {const['alpha']:.4f}: clean {100 * const['clean']:.2f} %, "
          f"{label} {100 * const['attacked']:.2f} %")
    cell_kw = dict(range_width=p["range_width"], **run, **budget, surrogate_scale=p["surrogate_scale"],
                   device=nb.device)
    return Baseline(x, y, common["acc_g"], common["acc_h"], target, const, label, cell_kw)


def network(p: dict, device, *, c_ce: float, c_bce: float, c_prod: float):
    """The mixing network with loss weights (c_CE, c_BCE, c_prod) and the training parameters of a Tables SM2/SM3
    notebook ``p`` (:func:`learned.table_network`: shipped in the zoo, found by its configuration)."""
    return table_network(p["g"], p["h"], eps=p["eps"], norm=p["norm"], epochs=p["epochs"],
                         batch_size=p["mix_batch_size"], c_ce=c_ce, c_bce=c_bce, c_prod=c_prod, n_train=p["n_train"],
                         steps_df=p["mix_steps_df"], width=p["mix_width"], momentum=p["mix_momentum"], seed=p["seed"],
                         root=p["zoo_root"], base_overrides=p["zoo_overrides"] or None,
                         train_if_missing=p["train_missing"], device=device, progress=p["progress"])
