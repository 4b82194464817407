"""The comparison as curves: the learned α_θ and the constant α at several matched clean accuracies.

A point of the curves is a position p in [0, 1] of the way from h's validation accuracy to g's: the
target clean accuracy ``acc_h + p·(acc_g − acc_h)`` on the validation split.  At each p the head's
shift of α_θ and the constant α are chosen on the validation split for that target
(``learned.choose_head``), then both face :func:`comparison.attack_set` on the same class-balanced
test images (Square on the same subset), and McNemar's exact test pairs them image by image.  The
curves' common ends are g (α = 0, p → 0 beyond) and h (α = 1).  The point at the recipe's own
position is the headline's model, so its attacks are read from the shared attack cache.
"""
from __future__ import annotations

import dataclasses
import logging

from . import learned
from .attack_cache import fingerprint
from .comparison import Budget, _masks_doc, evaluate, finish_axes, mcnemar, test_images, verdict
from .mixing import MixedClassifier
from .runtime import get_device
from .tables import table

log = logging.getLogger(__name__)


def _position_models(name: str, p: float, *, root, base_overrides, mixing_overrides, device):
    """``(adaptive model, its identity, constant α, validation summary)`` at position ``p``."""
    r = learned.recipe(name)
    model = learned.get(name, root=root, base_overrides=base_overrides, mixing_overrides=mixing_overrides,
                        device=device)
    head = model.metadata["head"]
    if abs(p - r.target_position) < 1e-12:
        return model, fingerprint(model, extra={"head": head}), head["val"]["constant_alpha"], head["val"]
    new = learned.choose_head(model, dataclasses.replace(r, target_position=p), device=device)
    model.net.set_head(scale=new["scale"], shift=new["shift"])
    if r.clamp:
        model.net.set_alpha_range(new["alpha_min"], new["alpha_max"])
    model.metadata = {**model.metadata, "head": {**new, "name": name}}
    ident = fingerprint(model, extra={"position": p, "clamp": r.clamp})
    return model, ident, new["val"]["constant_alpha"], new["val"]


def curves(*, learned_name: str = "fmnist-adaptive", positions=(0.25, 0.5, 0.75), n_test: int = 1000,
           budget: Budget = Budget(), endpoints: bool = True, root=None, base_overrides=None,
           mixing_overrides=None, use_cache: bool = True, only=None, device=None, progress: bool = False) -> dict:
    """Attacked vs clean accuracy of h^{α_θ} over its shift and of the constant α over α (see module).

    ``positions``: where on the way from h's validation accuracy to g's the points lie.  Returns a
    JSON-ready dict with one entry per point (validation target, both methods' clean and attacked
    accuracy with 95 % intervals, Square on its subset, McNemar, the headline rule's verdict) and,
    with ``endpoints``, g and h under the constant-α attacks.  ``only`` (labels like
    ``"constant@0.25"``, ``"fmnist-adaptive@0.75"``, ``"g"``, ``"h"``) limits the run to those (to
    fill the attack cache from several processes).
    """
    from . import learned, zoo
    device = get_device(device)
    if not positions or any(not 0.0 <= float(p) <= 1.0 for p in positions):
        raise ValueError(f"positions must be a non-empty list of values in [0, 1], got {positions!r}")
    r = learned.recipe(learned_name)
    x, y, sq_pos = test_images(zoo.recipe(r.g).dataset, n_test, budget, device)
    _check_only(only, learned_name, positions, endpoints)
    out = {"n": len(y), "budget": dataclasses.asdict(budget), "learned": learned_name,
           "positions": [float(p) for p in positions], "points": [], "endpoints": {}}

    def run(label, model, ident):
        if only is not None and label not in only:
            return None
        log.info("matched curves: %s", label)
        return evaluate(model, x, y, budget, identity=ident, square_idx=sq_pos, use_cache=use_cache,
                        progress=progress)

    for p in positions:
        model, ident, alpha, val = _position_models(learned_name, float(p), root=root, base_overrides=base_overrides,
                                                    mixing_overrides=mixing_overrides, device=device)
        const = MixedClassifier(model.g, model.h, alpha).to(device).eval()
        res = {learned_name: run(f"{learned_name}@{p:g}", model, ident),
               "constant": run(f"constant@{p:g}", const, fingerprint(model.g, model.h, extra={"alpha": const.alpha}))}
        out["points"].append(_point_doc(float(p), learned_name, res, alpha, val, float(model.net.shift)))
    if endpoints:
        g = zoo.get(r.g, train_if_missing=False, root=root, overrides=base_overrides, device=device)
        h = zoo.get(r.h, train_if_missing=False, root=root, overrides=base_overrides, device=device)
        for label, alpha in (("g", 0.0), ("h", 1.0)):
            m = MixedClassifier(g, h, alpha).to(device).eval()
            res = run(label, m, fingerprint(g, h, extra={"alpha": alpha}))
            if res is not None:
                out["endpoints"][label] = _masks_doc(res)
    return out


def _check_only(only, learned_name: str, positions, endpoints: bool) -> None:
    """``only`` must name points of the run: ``constant@<p>``, ``<learned_name>@<p>``, and ``g``, ``h``."""
    jobs = {}
    for p in positions:
        jobs[f"constant@{p:g}"] = ("constant", p)
        jobs[f"{learned_name}@{p:g}"] = ("learned", p)
    if endpoints:
        jobs["g"], jobs["h"] = ("end", 0.0), ("end", 1.0)
    if only is not None:
        unknown = set(only) - set(jobs)
        if unknown:
            raise ValueError(f"only must name points among {list(jobs)}, got {sorted(unknown)}")


def _point_doc(position: float, learned_name: str, res: dict, alpha: float, val: dict, shift: float) -> dict:
    """One matched point: both methods' masks as accuracies (``res``, None where not run), the constant α,
    α_θ's shift and, when both ran, McNemar and the headline rule's verdict."""
    point = {"position": position, "target_val": val["target"], "val": val, "methods": {}, "paired": {}}
    for k, v in res.items():
        if v is not None:
            point["methods"][k] = _masks_doc(v)
    point["methods"].get("constant", {})["alpha"] = alpha
    if learned_name in point["methods"]:
        point["methods"][learned_name]["shift"] = shift
    if all(v is not None for v in res.values()):
        a, b = res[learned_name], res["constant"]
        pair = {"attacked": mcnemar(a["worst"], b["worst"]), "clean": mcnemar(a["clean"], b["clean"])}
        if a["square"] is not None:
            pair["after_square"] = mcnemar(a["square"]["after"], b["square"]["after"])
        point["paired"][f"{learned_name} vs constant"] = pair
        point["verdict"] = verdict(point, learned_name)
    return point


def curve_tables(doc: dict) -> dict:
    """The curves' tables (``tables.table`` dicts): per point and method, and the paired tests."""
    def pct(s):
        return f"{100 * s['acc']:.1f} [{100 * s['low']:.1f}, {100 * s['high']:.1f}]"

    rows, prow = [], []
    for pt in doc["points"]:
        for name, m in pt["methods"].items():
            sq = m.get("square")
            knob = f"α = {m['alpha']:.3f}" if "alpha" in m else f"shift = {m['shift']:.2f}"
            rows.append([f"{100 * pt['target_val']:.1f}", name, knob, pct(m["clean"]), pct(m["attacked"]),
                         pct(sq["after"]) if sq else "–"])
        for name, pair in pt["paired"].items():
            t = pair["attacked"]
            sq = pair.get("after_square")
            prow.append([f"{100 * pt['target_val']:.1f}", name, t["only_a"], t["only_b"], f"{t['p_value']:.3g}",
                         f"{sq['only_a']} / {sq['only_b']}" if sq else "–", pt["verdict"]["verdict"]])
    for label, m in doc.get("endpoints", {}).items():
        sq = m.get("square")
        rows.append(["–", label, "α = 0" if label == "g" else "α = 1", pct(m["clean"]), pct(m["attacked"]),
                     pct(sq["after"]) if sq else "–"])
    points = table(["validation target %", "method", "knob", "clean % [95 % CI]",
                    f"attacked % (all but Square, n={doc['n']})", "Square subset after Square %"], rows)
    paired = table(["validation target %", "comparison", "only learned right", "only constant right",
                    "McNemar exact p", "after Square (learned / constant only)", "verdict"], prow)
    return {"points": points, "paired": paired}


def plot_curves(doc: dict, ax=None, *, title: str = "learned α_θ vs constant α", label=None):
    """Attacked vs clean accuracy of each method over its knob, 95 % intervals as error bars; the
    ends g (α = 0) and h (α = 1) are shared.  ``label(name)`` names a method's curve in the legend
    (default: the learned one "over its shift"); also draws notebook 08's methods (:func:`methods.plot`)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4))
    names = list(dict.fromkeys(n for pt in doc["points"] for n in pt["methods"]))
    ends = doc.get("endpoints", {})
    for i, name in enumerate(names):
        pts = [pt["methods"][name] for pt in doc["points"] if name in pt["methods"]]
        if "g" in ends and "h" in ends:
            pts = [ends["h"]] + pts + [ends["g"]]
        pts.sort(key=lambda m: m["clean"]["acc"])
        cx = [100 * m["clean"]["acc"] for m in pts]
        ay = [100 * m["attacked"]["acc"] for m in pts]
        yerr = [[100 * (m["attacked"]["acc"] - m["attacked"]["low"]) for m in pts],
                [100 * (m["attacked"]["high"] - m["attacked"]["acc"]) for m in pts]]
        xerr = [[100 * (m["clean"]["acc"] - m["clean"]["low"]) for m in pts],
                [100 * (m["clean"]["high"] - m["clean"]["acc"]) for m in pts]]
        ax.errorbar(cx, ay, xerr=xerr, yerr=yerr, fmt="-o", color=f"C{i}", capsize=3, ms=4,
                    label=label(name) if label else name if name == "constant" else f"{name} (α_θ over its shift)")
    for label, m in ends.items():
        ax.annotate(label, (100 * m["clean"]["acc"], 100 * m["attacked"]["acc"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    return finish_axes(ax, doc, f"{title} at matched clean accuracies (validation-chosen)\n"
                                f"n = {doc['n']} test images, full attack set but Square, Clopper-Pearson 95 %")
