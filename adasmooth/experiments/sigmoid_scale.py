"""Notebook 06, Table SM3: one mixing network (Table SM2's best loss) with its Sigmoid input multiplied by each
scale s, shifted to the common clean accuracy and attacked, with and without the evaluation range
(:mod:`adasmooth.ablation`), against the constant α at the same clean accuracy."""
from __future__ import annotations

import logging

from .. import ablation, notebook, parameters
from ..results import table
from .base import Figure, new

log = logging.getLogger(__name__)


def sigmoid_scale(namespace: dict):
    """Table SM3 with the parameters of notebook 06 (its ``globals()``): one row per Sigmoid scale."""
    p = parameters.bind("06_sigmoid_scale", namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup("06_sigmoid_scale", p)
    base = ablation.baseline(nb, p)
    model = ablation.network(p, nb.device, c_ce=p["c_ce"], c_bce=p["c_bce"], c_prod=p["c_prod"])
    per_scale = {}
    for s in p["scales"]:
        model.net.set_head(scale=s)
        r = per_scale[s] = base.evaluate(model)
        print(f"scale {s:g}: shift {r['shift']:.3f}, " + ablation.summary(r, p["range_width"]))
    metrics = {**base.metrics(), **ablation.best_metrics(per_scale, len(base.y), "scale", p["range_width"]),
               "train_seconds": model.metadata["train_seconds"]}
    width = p["range_width"]
    title = f"Table SM3: {base.label} accuracy by Sigmoid scale" + (
        f", without and with the evaluation range (width {width:g})" if width else "")
    caption = ablation.attacks_caption(base.label, len(base.y), p["eps"], p["norm"])
    tables = {title: _table(per_scale, width), **_paired(per_scale, len(base.y))}
    return new("06_sigmoid_scale", p, metrics=metrics, tables=tables, inputs=nb.inputs,
               data={"constant": base.const, "per_scale": [{"scale": s, **r} for s, r in per_scale.items()]},
               figures=[Figure("06_sigmoid_scale", lambda: _plot(per_scale, base, width), caption)])


def _table(per_scale: dict, range_width: float | None) -> dict:
    """Table SM3: per scale its shift and accuracies (%), and with ``range_width`` the same with the range."""
    fields = [("shift", False), ("clean", True), ("full", True), ("worst", True)]
    columns = ["scale", "shift", "clean %", "full threat %", "worst of both threats %"]
    if range_width:
        fields += [("range/alpha_min", False), ("range/clean", True), ("range/full", True), ("range/worst", True)]
        columns += ["α_min", "clean with the range %", "full threat with the range %", "worst with the range %"]
    return table(columns, [[s, *(ablation.value(r, f, pct) for f, pct in fields)] for s, r in per_scale.items()])


def _paired(per_scale: dict, n: int) -> dict:
    """Each scale against scale 2 (the paper's choice; McNemar on the same images, full threat), without and with the
    range; empty when 2 is not among the scales."""
    if 2 not in per_scale:
        return {}
    tests = ablation.paired(per_scale, [(s, 2) for s in per_scale if s != 2], n)
    return {"Table SM3, paired: each scale against scale 2 (full threat, same images)":
            ablation.paired_table(tests, lambda s: f"scale {s:g}")}


def _plot(per_scale: dict, base: ablation.Baseline, range_width: float | None):
    """Attacked accuracy over the Sigmoid scale (full threat, worst case, with the range), the constant α's line."""
    import matplotlib.pyplot as plt

    scales = list(per_scale)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(scales, [100 * per_scale[s]["full"] for s in scales], "o-", label="adaptive α_θ, full threat")
    ax.plot(scales, [100 * per_scale[s]["worst"] for s in scales], "s--", label="adaptive α_θ, worst case")
    if range_width:
        ax.plot(scales, [100 * per_scale[s]["range"]["full"] for s in scales], "^-.",
                label=f"with the range (width {range_width:g}), full threat")
    ax.axhline(100 * base.const["attacked"], color="gray", ls=":", label="constant α")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("Sigmoid scale")
    ax.set_ylabel(f"{base.label} accuracy (%)")
    ax.set_title(f"Table SM3 at clean accuracy {100 * base.target:.1f} %", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
