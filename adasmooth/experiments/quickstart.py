"""Notebook 00: the trade-off of h^α(x) = log((1-α)·softmax(g(x)) + α·softmax(h(x))) over α, clean and
attacked accuracy (per-image worst case over ``attacks``), from g alone (α = 0) to h alone (α = 1)."""
from __future__ import annotations

import logging

from .. import evaluate, notebook, parameters, results
from .base import Experiment, Figure, new

log = logging.getLogger(__name__)

STEM = "00_quickstart"


def quickstart(namespace: dict) -> Experiment:
    """Notebook 00 with its parameters ``namespace``: the trade-off curve of h^α at every α of ``alphas``
    (``evaluate.tradeoff_curve``, attack results replayed from the attack cache when ``use_attack_cache``)."""
    p = parameters.bind(STEM, namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup(STEM, namespace)  # parameters checked, seeded; g, h and the test images loaded
    g_model, h_model = nb.models
    attacks = p.attacks or list(evaluate.DEFAULT_ATTACKS)
    rows = evaluate.tradeoff_curve(g_model, h_model, p.alphas, [p.space], nb.x, nb.y, eps=p.eps, steps=p.steps,
                                   norm=p.norm, attacks=attacks, batch_size=p.batch_size, seed=p.seed,
                                   use_cache=p.use_attack_cache, progress=p.progress)
    table = results.table(["α", "clean %", "attacked %"] + [f"{k} %" for k in attacks],
                          [[r["alpha"], 100 * r["clean"], 100 * r["attacked"]] + [100 * r[k] for k in attacks]
                           for r in rows])
    for r in table["rows"]:
        print("α = {:<5g} clean {:6.2f} %  attacked {:6.2f} %".format(*r[:3]))
    n = len(nb.y)

    def draw():
        return evaluate.plot_tradeoff(rows, title=f"h^α on {p.dataset}: {p.norm} ε = {p.eps:g}, PGD-{p.steps}")

    exp = new(STEM, namespace, metrics=_metrics(rows, n), tables={"Trade-off of h^α": table},
              data={"curve": rows}, inputs=nb.inputs,
              figures=[Figure(f"{STEM}_tradeoff", draw, results.caption(n=n, eps=p.eps, norm=p.norm, attacks=attacks))])
    exp.params["attacks"] = attacks  # the attacks used (None stands for the library's default set)
    return exp


def _metrics(rows: list[dict], n: int) -> dict:
    """``n_eval`` and, when α = 0 and α = 1 are on the curve, g's and h's clean and attacked accuracy."""
    ends = {r["alpha"]: r for r in rows}
    metrics = {"n_eval": n}
    if 0.0 in ends and 1.0 in ends:
        metrics.update(clean_g=ends[0.0]["clean"], attacked_g=ends[0.0]["attacked"],
                       clean_h=ends[1.0]["clean"], attacked_h=ends[1.0]["attacked"])
    return metrics
