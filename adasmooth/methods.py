"""Three ways of mixing an accurate g and a robust h, compared on the same models, images and attacks.

- ``constant``: h^α with a constant α (:class:`mixing.MixedClassifier`);
- the learned α_θ (a shipped learned mixer, ``learned.RECIPES``): the adaptive-smoothing mixing network;
- ``mixednuts``: MixedNUTS (:mod:`adasmooth.nuts`): h's logits through the fitted nonlinear map, g as its
  hard argmax, attacked through the smooth stand-in and judged on the exact model.

At each position p on the way from h's validation accuracy to g's, every method is set to the same clean
*validation* accuracy acc_h + p·(acc_g - acc_h): the learned head's shift and the constant α as in
:mod:`adasmooth.matched` (same models, same cache identities), MixedNUTS's α by :func:`nuts.calibrate_alpha`
on the same validation split; its (s, p, c) are fitted once on a class-balanced part of that split
(:func:`nuts.get_or_fit`, cached in the zoo folder).  All methods then face :func:`comparison.evaluate` (the
project's attack set: PGD with CE and margin losses through every map, transfers from g and h alone, APGD-CE
and APGD-T, Square on a class-balanced subset; α_θ also gets its own adaptive attacks) on the same
class-balanced test images, with Clopper-Pearson intervals and McNemar's exact test per pair.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from . import data, learned, nuts, zoo
from .adaptive import calibrate_constant_alpha
from .attack_cache import fingerprint, images_hash
from .attacks import predict
from .comparison import Budget, _masks_doc, evaluate, mcnemar, test_images
from .comparison.convergence import _with_interval, ladder, reading
from .comparison.head_to_head import pct as _pct
from .matched import _position_models, plot_curves
from .mixing import MixedClassifier
from .runtime import get_device
from .statistics import summary
from .tables import table

log = logging.getLogger(__name__)

NUTS = "mixednuts"
CONSTANT = "constant"


def point_verdict(point: dict, level: float = 0.05) -> dict:
    """Which method wins at one clean accuracy: the one with the highest attacked accuracy (all attacks but
    Square, every image) when McNemar's exact test puts it significantly (p < ``level``) ahead of every other
    method; otherwise a tie among those it is not significantly ahead of."""
    methods = point["methods"]
    names = sorted(methods, key=lambda n: -methods[n]["attacked"]["acc"])
    if len(names) < 2:
        return {"winner": names[0] if names else None, "tied": names, "verdict": "one method only"}
    best = names[0]
    tied = [best]
    for other in names[1:]:
        t = point["paired"].get(f"{best} vs {other}") or point["paired"].get(f"{other} vs {best}")
        if t is None or t["attacked"]["p_value"] >= level:
            tied.append(other)
    if len(tied) == 1:
        return {"winner": best, "tied": tied, "verdict": f"{best} wins"}
    return {"winner": None, "tied": tied, "verdict": "tie between " + ", ".join(tied)}


def compare(*, learned_name: str | None = "fmnist-adaptive", g: str = "fmnist-standard", h: str = "fmnist-linf-at",
            positions=(0.5,), n_test: int = 500, budget: Budget = Budget(), nuts_percentile: float = 95.0,
            nuts_grid: dict | None = None, nuts_k: int | None = None, nuts_n_fit: int = 1000,
            nuts_fit_steps: int = 20, nuts_smooth: float = 1.0, endpoints: bool = False, root=None,
            base_overrides=None, mixing_overrides=None, use_cache: bool = True, cache_fit: bool = True,
            ladder_steps=(), ladder_shards: int = 2, device=None, progress: bool = False) -> dict:
    """Constant α, the learned α_θ (``learned_name``; None: left out) and MixedNUTS at matched clean
    validation accuracies (module docstring), attacked with the same attack set on the same ``n_test``
    class-balanced test images.  Returns a JSON-ready dict: ``images_sha256`` (the test images, shared by every
    method), the NUTS fit, and per position the validation target, each method's knob, clean and attacked
    accuracy with 95 % intervals, per-attack cumulative accuracies and seconds, Square on its subset,
    McNemar's test per pair, a :func:`point_verdict`, and each method's cost (setup seconds, base-model
    forward passes per prediction, attack seconds).  With ``ladder_steps`` (e.g. 20, 50, 100, 200), each method
    then climbs the attack-budget ladder (:func:`comparison.convergence.ladder`, the strong family, cumulative
    per image) and ``point["converged"]`` holds every rung, the convergence reading, McNemar on the final masks
    and the verdict there.  With ``endpoints``, g and h alone under the constant-α attacks.  ``use_cache``: the per-image attack cache (:func:`comparison.evaluate`); ``cache_fit``: the NUTS
    fit's JSON in the zoo folder ``root``."""
    device = get_device(device)
    _check_compare(learned_name, g, h, positions)
    dataset = zoo.recipe(g).dataset
    k = data.info(dataset)["num_classes"]
    if nuts_n_fit < k:
        raise ValueError(f"nuts_n_fit must be at least the class count {k}, got {nuts_n_fit}")
    gm = zoo.get(g, train_if_missing=False, root=root, overrides=base_overrides, device=device)
    hm = zoo.get(h, train_if_missing=False, root=root, overrides=base_overrides, device=device)
    x, y, sq_pos = test_images(dataset, n_test, budget, device)
    xv, yv = data.load(dataset, "val")
    fit = _fit_nuts(gm, hm, xv, yv, nuts_n_fit // k, budget, percentile=nuts_percentile, grid=nuts_grid,
                    k=nuts_k, steps=nuts_fit_steps, root=root, cache_fit=cache_fit, device=device)
    params = {key: fit[key] for key in ("s", "p", "c", "k")}
    out = {"n": len(y), "images_sha256": images_hash(x, y), "budget": dataclasses.asdict(budget),
           "learned": learned_name, "g": g, "h": h, "positions": [float(p) for p in positions],
           "nuts_fit": {key: v for key, v in fit.items() if key != "grid_results"},
           "nuts_grid_results": fit["grid_results"], "points": [], "endpoints": {}}

    def run(model, ident):
        return evaluate(model, x, y, budget, identity=ident, square_idx=sq_pos, use_cache=use_cache,
                        progress=progress)

    for p in map(float, positions):
        models, costs, target, val = _constant_and_learned(learned_name, p, gm, hm, xv, yv, budget, root=root,
                                                           base_overrides=base_overrides,
                                                           mixing_overrides=mixing_overrides, device=device)
        models[NUTS], costs[NUTS] = _nuts_method(gm, hm, params, fit, xv, yv, target, nuts_smooth, budget, device)
        point = {"position": p, "target_val": target, "val": val, "methods": {}, "paired": {}}
        masks = {}
        for name, (model, ident, knob) in models.items():
            log.info("mixing methods: %s at position %g", name, p)
            masks[name] = res = run(model, ident)
            point["methods"][name] = _method_doc(res, knob, costs[name])
        point["paired"] = _all_pairs(masks)
        point["verdict"] = point_verdict(point)
        if ladder_steps:
            point["converged"] = _converged(models, masks, x, y, budget, ladder_steps, ladder_shards, use_cache,
                                            progress)
        out["points"].append(point)
    if endpoints:
        for label, alpha in (("g", 0.0), ("h", 1.0)):
            m = MixedClassifier(gm, hm, alpha).to(device).eval()
            out["endpoints"][label] = _masks_doc(run(m, fingerprint(gm, hm, extra={"alpha": alpha})))
    return out


def _check_compare(learned_name: str | None, g: str, h: str, positions) -> None:
    """The positions must lie in [0, 1] and the learned mixer (if any) must mix ``g`` and ``h``."""
    if not positions or any(not 0.0 <= float(p) <= 1.0 for p in positions):
        raise ValueError(f"positions must be a non-empty list of values in [0, 1], got {positions!r}")
    if learned_name is not None:
        r = learned.recipe(learned_name)
        if (r.g, r.h) != (g, h):
            raise ValueError(f"learned mixer {learned_name!r} mixes g={r.g!r}, h={r.h!r}, not g={g!r}, h={h!r}")


def _fit_nuts(gm, hm, xv, yv, per_class: int, budget: Budget, *, percentile: float, grid, k, steps: int, root,
              cache_fit: bool, device) -> dict:
    """MixedNUTS's (s, p, c) fitted (or read from the zoo folder ``root``) on ``per_class`` validation images
    of each class (:func:`nuts.get_or_fit`)."""
    from . import data

    fit_idx = data.balanced_subset(yv, per_class, seed=budget.seed)
    fit_cfg = dict(eps=budget.eps, norm=budget.norm, percentile=float(percentile), grid=grid, k=k,
                   steps=steps, seed=budget.seed)
    fit = nuts.get_or_fit(gm, hm, xv[fit_idx], yv[fit_idx], root=root, use_cache=cache_fit, device=device,
                          batch_size=budget.batch_size, **fit_cfg)
    log.info("MixedNUTS fit: s=%g p=%g c=%g (objective %.3f, %s)", fit["s"], fit["p"], fit["c"],
             fit["objective"], "cached" if fit["cached"] else f"{fit['seconds']:.0f} s")
    return fit


def _constant_and_learned(learned_name: str | None, p: float, gm, hm, xv, yv, budget: Budget, *, root,
                          base_overrides, mixing_overrides, device) -> tuple[dict, dict, float, dict]:
    """The constant α and (unless ``learned_name`` is None) α_θ at position ``p``: ``(models, costs, target,
    val)`` with models ``name -> (model, fingerprint, knob)``, the constant α first.  With α_θ, the constant α
    is the one its head was chosen with; without, it is bisected to the target on the validation split."""
    models, costs = {}, {}
    if learned_name is not None:
        t0 = time.perf_counter()
        lm, ident, alpha_c, val = _position_models(learned_name, p, root=root, base_overrides=base_overrides,
                                                   mixing_overrides=mixing_overrides, device=device)
        head_s = time.perf_counter() - t0
        models[learned_name] = (lm, ident, {"shift": float(lm.net.shift)})
        costs[learned_name] = {"setup_seconds": round(float(lm.metadata.get("train_seconds", 0.0)) + head_s, 1),
                               "setup": "mixing-network training + head on the validation split",
                               "forward_passes": "g + h + mixing network"}
        target = val["target"]
        t0 = time.perf_counter()
        const_alpha = alpha_c
    else:
        t0 = time.perf_counter()
        acc_g = (predict(gm, xv.to(device), budget.batch_size).cpu() == yv).double().mean().item()
        acc_h = (predict(hm, xv.to(device), budget.batch_size).cpu() == yv).double().mean().item()
        target = acc_h + p * (acc_g - acc_h)
        val = {"n": len(yv), "acc_g": acc_g, "acc_h": acc_h, "target": target}
        const_alpha = calibrate_constant_alpha(gm, hm, xv, yv, target, tol=1.0 / len(yv), device=device).value
    const = MixedClassifier(gm, hm, const_alpha).to(device).eval()
    models = {CONSTANT: (const, fingerprint(gm, hm, extra={"alpha": const.alpha}), {"alpha": const.alpha}),
              **models}
    costs[CONSTANT] = {"setup_seconds": round(time.perf_counter() - t0, 1) if learned_name is None else 0.0,
                       "setup": "bisection on the validation split (chosen with the learned head)"
                       if learned_name is not None else "bisection on the validation split",
                       "forward_passes": "g + h"}
    return models, costs, target, val


def _nuts_method(gm, hm, params: dict, fit: dict, xv, yv, target: float, smooth: float, budget: Budget,
                 device) -> tuple[tuple, dict]:
    """MixedNUTS with its α bisected to ``target`` on the validation split: ``(model, fingerprint, knob)`` and
    its cost."""
    t0 = time.perf_counter()
    cal = nuts.calibrate_alpha(gm, hm, params, xv, yv, target, tol=1.0 / len(yv), smooth=smooth,
                               batch_size=budget.batch_size, device=device)
    nm = nuts.NutsClassifier(gm, hm, alpha=cal.value, smooth=smooth, **params).to(device).eval()
    method = (nm, fingerprint(gm, hm, extra={"mixednuts": nm.params(), "path": "auto"}),
              {**nm.params(), "val_accuracy": cal.accuracy})
    cost = {"setup_seconds": round((0.0 if fit["cached"] else fit["seconds"]) + time.perf_counter() - t0, 1),
            "fit_seconds": fit["seconds"], "setup": "(s, p, c) grid fit (PGD on h) + α bisection",
            "forward_passes": "g + h"}
    return method, cost


def _converged(models: dict, masks: dict, x, y, budget: Budget, steps, shards: int, use_cache: bool,
               progress: bool) -> dict:
    """Every method at one point on the attack-budget ladder, from its base-set worst case: per method the rungs
    and the convergence reading (:func:`comparison.convergence.reading`), McNemar of every pair on the final
    masks, and :func:`point_verdict` there."""
    out, finals = {"steps": list(steps), "shards": shards, "n": len(y), "methods": {}}, {}
    for name, (model, ident, _) in models.items():
        lad = ladder(model, x, y, budget, identity=ident, survivors=masks[name]["worst"], steps=steps, shards=shards,
                     use_cache=use_cache, progress=progress)
        base = summary(masks[name]["worst"].cpu())
        finals[name] = lad["worst"]
        out["methods"][name] = {"clean": summary(masks[name]["clean"].cpu()), "base": base,
                                "rungs": [_with_interval(r, len(y)) for r in lad["rungs"]],
                                "attacked": summary(lad["worst"]), "reading": reading(base["acc"], lad["rungs"])}
    names = list(finals)
    out["paired"] = {f"{a} vs {b}": {"attacked": mcnemar(finals[a], finals[b])}
                     for i, a in enumerate(names) for b in names[i + 1:]}
    out["verdict"] = point_verdict(out)
    return out


def _method_doc(res: dict, knob: dict, cost: dict) -> dict:
    """One method's results at a point: accuracies (:func:`comparison._masks_doc`), its knob and its cost."""
    doc = _masks_doc(res)
    doc["knob"] = knob
    attack_s = sum(s["seconds"] for s in res["steps"]) + (res["square"]["seconds"] if res["square"] else 0)
    doc["cost"] = {**cost, "attack_seconds": round(attack_s, 1)}
    return doc


def _all_pairs(masks: dict) -> dict:
    """McNemar's test of every pair of methods (in ``masks``' order): attacked, clean, after Square."""
    out = {}
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pair = {"attacked": mcnemar(masks[a]["worst"], masks[b]["worst"]),
                    "clean": mcnemar(masks[a]["clean"], masks[b]["clean"])}
            if masks[a]["square"] is not None:
                pair["after_square"] = mcnemar(masks[a]["square"]["after"], masks[b]["square"]["after"])
            out[f"{a} vs {b}"] = pair
    return out


def tables(doc: dict) -> dict:
    """The comparison's tables (``tables.table`` dicts): per point and method (with cost), the paired
    tests, and the verdicts."""
    rows, prow, vrow = [], [], []
    for pt in doc["points"]:
        for name, m in pt["methods"].items():
            sq = m.get("square")
            knob = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                             for k, v in m["knob"].items() if k in ("alpha", "shift", "s", "p", "c"))
            c = m["cost"]
            rows.append([f"{100 * pt['target_val']:.1f}", name, knob, _pct(m["clean"]), _pct(m["attacked"]),
                         _pct(sq["after"]) if sq else "–", c["setup_seconds"], c["forward_passes"],
                         c["attack_seconds"]])
        for pair, t in pt["paired"].items():
            a = t["attacked"]
            sq = t.get("after_square")
            prow.append([f"{100 * pt['target_val']:.1f}", pair, a["only_a"], a["only_b"], round(100 * a["diff"], 2),
                         f"{a['p_value']:.3g}", f"{sq['only_a']} / {sq['only_b']}" if sq else "–"])
        vrow.append([f"{100 * pt['target_val']:.1f}", pt["verdict"]["verdict"]])
    for label, m in doc.get("endpoints", {}).items():
        rows.append(["–", label, "α = 0" if label == "g" else "α = 1", _pct(m["clean"]), _pct(m["attacked"]),
                     _pct(m["square"]["after"]) if m.get("square") else "–", 0.0, label, "–"])
    points = table(["validation target %", "method", "knob", "clean % [95 % CI]",
                    f"attacked % (all but Square, n={doc['n']})", "Square subset after Square %",
                    "setup seconds", "forward passes per prediction", "attack seconds"], rows)
    paired = table(["validation target %", "comparison (a vs b)", "only a right", "only b right",
                    "difference (points)", "McNemar exact p", "after Square (only a / only b)"], prow)
    verdicts = table(["validation target %", "verdict (McNemar exact, p < 0.05)"], vrow)
    return {"points": points, "paired": paired, "verdicts": verdicts}


def converged_tables(doc: dict) -> dict:
    """The methods on the attack-budget ladder (``results.table`` dicts), per position: attacked accuracy per
    rung with its convergence reading, and the paired tests with the verdict on the final masks."""
    rows, prow = [], []
    steps = next((pt["converged"]["steps"] for pt in doc["points"] if "converged" in pt), [])
    for pt in doc["points"]:
        conv = pt.get("converged")
        if not conv:
            continue
        target = f"{100 * pt['target_val']:.1f}"
        for name, m in conv["methods"].items():
            r = m["reading"]
            rows.append([target, name, _pct(m["clean"]), _pct(m["base"]), *(_pct(x) for x in m["rungs"]),
                         "yes" if r["converged"] else "no (upper bound)",
                         round(sum(x["seconds"] for x in m["rungs"]))])
        for pair, t in conv["paired"].items():
            a = t["attacked"]
            prow.append([target, pair, a["only_a"], a["only_b"], round(100 * a["diff"], 2), f"{a['p_value']:.3g}",
                         conv["verdict"]["verdict"]])
    ladder = table(["validation target %", "method", "clean % [95 % CI]", "base set, 20 steps %",
                    *(f"+ strong, {s} steps %" for s in steps), "converged (< 0.5 pt)", "ladder attack seconds"], rows)
    paired = table(["validation target %", "comparison (a vs b)", "only a right", "only b right",
                    "difference (points)", "McNemar exact p", "verdict at the converged budget"], prow)
    return {"ladder": ladder, "paired": paired}


def plot(doc: dict, ax=None):
    """Attacked vs clean (test) accuracy of each method over the matched points, 95 % intervals
    (:func:`matched.plot_curves`)."""
    return plot_curves(doc, ax, title="constant α, learned α_θ and MixedNUTS", label=str)
