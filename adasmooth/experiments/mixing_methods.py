"""Notebook 08: three ways of mixing the same g and h (constant α, the learned α_θ, MixedNUTS), set to the
same clean validation accuracy and attacked on the same test images (:func:`adasmooth.methods.compare`)."""
from __future__ import annotations

import logging

from .. import comparison, learned, methods, notebook, parameters, results
from .base import Experiment, Figure, new, one_axes

log = logging.getLogger(__name__)

STEM = "08_mixing_methods"

#: methods.tables key -> the table's title in the results JSON
TITLES = {"points": "Mixing methods at matched clean accuracies (95 % intervals, cost)",
          "paired": "Mixing methods: paired tests (McNemar, same images)",
          "verdicts": "Mixing methods: verdict per clean accuracy"}
#: methods.converged_tables key -> title
CONVERGED_TITLES = {"ladder": "Mixing methods on the attack-budget ladder: attacked accuracy (%) as the budget grows",
                    "paired": "Mixing methods at the converged budget: paired tests (McNemar, same images)"}


def mixing_methods(namespace: dict) -> Experiment:
    """Notebook 08 with its parameters ``namespace``: MixedNUTS's (s, p, c) fitted on the validation split (cached
    in the zoo folder), the three methods matched at ``curve_positions`` and attacked with the full attack set."""
    p = parameters.bind(STEM, namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup(STEM, namespace, images=False)  # parameters checked, seeded; g, h loaded
    mix = p.headline_mix_overrides or None
    if p.learned_mixer is not None:  # shipped in data/zoo; trained here only when missing and train_missing
        learned.get_or_train(p.learned_mixer, train_if_missing=p.train_missing, root=p.zoo_root,
                             base_overrides=p.zoo_overrides or None, mixing_overrides=mix, device=nb.device,
                             progress=p.progress)
    budget = comparison.Budget.of(p)
    doc = methods.compare(learned_name=p.learned_mixer, g=p.g, h=p.h, positions=p.curve_positions, n_test=p.n_eval,
                          budget=budget, nuts_percentile=p.nuts_percentile, nuts_grid=p.nuts_grid, nuts_k=p.nuts_k,
                          nuts_n_fit=p.nuts_n_fit, nuts_fit_steps=p.nuts_fit_steps, nuts_smooth=p.nuts_smooth,
                          endpoints=p.curve_endpoints, root=p.zoo_root, base_overrides=p.zoo_overrides or None,
                          mixing_overrides=mix, use_cache=p.use_attack_cache, ladder_steps=p.budget_ladder,
                          ladder_shards=p.ladder_shards, device=nb.device, progress=p.progress)
    fit = doc["nuts_fit"]
    took = "cached" if fit["cached"] else f"{fit['seconds']:.0f} s"
    print(f"MixedNUTS fit: s = {fit['s']:g}, p = {fit['p']:g}, c = {fit['c']:g} (objective {fit['objective']:.3f}, "
          f"authors' α = {fit['alpha_cutoff']:.4f}, {took})")
    tabs = methods.tables(doc)
    tables = {TITLES[k]: tabs[k] for k in TITLES}
    figures = [Figure(STEM, one_axes(methods.plot, doc), budget.caption(p.n_eval))]
    conv = [pt for pt in doc["points"] if "converged" in pt]
    if conv:
        ctabs = methods.converged_tables(doc)
        tables.update({CONVERGED_TITLES[k]: ctabs[k] for k in CONVERGED_TITLES})
        steps = ", ".join(map(str, p.budget_ladder))
        for pt in conv:
            print(f"at the converged budget (position {pt['position']:g}):", pt["converged"]["verdict"]["verdict"])
            caption = (budget.caption(p.n_eval) + f"; then the strong family at {steps} PGD steps per attack, "
                       "cumulative per image; bands: 95 % Clopper-Pearson")
            figures.append(Figure(f"{STEM}_ladder@{pt['position']:g}" if len(conv) > 1 else f"{STEM}_ladder",
                                  one_axes(comparison.plot_ladder, pt["converged"]), caption))
    return new(STEM, namespace, metrics=_metrics(doc), tables=tables, data={"comparison": doc}, inputs=nb.inputs,
               figures=figures)


def _metrics(doc: dict) -> dict:
    """``n_eval``, the MixedNUTS fit and, per position ``@p``, the target, the verdict and each method's clean and
    attacked accuracy."""
    fit = doc["nuts_fit"]
    metrics = {"n_eval": doc["n"], "nuts_s": fit["s"], "nuts_p": fit["p"], "nuts_c": fit["c"],
               "nuts_fit_seconds": fit["seconds"]}
    for pt in doc["points"]:
        tag = f"{pt['position']:g}"
        metrics[f"target_val@{tag}"] = pt["target_val"]
        metrics[f"verdict@{tag}"] = pt["verdict"]["verdict"]
        for name, m in pt["methods"].items():
            metrics[f"{name}_clean@{tag}"] = m["clean"]["acc"]
            metrics[f"{name}_attacked@{tag}"] = m["attacked"]["acc"]
        if "converged" in pt:
            metrics[f"converged_verdict@{tag}"] = pt["converged"]["verdict"]["verdict"]
            for name, m in pt["converged"]["methods"].items():
                metrics[f"converged_{name}_attacked@{tag}"] = m["attacked"]["acc"]
                metrics[f"converged_{name}_converged@{tag}"] = m["reading"]["converged"]
    return metrics
