"""Notebook 02: which R_i(x)?  Figures 1, SM2a and SM2b: attacked against clean accuracy over α for each
option of the mixing weight R(x) = α/(1-α)·T(x), each curve summarised by its area (the mean attacked accuracy
over the clean range that all curves of a panel share, :func:`adasmooth.curves.area`)."""
from __future__ import annotations

import logging

from .. import curves, evaluate, notebook, parameters, resolve, results, verdicts
from .base import Experiment, Figure, new

log = logging.getLogger(__name__)

STEM = "02_ri_ablation"


def panels_of(p) -> dict:
    """The three panels (title, g, h, attack) with the notebook's parameters ``p``."""
    return {
        "fig1": dict(title="Figure 1", g=p.g, h=p.h_linf, norm="linf", eps=p.eps_linf, steps=p.steps_fig1,
                     step_size=None),
        "sm2a": dict(title="Figure SM2a", g=p.g_sm2a, h=p.h_trades, norm="linf", eps=p.eps_linf, steps=p.steps_sm2,
                     step_size=p.step_size_sm2a),
        "sm2b": dict(title="Figure SM2b", g=p.g, h=p.h_l2, norm="l2", eps=p.eps_l2, steps=p.steps_sm2,
                     step_size=p.step_size_sm2b),
    }


def ri_ablation(namespace: dict) -> Experiment:
    """Notebook 02 with its parameters ``namespace``: a trade-off curve per option of ``options`` and panel of
    ``panels`` (``evaluate.tradeoff_curve``, attack results replayed from the attack cache when
    ``use_attack_cache``), the areas under them and the best option per panel (ties listed)."""
    p = parameters.bind(STEM, namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup(STEM, namespace, models=())  # parameters checked, seeded; the test images loaded
    panels = panels_of(p)
    unknown = [n for n in p.panels if n not in panels]
    if unknown:
        raise ValueError(f"panels must be drawn from {list(panels)}, got {unknown}")
    inputs, curve_rows, areas = {}, {}, {}
    for name in p.panels:
        curve_rows[name], areas[name] = _panel(p, panels[name], nb, inputs)
        print(panels[name]["title"], {o: round(100 * a, 2) for o, a in areas[name].items() if o != "range"})
    shown = [panels[n] for n in p.panels]
    eps_text = "; ".join(f"{q['title']}: {results.NORMS[q['norm']]} ε = {q['eps']:g}" for q in shown)
    caption = results.caption(n=len(nb.y), attacks=p.attacks, extra=eps_text)
    return new(STEM, namespace, metrics=_best(p, areas, len(nb.y)), tables=_tables(p, panels, curve_rows, areas),
               data={"curves": curve_rows, "areas": areas}, inputs=list(inputs.values()),
               figures=[Figure(STEM, lambda: _draw(shown, [curve_rows[n] for n in p.panels]), caption)])


def _panel(p, panel: dict, nb, inputs: dict) -> tuple[list[dict], dict]:
    """One panel's curve rows and areas (``range``: the shared clean range); its models' records go to ``inputs``."""
    g, rec_g = resolve.model(panel["g"], **nb.load)
    h, rec_h = resolve.model(panel["h"], **nb.load)
    inputs[rec_g["spec"]], inputs[rec_h["spec"]] = rec_g, rec_h
    rows = evaluate.tradeoff_curve(g, h, p.alphas, p.options, nb.x, nb.y, eps=panel["eps"], steps=panel["steps"],
                                   norm=panel["norm"], step_size=panel["step_size"], attacks=p.attacks,
                                   batch_size=p.batch_size, seed=p.seed, use_cache=p.use_attack_cache,
                                   progress=p.progress)
    c = curves.by_option(rows)
    lo, hi = curves.common_range(c)
    return rows, {"range": (lo, hi), **{o: curves.area(v["clean"], v["attacked"], lo, hi) for o, v in c.items()}}


def _best(p, areas: dict, n: int) -> dict:
    """The best option per panel, and every option whose 95 % interval overlaps it (a tie lists them all)."""
    return {f"best_{name}": verdicts.best_options({o: areas[name][o] for o in p.options}, n) for name in p.panels}


def _tables(p, panels: dict, curve_rows: dict, areas: dict) -> dict:
    """The areas (one row per panel), then each panel's clean and attacked accuracy per option and α."""
    label = evaluate.LABELS.get
    tables = {"Area under each curve: mean attacked accuracy (%) over the shared clean range": results.table(
        ["panel", "clean range %"] + [label(o, o) for o in p.options],
        [[panels[n]["title"], "{:.1f}–{:.1f}".format(*(100 * v for v in areas[n]["range"]))]
         + [100 * areas[n][o] for o in p.options] for n in p.panels])}
    for n in p.panels:
        tables[f"{panels[n]['title']}: clean / attacked accuracy (%) per α"] = results.table(
            ["option", "α", "clean %", "attacked %"],
            [[label(r["option"], r["option"]), r["alpha"], 100 * r["clean"], 100 * r["attacked"]]
             for r in curve_rows[n]])
    return tables


def _draw(panels: list[dict], rows: list[list[dict]]):
    """One trade-off plot per panel, side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.4), squeeze=False)
    for ax, panel, r in zip(axes[0], panels, rows):
        evaluate.plot_tradeoff(r, ax=ax, annotate=False,
                               title=f"{panel['title']}: {panel['norm']} ε = {panel['eps']:g}, {panel['steps']} steps")
    fig.tight_layout()
    return fig
