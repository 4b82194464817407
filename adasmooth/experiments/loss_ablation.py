"""Notebook 04: the headline comparison (the learned α_θ against the constant α at one clean accuracy,
:func:`comparison.headline`), the same at several clean accuracies (:func:`matched.curves`), the mixing networks'
training curves, and Table SM2: the composite loss's weights (c_prod, c_CE), each network shifted to the common
clean accuracy and attacked, with and without the evaluation range (:mod:`adasmooth.ablation`).

Every mixing network is shipped in the zoo (found by its configuration); the attack results replay from the
attack cache."""
from __future__ import annotations

import logging

from .. import ablation, comparison, learned, matched, notebook, parameters, results
from .base import Figure, new, one_axes

log = logging.getLogger(__name__)


def loss_ablation(namespace: dict):
    """The headline, the curves, the training curves and Table SM2 with the parameters of notebook 04 (its
    ``globals()``)."""
    p = parameters.bind("04_loss_ablation", namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup("04_loss_ablation", p)
    head = _headline(p, nb.device) if p["headline"] else None
    ladder = _ladder(p, nb.device) if p["headline"] and p["budget_ladder"] and p["ladder_mixers"] else None
    curves = _curves(p, nb.device) if p["headline"] and p["curve_positions"] else None
    train_curves = learned.training_curves(p["headline_mixers"], **_mixers(p)) if p["headline"] else {}
    print("no recorded training curve:", [n for n, c in train_curves.items() if not c])
    base = ablation.baseline(nb, p)
    cells = _cells(p, base, nb.device)
    metrics = {**base.metrics(), "constant_clean": base.const["clean"],
               **ablation.best_metrics(cells, len(base.y), "cells", p["range_width"], key=list)}
    tables = _sm2_tables(cells, p, base.label)
    caption = ablation.attacks_caption(base.label, len(base.y), p["eps"], p["norm"])
    figures = [ladder["figure"]] if ladder else []
    figures.append(Figure("04_loss_ablation", lambda: _plot_grid(cells, p, base), caption))
    for part in (ladder, head, curves):
        if part is not None:
            metrics.update(part["metrics"])
            tables.update(part["tables"])
            if part is not ladder:
                figures.append(part["figure"])
    recorded = {n: c for n, c in train_curves.items() if c}
    if recorded:
        figures.append(Figure("04_training_curves", lambda: _plot_training(recorded), results.caption(
            n=p["headline_n"], eps=p["eps"], norm=p["norm"], attacks="training attacks of each network's recipe",
            interval=None, extra="training losses (n: the headline's test images, not used here)")))
    data = {"headline": head and head["doc"], "converged": ladder and ladder["doc"],
            "curves": curves and curves["doc"], "training_curves": train_curves,
            "verdicts": head and head["verdicts"], "constant": base.const,
            "cells": [{"c_prod": cp, "c_ce": ce, "c_bce": p["c_sum"] - ce, **r} for (cp, ce), r in cells.items()]}
    return new("04_loss_ablation", p, metrics=metrics, tables=tables, data=data, inputs=nb.inputs, figures=figures)


def _mixers(p: dict) -> dict:
    """Where the headline's learned mixers are found: zoo folder and overrides."""
    return dict(root=p["zoo_root"], base_overrides=p["zoo_overrides"] or None,
                mixing_overrides=p["headline_mix_overrides"] or None)


def _headline(p: dict, device) -> dict:
    """The learned mixers (shipped in the zoo) against the constant α: ``doc``, ``verdicts``, its tables, metrics
    and figure."""
    names = p["headline_mixers"]
    for name in names:  # shipped in data/zoo; trained here only when missing and train_missing
        learned.get_or_train(name, train_if_missing=p["train_missing"], **_mixers(p), device=device,
                             progress=p["progress"])
    doc = comparison.headline(g=p["g"], h=p["h"], learned_names=names, n_test=p["headline_n"],
                              budget=comparison.Budget.of(p), **_mixers(p), use_cache=p["use_attack_cache"],
                              device=device, progress=p["progress"])
    tabs = comparison.headline_tables(doc)
    verdicts = {name: comparison.verdict(doc, name) for name in names}
    print({name: v["verdict"] for name, v in verdicts.items()})
    metrics = {}
    for name in names:
        m = doc["methods"][name]
        metrics.update({f"headline_{name}_clean": m["clean"]["acc"], f"headline_{name}_attacked": m["attacked"]["acc"],
                        f"headline_{name}_verdict": verdicts[name]["verdict"]})
    const = doc["methods"]["constant"]
    metrics.update({"headline_constant_clean": const["clean"]["acc"],
                    "headline_constant_attacked": const["attacked"]["acc"], "headline_n": doc["n"]})
    tables = {"Headline: learned α_θ vs constant α (95 % intervals)": tabs["methods"],
              "Headline: paired tests (McNemar, same images)": tabs["paired"],
              "Headline: α_θ on clean and attacked inputs": tabs["diagnostics"]}
    return {"doc": doc, "verdicts": verdicts, "metrics": metrics, "tables": tables,
            "figure": Figure("04_headline", one_axes(comparison.plot_headline, doc),
                                 comparison.Budget.of(p).caption(doc["n"]))}


def _ladder(p: dict, device) -> dict:
    """The headline's ``ladder_mixers`` and the constant α on the attack-budget ladder (:func:`comparison.convergence`):
    ``doc``, the converged verdicts, tables, metrics and figure."""
    budget = comparison.Budget.of(p)
    doc = comparison.convergence(g=p["g"], h=p["h"], learned_names=p["ladder_mixers"], n_test=p["headline_n"],
                                 budget=budget, steps=p["budget_ladder"], shards=p["ladder_shards"],
                                 method_steps=p["ladder_budgets"] or None, **_mixers(p),
                                 use_cache=p["use_attack_cache"], device=device, progress=p["progress"])
    tabs = comparison.ladder_tables(doc)
    print({name: v["verdict"] for name, v in doc["verdicts"].items()}, "(at the converged budget)")
    metrics = {"converged_constant_attacked": doc["methods"]["constant"]["attacked"]["acc"]}
    for name in p["ladder_mixers"]:
        m = doc["methods"][name]
        metrics.update({f"converged_{name}_attacked": m["attacked"]["acc"],
                        f"converged_{name}_verdict": doc["verdicts"][name]["verdict"],
                        f"converged_{name}_converged": m["reading"]["converged"]})
    steps = ", ".join(map(str, p["budget_ladder"]))
    caption = results.caption(n=doc["n"], eps=p["eps"], norm=p["norm"],
                              attacks=f"the base set at {p['steps']} steps, then the strong family at {steps} steps per "
                                      "attack (cumulative per-image worst case)")
    return {"doc": doc, "metrics": metrics,
            "tables": {"Attack-budget ladder: attacked accuracy (%) as the budget grows (95 % intervals)": tabs["ladder"],
                       "Attack-budget ladder: paired tests at the largest budget (McNemar, same images)": tabs["paired"]},
            "figure": Figure("04_budget_ladder", one_axes(comparison.plot_ladder, doc), caption)}


def _curves(p: dict, device) -> dict:
    """The comparison at each of ``curve_positions``: ``doc``, its tables, metrics (verdicts) and figure."""
    doc = matched.curves(learned_name=p["headline_mixers"][0], positions=p["curve_positions"],
                         n_test=p["headline_n"], budget=comparison.Budget.of(p), endpoints=p["curve_endpoints"],
                         **_mixers(p),
                         use_cache=p["use_attack_cache"], device=device, progress=p["progress"])
    tabs = matched.curve_tables(doc)
    metrics = {}
    for pt in doc["points"]:
        if "verdict" in pt:
            metrics[f"curve_{pt['position']:g}_verdict"] = pt["verdict"]["verdict"]
            metrics[f"curve_{pt['position']:g}_difference_points"] = pt["verdict"]["difference_points"]
    tables = {"Curves: learned α_θ vs constant α at matched clean accuracies (95 % intervals)": tabs["points"],
              "Curves: paired tests (McNemar, same images)": tabs["paired"]}
    return {"doc": doc, "metrics": metrics, "tables": tables,
            "figure": Figure("04_matched_curves", one_axes(matched.plot_curves, doc),
                                   comparison.Budget.of(p).caption(p["headline_n"]))}


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


def _plot_training(recorded: dict):
    """The composite loss and its BCE part over training, per mixing network."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (n, c) in enumerate(recorded.items()):
        ax.plot(c["step"], c["loss"], color=f"C{i}", label=f"{n}: composite loss")
        ax.plot(c["step"], c["bce"], "--", color=f"C{i}", label=f"{n}: BCE part")
    ax.set(xlabel="training step", ylabel="loss (window mean)", title="mixing-network training curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
