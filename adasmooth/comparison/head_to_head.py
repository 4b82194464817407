"""The headline: the learned α_θ (with and without its range) against the constant α at the validation-chosen
clean accuracy, its tables, plot and verdict (claim (b))."""
from __future__ import annotations

from dataclasses import asdict

from .. import zoo
from ..attack_cache import fingerprint
from ..mixing import MixedClassifier
from ..runtime import get_device
from ..statistics import mcnemar
from ..tables import table
from .attack_suite import Budget
from .cached_run import _masks_doc, diagnostics, evaluate, test_images


def headline(*, g: str = "fmnist-standard", h: str = "fmnist-linf-at",
             learned_names=("fmnist-adaptive", "fmnist-adaptive-clamped"), n_test: int = 1000,
             budget: Budget = Budget(), with_diagnostics: bool = True, root=None, base_overrides=None,
             mixing_overrides=None, use_cache: bool = True, only=None, device=None, progress: bool = False) -> dict:
    """The comparison at the validation-chosen clean accuracy on ``n_test`` class-balanced test images.

    Each learned mixer (``learned.RECIPES``, head chosen on the validation split) and the constant α
    chosen on the same split for the same target face :func:`attack_set`; Square runs on a class-balanced
    subset of ``budget.square_n`` of the images.  Returns a JSON-ready dict: per method the clean and
    attacked accuracy with 95 % intervals, each attack's cumulative accuracy and seconds, Square's
    gap on its subset; McNemar's test of each learned mixer against the constant α (all attacks but
    Square; and on the Square subset after Square); α_θ diagnostics.  ``only`` (method names,
    "constant" included) limits the run to those (e.g. to fill the attack cache from several processes);
    a pair needs both of its methods.
    """
    device = get_device(device)
    models = _learned_models(g, h, learned_names, n_test, root=root, base_overrides=base_overrides,
                             mixing_overrides=mixing_overrides, device=device)
    first = models[learned_names[0]]
    head = first.metadata["head"]
    x, y, sq_pos = test_images(zoo.recipe(g).dataset, n_test, budget, device)
    runs = _runs(first, models, device, only)
    out = {"n": len(y), "budget": asdict(budget), "target_val": head["val"]["target"], "val": head["val"],
           "methods": {}, "paired": {}}
    masks = {}
    for name, (model, ident) in runs.items():
        res = evaluate(model, x, y, budget, identity=ident, square_idx=sq_pos, use_cache=use_cache,
                       progress=progress)
        masks[name] = res
        out["methods"][name] = _masks_doc(res)
        if name != "constant":
            out["methods"][name]["head"] = {k2: v for k2, v in model.metadata["head"].items() if k2 != "val"}
            out["methods"][name]["training"] = {"steps": model.metadata.get("steps"),
                                                "seconds": model.metadata.get("train_seconds")}
    out["paired"] = _paired(models, masks)
    if with_diagnostics:
        out["diagnostics"] = {n: diagnostics(m, x, y, budget, identity=runs[n][1], use_cache=use_cache)
                              for n, m in models.items() if n in masks}
    return out


def _learned_models(g: str, h: str, learned_names, n_test: int, *, root, base_overrides, mixing_overrides,
                    device) -> dict:
    """The learned mixers ``learned_names`` (each must mix ``g`` and ``h``; ``n_test`` must cover every class)."""
    from .. import data, learned, zoo

    for n in learned_names:
        r = learned.recipe(n)
        if (r.g, r.h) != (g, h):
            raise ValueError(f"learned mixer {n!r} mixes g={r.g!r}, h={r.h!r}, not g={g!r}, h={h!r}")
    if n_test < data.info(zoo.recipe(g).dataset)["num_classes"]:
        raise ValueError(f"n_test must be at least the class count, got {n_test}")
    return {n: learned.get(n, root=root, base_overrides=base_overrides, mixing_overrides=mixing_overrides,
                           device=device) for n in learned_names}


def _runs(first, models: dict, device, only) -> dict:
    """name -> (model, content address): the constant α chosen on the validation split (for ``first``'s g, h
    and target), then each learned mixer; only those named in ``only`` (None: all)."""
    const = MixedClassifier(first.g, first.h, first.metadata["head"]["val"]["constant_alpha"]).to(device).eval()
    runs = {"constant": (const, fingerprint(first.g, first.h, extra={"alpha": const.alpha}))}
    for n, m in models.items():
        runs[n] = (m, fingerprint(m, extra={"head": m.metadata["head"]}))
    if only is not None:
        unknown = set(only) - set(runs)
        if unknown:
            raise ValueError(f"only must name methods among {list(runs)}, got {sorted(unknown)}")
        runs = {k: v for k, v in runs.items() if k in only}
    return runs


def _paired(models: dict, masks: dict) -> dict:
    """McNemar's test of each learned mixer against the constant α: all attacks but Square, clean, and on the
    Square subset after Square (pairs with both methods run only)."""
    out = {}
    for name in models:
        if name not in masks or "constant" not in masks:
            continue
        pair = {"attacked": mcnemar(masks[name]["worst"], masks["constant"]["worst"]),
                "clean": mcnemar(masks[name]["clean"], masks["constant"]["clean"])}
        if masks[name]["square"] is not None:
            pair["after_square"] = mcnemar(masks[name]["square"]["after"], masks["constant"]["square"]["after"])
        out[f"{name} vs constant"] = pair
    return out


def pct(s: dict) -> str:
    """An accuracy with its interval, in percent: ``"61.2 [58.1, 64.2]"``."""
    return f"{100 * s['acc']:.1f} [{100 * s['low']:.1f}, {100 * s['high']:.1f}]"


def headline_tables(doc: dict) -> dict:
    """The headline's tables (``tables.table`` dicts): per method, and the paired tests."""
    rows = []
    for name, m in doc["methods"].items():
        sq = m.get("square")
        what = m.get("head", {}).get("description", "constant α chosen on the validation split for the same target")
        rows.append([name, what, pct(m["clean"]), pct(m["attacked"]),
                     pct(sq["before"]) if sq else "–", pct(sq["after"]) if sq else "–",
                     round(sum(s["seconds"] for s in m["steps"]) + (sq["seconds"] if sq else 0))])
    methods = table(["method", "what it is", "clean % [95 % CI]", f"attacked % (all but Square, n={doc['n']})",
                     "Square subset: before %", "after Square %", "attack seconds"], rows)
    prow = []
    for name, p in doc["paired"].items():
        for what, t in p.items():
            prow.append([name, what, t["only_a"], t["only_b"], round(100 * t["diff"], 2), f"{t['p_value']:.3g}"])
    paired = table(["comparison", "on", "only learned right", "only constant right", "difference (points)",
                    "McNemar exact p"], prow)
    steps = table(["method", "attack", "cumulative accuracy %", "seconds"],
                  [[name, s["attack"], round(100 * s["acc"], 2), s["seconds"]]
                   for name, m in doc["methods"].items() for s in m["steps"]])
    drow = []
    for name, d in (doc.get("diagnostics") or {}).items():
        levels = d["quantile_levels"]
        for on, v in d.items():
            if on == "quantile_levels":
                continue
            q = dict(zip((round(float(lv), 4) for lv in levels), v["quantiles"]))
            drow.append([name, on, *(round(q[lv], 3) for lv in (0.05, 0.5, 0.95)),
                         round(v["auc"], 3) if "auc" in v else "–"])
    diag = table(["mixer", "α_θ on", "5 % quantile", "median", "95 % quantile",
                  "AUC (attacked vs clean)"], drow)
    return {"methods": methods, "paired": paired, "steps": steps, "diagnostics": diag}


def plot_headline(doc: dict, ax=None):
    """Clean vs attacked accuracy of each method at the matched point, 95 % intervals as error bars
    (filled: all attacks but Square on every image; open: the Square subset after Square)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2))
    for i, (name, m) in enumerate(doc["methods"].items()):
        c, a = m["clean"], m["attacked"]
        color = f"C{i}"
        ax.errorbar(100 * c["acc"], 100 * a["acc"], xerr=[[100 * (c["acc"] - c["low"])], [100 * (c["high"] - c["acc"])]],
                    yerr=[[100 * (a["acc"] - a["low"])], [100 * (a["high"] - a["acc"])]], fmt="o", color=color,
                    capsize=3, label=f"{name}")
        sq = m.get("square")
        if sq:
            s = sq["after"]
            ax.errorbar(100 * c["acc"], 100 * s["acc"], yerr=[[100 * (s["acc"] - s["low"])], [100 * (s["high"] - s["acc"])]],
                        fmt="o", mfc="none", color=color, capsize=3, label=f"{name}: Square subset (n={s['n']})")
    return finish_axes(ax, doc, "learned α_θ vs constant α at the validation-chosen clean accuracy\n"
                                f"n = {doc['n']} test images, full attack set, Clopper-Pearson 95 % intervals")


def finish_axes(ax, doc: dict, title: str):
    """Labels (ε and norm from ``doc["budget"]``), title, grid and legend of an attacked-vs-clean plot."""
    b = doc["budget"]
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"attacked accuracy (%), ℓ{'∞' if b['norm'] == 'linf' else '2'} ε = {b['eps']:g}")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def verdict(doc: dict, learned_name: str, level: float = 0.05) -> dict:
    """Claim (b) of the paper, "the learned α_θ beats the constant α at equal clean accuracy", decided by a
    rule fixed before looking at the numbers:

    - ``reproduced``: on all images (every attack but Square) α_θ is right on significantly more images
      (McNemar exact, two-sided p < ``level``), and on the Square subset, after Square as well, it is still
      significantly ahead (a robustness claim is judged by the strongest evaluation that ran);
    - ``not reproduced``: α_θ is significantly behind on all images, or significantly behind on the Square
      subset after Square (a gain under gradient attacks that Square reverses was masked gradients);
    - ``inconclusive``: anything else (ties included, and a lead that is no longer significant after Square),
      and on the attack-budget ladder a lead whose leader has not converged (its number is an upper bound).

    ``square_gap_points``: how far Square lowered α_θ's accuracy on its subset below the gradient attacks.
    """
    pair = doc["paired"][f"{learned_name} vs constant"]
    main, sq = pair["attacked"], pair.get("after_square")
    ahead = main["diff"] > 0 and main["p_value"] < level
    behind = main["diff"] < 0 and main["p_value"] < level
    sq_ahead = sq is None or (sq["diff"] > 0 and sq["p_value"] < level)
    sq_behind = sq is not None and sq["diff"] < 0 and sq["p_value"] < level
    if behind or sq_behind:
        v = "not reproduced"
    elif ahead and sq_ahead:
        v = "reproduced"
    else:
        v = "inconclusive"
    # on the attack-budget ladder: a lead read where the leader's attacked accuracy still moved is an upper bound
    leader = learned_name if v == "reproduced" else "constant" if v == "not reproduced" else None
    reading = (doc["methods"].get(leader) or {}).get("reading") if leader else None
    if reading is not None and not reading["converged"]:
        v = "inconclusive"
    gap = doc["methods"][learned_name].get("square", {}).get("gap_points")
    return {"claim": "the learned α_θ beats the constant α at equal clean accuracy", "verdict": v,
            "difference_points": round(100 * main["diff"], 2), "p_value": main["p_value"],
            "square_subset_difference_points": None if sq is None else round(100 * sq["diff"], 2),
            "square_gap_points": gap, "rule": "McNemar exact, two-sided, level 0.05, on all images and on the Square subset after Square"}
