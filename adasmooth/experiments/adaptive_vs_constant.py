"""Notebook 04: the paper's headline claim (b), the learned α_θ against the constant α at one clean accuracy
(:func:`comparison.headline`), on the attack-budget ladder (:func:`comparison.convergence`: read where the attacks
stop moving), α_θ's training-budget curve (:mod:`comparison.training_budget`), the same comparison at several clean
accuracies (:func:`matched.curves`) and the mixing networks' training curves.

Every learned mixer is shipped in the zoo (its head chosen on the validation split); the attack results replay
from the attack cache."""
from __future__ import annotations

import logging

from .. import comparison, learned, matched, notebook, parameters, results
from .base import Figure, new, one_axes

log = logging.getLogger(__name__)

STEM = "04_adaptive_vs_constant"


def adaptive_vs_constant(namespace: dict):
    """The ladder, the headline, the training-budget curve, the curves and the training curves with the parameters
    of notebook 04 (its ``globals()``)."""
    p = parameters.bind(STEM, namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup(STEM, p, images=False)
    head = _headline(p, nb.device)  # first: it trains a missing learned mixer (when train_missing) that the rest read
    ladder = _ladder(p, nb.device) if p["budget_ladder"] and p["ladder_mixers"] else None
    budget_curve = _training_budget(p, nb.device) if p["budget_mixers"] else None
    curves = _curves(p, nb.device) if p["curve_positions"] else None
    train_curves = learned.training_curves(p["headline_mixers"], **_mixers(p))
    print("no recorded training curve:", [n for n, c in train_curves.items() if not c])
    metrics, tables, figures = {}, {}, []
    for part in (ladder, head, budget_curve, curves):
        if part is not None:
            metrics.update(part["metrics"])
            tables.update(part["tables"])
            figures.append(part["figure"])
    recorded = {n: c for n, c in train_curves.items() if c}
    if recorded:
        figures.append(Figure("04_training_curves", lambda: _plot_training(recorded), results.caption(
            n=p["headline_n"], eps=p["eps"], norm=p["norm"], attacks="training attacks of each network's recipe",
            interval=None, extra="training losses (n: the headline's test images, not used here)")))
    data = {"headline": head["doc"], "converged": ladder and ladder["doc"], "curves": curves and curves["doc"],
            "training_budget": budget_curve and budget_curve["doc"], "training_curves": train_curves,
            "verdicts": head["verdicts"]}
    return new(STEM, p, metrics=metrics, tables=tables, data=data, inputs=nb.inputs, figures=figures)


def _mixers(p: dict) -> dict:
    """Where the headline's learned mixers are found: zoo folder and overrides."""
    return dict(root=p["zoo_root"], base_overrides=p["zoo_overrides"] or None,
                mixing_overrides=p["headline_mix_overrides"] or None)


def _provide(p: dict, names, device) -> None:
    """The learned mixers ``names``: shipped in data/zoo; trained here only when missing and ``train_missing``."""
    for name in names:
        learned.get_or_train(name, train_if_missing=p["train_missing"], **_mixers(p), device=device,
                             progress=p["progress"])


def _headline(p: dict, device) -> dict:
    """The learned mixers (shipped in the zoo) against the constant α: ``doc``, ``verdicts``, its tables, metrics
    and figure."""
    names = p["headline_mixers"]
    _provide(p, names, device)
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
                                 jobs=p["ladder_jobs"],
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


def _training_budget(p: dict, device) -> dict:
    """α_θ's training-budget curve (:mod:`comparison.training_budget`): ``budget_mixers`` each against the constant
    α with the headline's attack set: ``doc``, its table, metrics and figure."""
    _provide(p, p["budget_mixers"], device)
    doc = comparison.training_budget.run(learned_names=p["budget_mixers"], g=p["g"], h=p["h"], n_test=p["headline_n"],
                                         budget=comparison.Budget.of(p), **_mixers(p), use_cache=p["use_attack_cache"],
                                         device=device, progress=p["progress"])
    print(comparison.training_budget.line(doc))
    metrics = {"budget_smallest_steps": doc["smallest_steps"],
               "budget_smallest_reproduced": doc["smallest_significant"],
               **{f"budget_{pt['steps']}_attacked": pt["attacked"]["acc"] for pt in doc["points"]},
               **{f"budget_{pt['steps']}_verdict": pt["verdict"]["verdict"] for pt in doc["points"]}}
    caption = comparison.Budget.of(p).caption(doc["n"]) + (
        " The 20-step set is the headline's; at the converged budget the ladder lowers the 429-step α_θ (above).")
    return {"doc": doc, "metrics": metrics,
            "tables": {"Training budget: α_θ trained for fewer steps vs the constant α (95 % intervals, McNemar)":
                       comparison.training_budget.tables(doc)["curve"]},
            "figure": Figure("04_training_budget", one_axes(comparison.training_budget.plot, doc), caption)}


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
