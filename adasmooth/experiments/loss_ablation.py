"""Notebook 05: Table SM2, the composite loss's weights (c_prod, c_CE): each mixing network shifted to the common
clean accuracy and attacked, with and without the evaluation range (:mod:`adasmooth.ablation`).

Every mixing network is shipped in the zoo (found by its configuration); the attack results replay from the
attack cache."""
from __future__ import annotations

import logging

from .. import ablation, notebook, parameters
from .base import Figure, new

log = logging.getLogger(__name__)

STEM = "05_loss_ablation"


def loss_ablation(namespace: dict):
    """Table SM2 with the parameters of notebook 05 (its ``globals()``)."""
    p = parameters.bind(STEM, namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup(STEM, p)
    base = ablation.baseline(nb, p)
    cells = _cells(p, base, nb.device)
    metrics = {**base.metrics(), "constant_clean": base.const["clean"],
               **ablation.best_metrics(cells, len(base.y), "cells", p["range_width"], key=list)}
    caption = ablation.attacks_caption(base.label, len(base.y), p["eps"], p["norm"])
    data = {"constant": base.const,
            "cells": [{"c_prod": cp, "c_ce": ce, "c_bce": p["c_sum"] - ce, **r} for (cp, ce), r in cells.items()]}
    tables = {**_sm2_tables(cells, p, base.label), **_paired(cells, p, len(base.y))}
    return new(STEM, p, metrics=metrics, tables=tables, data=data, inputs=nb.inputs,
               figures=[Figure(STEM, lambda: _plot_grid(cells, p, base), caption)])


def _cells(p: dict, base: ablation.Baseline, device) -> dict:
    """Table SM2's cells: ``{(c_prod, c_CE): result}`` (:meth:`ablation.Baseline.evaluate` and the network's
    training time), each network shipped in the zoo (trained here only when missing and ``train_missing``)."""
    cells = {}
    for cp in p["c_prod"]:
        for ce in p["c_ce"]:
            model = ablation.network(p, device, c_ce=ce, c_bce=p["c_sum"] - ce, c_prod=cp)
            r = cells[(cp, ce)] = {**base.evaluate(model), "train_seconds": model.metadata["train_seconds"]}
            print(f"c_prod = {cp:g}, c_CE = {ce:g}: " + ablation.summary(r, p["range_width"]))
    return cells


def _columns(p: dict) -> list[str]:
    return [f"c_CE = {ce:g}, c_BCE = {p['c_sum'] - ce:g}" for ce in p["c_ce"]]


def _sm2_tables(cells: dict, p: dict, label: str) -> dict:
    """Table SM2 (full threat, worst case, clean accuracy; with ``range_width`` the same with the range and α_min)."""
    def tab(field, percent=True):
        return ablation.grid_table(cells, p["c_prod"], p["c_ce"], field, row_name="c_prod", col_names=_columns(p),
                                   percent=percent)

    tables = {f"Table SM2: {label} accuracy (%), full threat model": tab("full"),
              f"{label} accuracy (%), worst case over both threat models": tab("worst"),
              "Clean accuracy (%) after the shift": tab("clean")}
    if p["range_width"]:
        tables.update({
            f"Table SM2 with the evaluation range (width {p['range_width']:g}): {label} accuracy (%), full threat "
            "model": tab("range/full"),
            f"With the evaluation range: {label} accuracy (%), worst case over both threat models": tab("range/worst"),
            "With the evaluation range: α_min": tab("range/alpha_min", percent=False)})
    return tables


def _paired(cells: dict, p: dict, n: int) -> dict:
    """Each c_prod > 0 cell against the c_prod = 0 cell of its c_CE column (McNemar on the same images, full threat),
    without and with the range; empty without a c_prod = 0 row."""
    if 0 not in p["c_prod"]:
        return {}
    pairs = [((cp, ce), (0, ce)) for cp in p["c_prod"] if cp != 0 for ce in p["c_ce"]]
    tests = ablation.paired(cells, pairs, n)
    return {"Table SM2, paired: each c_prod > 0 cell against c_prod = 0 in its column (full threat, same images)":
            ablation.paired_table(tests, lambda k: f"c_prod {k[0]:g}, c_CE {k[1]:g}")}


def _plot_grid(cells: dict, p: dict, base: ablation.Baseline):
    """Table SM2 as heatmaps: without the range, and with it."""
    import matplotlib.pyplot as plt

    c_prod, c_ce, width = p["c_prod"], p["c_ce"], p["range_width"]
    panels = [("full", "without the range")] + ([("range/full", f"with the range (width {width:g})")] if width else [])
    fig, axes = plt.subplots(1, len(panels), figsize=((1.9 * len(c_ce) + 2) * len(panels), 0.8 * len(c_prod) + 1.8),
                             squeeze=False)
    for ax, (field, name) in zip(axes[0], panels):
        ablation.heatmap(ax, ablation.grid(cells, c_prod, c_ce, field), xticklabels=_columns(p),
                         yticklabels=[f"c_prod = {cp:g}" for cp in c_prod], label=f"{base.label} accuracy (%)",
                         title=f"Table SM2 {name}: clean {100 * base.target:.1f} % "
                               f"(constant α: {100 * base.const['attacked']:.1f} %)")
    fig.tight_layout()
    return fig
