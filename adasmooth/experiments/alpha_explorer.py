"""Notebook 07: the α explorer, h^α's clean accuracy recomputed live from cached logits of g and h as α
moves, its attacked accuracy read from a precomputed trade-off grid (:class:`adasmooth.explorer.AlphaExplorer`)."""
from __future__ import annotations

import logging

from .. import data, evaluate, explorer, notebook, parameters, results
from .base import Experiment, Figure, new

log = logging.getLogger(__name__)

STEM = "07_alpha_explorer"


def alpha_explorer(namespace: dict) -> Experiment:
    """Notebook 07 with its parameters ``namespace``: the attacked-accuracy grid over ``alphas`` and ``options``
    (computed, or the one a run recorded when ``grid_from``) and the explorer over it, starting at α = ``alpha``:
    ``exp.explorer.widget``.  The metrics, the confusion and the figure follow the slider (those of its α when
    saved)."""
    p = parameters.bind(STEM, namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup(STEM, namespace)  # parameters checked, seeded; g, h and the test images loaded
    attacks = p.attacks or list(evaluate.DEFAULT_ATTACKS)
    rows = _grid(p, nb, attacks)
    logits_g, logits_h = (explorer.cached_logits(m, nb.x, p.batch_size) for m in nb.models)
    ex = explorer.AlphaExplorer(logits_g, logits_h, nb.y.cpu(), rows, alpha=p.alpha,
                                class_names=data.CLASS_NAMES.get(p.dataset),
                                attack=f"worst of {', '.join(attacks)}; {p.steps} steps, {p.norm} ε = {p.eps:g}")
    table = results.table(["option", "α", "clean %", "attacked %"],
                          [[evaluate.LABELS.get(r["option"], r["option"]), r["alpha"], 100 * r["clean"],
                            100 * r["attacked"]] for r in rows])
    metrics = {"grid_gap": ex.grid_gap(), "alpha": ex.slider.value, "clean_at_alpha": ex.clean_accuracy,
               "attacked_at_alpha": ex.attacked_accuracy, "n_eval": len(nb.y)}
    found = {"curve": rows, "confusion_at_alpha": ex.confusion}

    def follow(change=None):  # after the explorer's own observer: the numbers at the slider's α
        metrics.update(alpha=ex.slider.value, clean_at_alpha=ex.clean_accuracy, attacked_at_alpha=ex.attacked_accuracy)
        found["confusion_at_alpha"] = ex.confusion

    ex.slider.observe(follow, names="value")
    ex.option.observe(follow, names="value")

    caption = results.caption(n=len(nb.y), eps=p.eps, norm=p.norm, attacks=attacks, drawn=False)
    exp = new(STEM, namespace, metrics=metrics, tables={"The precomputed grid": table}, inputs=nb.inputs, data=found,
              figures=[Figure(STEM, lambda: ex.fig, caption)])  # at the slider's α
    exp.params["attacks"] = attacks  # the attacks used (None stands for the library's default set)
    exp.explorer = ex  # the slider, the mixing buttons, the readout and the figure
    return exp


def _grid(p: parameters.Values, nb: notebook.Setup, attacks: list[str]) -> list[dict]:
    """The trade-off grid: the one ``p.grid_from`` recorded (checked against these parameters and the models'
    sha256), else computed (:func:`evaluate.tradeoff_curve`)."""
    if p.grid_from:
        return explorer.recorded_grid(p.grid_from, inputs=nb.inputs, **grid_params(p))
    g_model, h_model = nb.models
    return evaluate.tradeoff_curve(g_model, h_model, p.alphas, p.options, nb.x, nb.y, eps=p.eps, steps=p.steps,
                                   norm=p.norm, attacks=attacks, batch_size=p.batch_size, seed=p.seed,
                                   use_cache=p.use_attack_cache, progress=p.progress)


def grid_params(p) -> dict:
    """The parameters a recorded grid must have been computed with to stand for notebook 07's ``p`` (its
    :func:`adasmooth.parameters.bind` view)."""
    return dict(dataset=p.dataset, g=p.g, h=p.h, norm=p.norm, eps=p.eps, steps=p.steps, n_eval=p.n_eval,
                alphas=p.alphas, options=p.options, attacks=p.attacks or list(evaluate.DEFAULT_ATTACKS), seed=p.seed)
