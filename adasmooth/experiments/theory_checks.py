"""Notebook 01: Lemma 1 and Theorems 1-3 checked numerically (violations counted; the theory says none).

Lemma 1 on random output pairs (:func:`adasmooth.theory.lemma1_violations`), Theorems 1 and 2 on the 2-D toy
problem (random perturbations and an ℓ2 PGD attack inside each point's certified radius,
:func:`adasmooth.theory.radius_violations`), Theorem 3 on the zoo's g and h under PGD
(:func:`adasmooth.theory.theorem3_violations`); the figure draws h^α's regions and certified ℓ2 disks."""
from __future__ import annotations

import logging
from types import SimpleNamespace

from .. import certify, notebook, parameters, results, theory
from ..attacks import pgd, predict
from ..mixing import MixedClassifier
from .base import Experiment, Figure, new

log = logging.getLogger(__name__)

STEM = "01_theory_checks"
#: the colours of the toy problem's three classes (regions of h^α)
REGION_COLOURS = ["#c6dbef", "#fdd0a2", "#c7e9c0"]


def theory_checks(namespace: dict) -> Experiment:
    """Notebook 01 with its parameters ``namespace``: Lemma 1 (``lemma_trials`` pairs per α), Theorems 1 and 2
    (``n_points`` toy points, toy h smoothed with ``toy_sigma``), Theorem 3 (``n_eval`` test images, PGD)."""
    p = parameters.bind(STEM, namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup(STEM, namespace)  # parameters checked, seeded; g, h and the test images loaded
    lemma = [theory.lemma1_violations(p.lemma_trials, a, num_classes=nb.num_classes, seed=p.seed) for a in p.alphas]
    for r in lemma:
        print(r)
    toy = _toy(p)
    checks = _radius_checks(p, toy)
    for c in checks:
        print(c)
    thm3 = _theorem3(p, nb)
    for k, v in thm3.items():
        print(k, v)
    caption = results.caption(n=p.n_points, what="toy points", attacks="none (certified ℓ2 disks)", interval=None)
    return new(STEM, namespace, metrics=_metrics(lemma, checks, thm3), tables=_tables(lemma, checks, thm3),
               data={"lemma1": lemma, "radius_checks": checks, "theorem3": thm3}, inputs=nb.inputs,
               figures=[Figure("01_certified_regions", lambda: _draw_regions(p, toy), caption)])


def _toy(p) -> SimpleNamespace:
    """The toy problem: ``n_points`` points ``x`` with labels ``y``, the erratic g, the smoothed-strips h
    (σ = ``toy_sigma``) and h's probabilities ``p_h`` at the points."""
    x, y = theory.sample(p.n_points, seed=p.seed)
    g, h = theory.WigglyCenters(seed=p.seed), theory.SmoothedStrips(p.toy_sigma)
    return SimpleNamespace(x=x, y=y, g=g, h=h, p_h=h.probs(x))


def _radii(toy, alpha: float) -> dict:
    """Each toy point's certified ℓ2 radius of h^α by Theorem 1 (Lipschitz h) and Theorem 2 (RS h)."""
    return {"Theorem 1": certify.lipschitz_radius(toy.p_h, alpha, toy.h.lipschitz),
            "Theorem 2": certify.rs_radius(toy.p_h, alpha, toy.h.sigma)}


def _radius_checks(p, toy) -> list[dict]:
    """Per α and theorem: perturbations and an ℓ2 PGD attack inside the certified radii, violations counted."""
    checks = []
    for a in p.alphas:
        for thm, r in _radii(toy, a).items():
            checks.append({"theorem": thm, **theory.radius_violations(toy.g, toy.h, toy.x, a, r, n_perturb=p.n_perturb,
                                                                      pgd_steps=p.steps, seed=p.seed)})
    return checks


def _theorem3(p, nb) -> dict:
    """The oracle α(·) on clean images and on PGD examples crafted against g and against h."""
    (g_model, h_model), x, y = nb.models, nb.x, nb.y
    attack = dict(eps=p.eps, steps=p.steps, norm=p.norm, seed=p.seed, batch_size=p.batch_size)
    sets = {"clean": x, "PGD on g": pgd(g_model, x, y, **attack), "PGD on h": pgd(h_model, x, y, **attack)}
    return theory.theorem3_violations(g_model, h_model, sets, y, batch_size=p.batch_size)


def _tables(lemma: list, checks: list, thm3: dict) -> dict:
    """The three tables: Lemma 1, Theorems 1 and 2, Theorem 3."""
    return {
        "Lemma 1 (random outputs)": results.table(
            ["α", "trials", "certified", "violations"],
            [[r["alpha"], r["trials"], r["certified"], r["violations"]] for r in lemma]),
        "Theorems 1 and 2 (toy problem)": results.table(
            ["theorem", "α", "points", "certified", "mean radius", "violations"],
            [[c["theorem"], c["alpha"], c["points"], c["certified"], c.get("mean_radius"), c["violations"]]
             for c in checks]),
        "Theorem 3 (zoo models)": results.table(
            ["inputs", "g %", "h %", "oracle %", "violations"],
            [[k, 100 * v["g"], 100 * v["h"], 100 * v["oracle"], v["violations"]] for k, v in thm3.items()]),
    }


def _metrics(lemma: list, checks: list, thm3: dict) -> dict:
    """Violations (and certified counts) summed per result."""
    def total(thm: str, key: str) -> int:
        return sum(c[key] for c in checks if c["theorem"] == thm)

    return {"lemma1_violations": sum(r["violations"] for r in lemma),
            "lemma1_certified": sum(r["certified"] for r in lemma),
            "theorem1_violations": total("Theorem 1", "violations"),
            "theorem1_certified": total("Theorem 1", "certified"),
            "theorem2_violations": total("Theorem 2", "violations"),
            "theorem2_certified": total("Theorem 2", "certified"),
            "theorem3_violations": sum(v["violations"] for v in thm3.values())}


def _draw_regions(p, toy):
    """Regions of h^α (colours) and certified ℓ2 disks (every 4th point), one column per α of ``draw_alphas``,
    Theorem 1 on top and Theorem 2 below."""
    import matplotlib.pyplot as plt

    grid = theory.grid(p.grid_side)
    fig, axes = plt.subplots(2, len(p.draw_alphas), figsize=(4.2 * len(p.draw_alphas), 8.4), squeeze=False)
    for j, a in enumerate(p.draw_alphas):
        pred = predict(MixedClassifier(toy.g, toy.h, a).double(), grid).reshape(p.grid_side, p.grid_side).numpy()
        for i, (thm, r) in enumerate(_radii(toy, a).items()):
            _draw_panel(axes[i, j], pred, toy, r)
            axes[i, j].set_title(f"{thm}, α = {a:g}: mean radius {r.mean():.3f}", fontsize=9)
    fig.suptitle(f"Regions of h^α (colours) and certified ℓ2 disks (every 4th point); toy h: σ = {p.toy_sigma:g}")
    fig.tight_layout()
    return fig


def _draw_panel(ax, pred, toy, radii) -> None:
    """One panel: the predicted regions ``pred`` on [0, 1]², the toy points and every 4th point's disk."""
    import matplotlib.colors as mcolors
    from matplotlib.patches import Circle

    pts = theory.as_points(toy.x).numpy()
    ax.imshow(pred, origin="lower", extent=(0, 1, 0, 1), cmap=mcolors.ListedColormap(REGION_COLOURS), vmin=0, vmax=2)
    ax.scatter(pts[:, 0], pts[:, 1], c=toy.y.numpy(), cmap="brg", s=4, vmin=0, vmax=2)
    for (px, py), rr in zip(pts[::4], radii[::4].tolist()):
        if rr > 0:
            ax.add_patch(Circle((px, py), rr, fill=False, lw=0.6, color="k"))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
