"""What every notebook procedure shares: the :class:`Experiment` it returns, its :class:`Figure` s, the
parameters it records (:func:`recorded_params`) and :func:`new`."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import results
from ..parameters import declared

log = logging.getLogger(__name__)

#: notebook stem -> the procedure's (module and function) name
NOTEBOOKS = {
    "00_quickstart": "quickstart",
    "01_theory_checks": "theory_checks",
    "02_ri_ablation": "ri_ablation",
    "03_certified_radii": "certified_radii",
    "04_adaptive_vs_constant": "adaptive_vs_constant",
    "05_loss_ablation": "loss_ablation",
    "06_sigmoid_scale": "sigmoid_scale",
    "07_alpha_explorer": "alpha_explorer",
    "08_mixing_methods": "mixing_methods",
}

#: parameters that say where and how a notebook runs, not what it computes (left out of the results JSON)
NOT_RECORDED = frozenset({"device", "progress", "out_dir", "fig_dir", "zoo_root", "train_missing"})


def recorded_params(stem: str, namespace: dict) -> dict:
    """Every parameter declared for notebook ``stem`` (:mod:`adasmooth.parameters`) with its value in ``namespace``
    (the notebook's globals), except :data:`NOT_RECORDED`: what ``results.write(params=...)`` records."""
    names = declared(stem)
    return {n: namespace[n] for n in names if n not in NOT_RECORDED and n in namespace}


@dataclass
class Figure:
    """A figure of an experiment: ``draw()`` returns a new matplotlib figure, saved as ``<name>.png``
    with ``caption`` under it (:func:`adasmooth.results.caption`)."""

    name: str
    draw: Callable
    caption: str | None = None


def one_axes(plot: Callable, doc, figsize=(6.5, 4.5)) -> Callable:
    """A :class:`Figure` ``draw``: ``plot(doc, ax)`` on one axes of a new ``figsize`` figure."""
    def draw():
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=figsize)
        plot(doc, ax)
        fig.tight_layout()
        return fig

    return draw


@dataclass
class Experiment:
    """What a notebook's procedure returns: the JSON parts of :func:`adasmooth.results.write` (``params``:
    :func:`recorded_params`), its :class:`Figure` s (in the order the results JSON lists them), and
    ``out_dir`` / ``fig_dir`` (the notebook's parameters; None: ``results/interactive``)."""

    name: str
    params: dict
    metrics: dict
    tables: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    out_dir: str | None = None
    fig_dir: str | None = None
    figure_paths: list = field(default_factory=list)

    def show(self, *, tables: bool = True, display: bool = True) -> None:
        """Draw and save every figure (shown inline with ``display``, else closed), then print the tables
        in markdown; the figures' paths are kept for :meth:`save` (``figure_paths``)."""
        import matplotlib.pyplot as plt

        self.figure_paths = []
        for f in self.figures:
            fig = f.draw()
            self.figure_paths.append(results.save_figure(fig, self.fig_dir, f.name, caption=f.caption))
            if display and fig.canvas.manager is None:  # a bare Figure (not made through pyplot)
                from IPython.display import display as ipython_display

                ipython_display(fig)
            elif display:
                plt.show()
            else:
                plt.close(fig)
        if tables:
            for title, tab in self.tables.items():
                print(f"{title}\n{results.markdown_table(tab)}\n")

    def save(self) -> Path:
        """Write the results JSON (after :meth:`show`, which saves the figures it lists); return its path."""
        if self.figures and not self.figure_paths:
            self.show(tables=False, display=False)
        return results.write(self.out_dir, self.name, params=self.params, metrics=self.metrics, tables=self.tables,
                             figures=self.figure_paths, inputs=self.inputs, data=self.data)


def new(stem: str, namespace: dict, **parts) -> Experiment:
    """An :class:`Experiment` of notebook ``stem`` with its recorded parameters and output folders."""
    return Experiment(name=stem, params=recorded_params(stem, namespace), out_dir=namespace.get("out_dir"),
                      fig_dir=namespace.get("fig_dir"), **parts)
