"""Attack-budget convergence: the headline's methods attacked with the ``strong`` attack family at growing
budgets until their attacked accuracy stops moving.

A robustness number is an upper bound until a stronger attack no longer lowers it.  The ladder runs the
strong family (:mod:`.attack_suite`) at ``steps`` = 20, 50, 100, 200 PGD steps per attack (per phase for the
two-phase evasion attack; APGD with max(100, steps) iterations), cumulatively per image: each rung attacks
only the images that the base 20-step set and every lower rung left correct, so the accuracy after a rung is
the per-image worst case over every attack run so far.  The rule, fixed before looking at the numbers: a
method has *converged* when its last rung lowered its attacked accuracy by less than ``TOL_POINTS`` (0.5)
points; the reported number is the value after the last rung (the strongest evaluation we ran), flagged
``converged: False`` otherwise (an upper bound).

The images are split into ``shards`` contiguous parts evaluated independently (each its own attack-cache
entries), so that several processes can fill the cache side by side (``fill``); the shard count is part of
the result's definition and recorded.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import torch

from .. import zoo
from ..runner import shard_slices
from ..runtime import get_device
from ..statistics import interval, mcnemar, summary
from ..tables import table
from .attack_suite import Budget
from .cached_run import evaluate, test_images
from .head_to_head import _learned_models, _runs, pct, verdict

log = logging.getLogger(__name__)

LADDER = (20, 50, 100, 200)
TOL_POINTS = 0.5
LADDER_BATCH = 100  # images per attack batch on the ladder (faster per image than 250 on a CPU core)


def ladder(model, x, y, base: Budget, *, identity: str, survivors: torch.Tensor, steps=LADDER, shards: int = 2,
           only_shard: int | None = None, jobs: int = 1, use_cache: bool = True, progress: bool = False) -> dict:
    """The strong family at each budget of ``steps`` in turn on the images ``survivors`` marks (the base set's
    worst-case mask).  Returns ``{"rungs": [{"steps", "acc", "seconds", "cached"}], "worst": mask}``;
    ``only_shard`` runs that shard alone (filling the cache; the masks then cover that shard only); ``jobs``
    worker processes attack the shards of each rung side by side (:func:`runner.run`)."""
    if list(steps) != sorted(set(steps)) or not steps or steps[0] < 1:
        raise ValueError(f"steps must be increasing budgets >= 1, got {list(steps)}")
    if x.device.type == "cpu":  # faster convolutions on a CPU core (benchmarks/ladder_speed.py)
        model = model.to(memory_format=torch.channels_last)
    covered = torch.zeros(len(y), dtype=torch.bool)
    for sl in shard_slices(len(y), shards) if only_shard is None else [shard_slices(len(y), shards)[only_shard]]:
        covered[sl] = True
    worst = survivors.cpu().clone()
    rungs = []
    for s in steps:
        budget = replace(base.with_steps(s), batch_size=LADDER_BATCH)
        res = evaluate(model, x, y, budget, identity=identity, use_cache=use_cache, progress=progress,
                       survivors=worst, shards=shards, only_shard=only_shard, jobs=jobs)
        worst = res["worst"] | (worst & ~covered)  # the shards not run keep their mask
        rungs.append({"steps": s, "acc": int(worst[covered].sum()) / int(covered.sum()),
                      "seconds": round(sum(st["seconds"] for st in res["steps"]), 1),
                      "cached": all(st["cached"] for st in res["steps"])})
        log.info("%s: ladder %d steps: %.1f %%", identity[:8], s, 100 * rungs[-1]["acc"])
    return {"rungs": rungs, "worst": worst}


def reading(base_acc: float, rungs: list[dict], tol_points: float = TOL_POINTS) -> dict:
    """The convergence rule on one method's ladder: ``converged`` when the last rung moved the accuracy by less
    than ``tol_points``; ``at_steps``: the first rung after which no later rung moved it by that much."""
    accs = [base_acc] + [r["acc"] for r in rungs]
    moves = [100 * (a - b) for a, b in zip(accs[:-1], accs[1:])]
    at = None
    for i in range(1, len(moves)):
        if all(m < tol_points for m in moves[i:]):
            at = rungs[i - 1]["steps"]
            break
    return {"converged": bool(moves) and moves[-1] < tol_points, "at_steps": at,
            "moves_points": [round(m, 2) for m in moves], "tol_points": tol_points}


def compare(methods: dict, square_after: dict) -> dict:
    """Paired tests of every learned mixer against ``constant`` on the ladder's final masks (``methods``:
    name -> worst mask), and on the Square subset (``square_after``: name -> (positions, mask after Square
    of the base set), combined with the ladder's masks there)."""
    out = {}
    for name, worst in methods.items():
        if name == "constant":
            continue
        pair = {"attacked": mcnemar(worst, methods["constant"])}
        if name in square_after and "constant" in square_after:
            pos, a = square_after[name]
            _, b = square_after["constant"]
            pair["after_square"] = mcnemar(worst[pos] & a, methods["constant"][pos] & b)
        out[f"{name} vs constant"] = pair
    return out


def _with_interval(r: dict, n: int) -> dict:
    k = round(r["acc"] * n)
    lo, hi = interval(k, n)
    return {**r, "k": k, "n": n, "low": lo, "high": hi}


def run(*, g: str = "fmnist-standard", h: str = "fmnist-linf-at", learned_names=("fmnist-adaptive",),
        n_test: int = 1000, budget: Budget = Budget(), steps=LADDER, shards: int = 2,
        only=None, only_shard: int | None = None, root=None, base_overrides=None, mixing_overrides=None,
        use_cache: bool = True, device=None, progress: bool = False, tol_points: float = TOL_POINTS,
        method_steps: dict | None = None, jobs: int = 1) -> dict:
    """The headline's methods (the constant α and ``learned_names``, as :func:`head_to_head.headline` builds
    them) on its ``n_test`` images: the base set at ``budget`` (read from the headline's cache entries), then
    the ladder.  Returns a JSON-ready dict: per method clean, base and final attacked accuracy with 95 %
    intervals, every rung, the convergence reading; McNemar of each learned mixer against the constant α on
    the final masks (and on the Square subset, Square's masks from the base set); the verdicts.  ``only`` and
    ``only_shard`` restrict the work (filling the cache from several processes).  ``method_steps`` (name ->
    budgets, each one of ``steps``) lets a method climb only part of the ladder; its reading follows the same
    rule on the rungs it ran, and each method records the ``steps`` it climbed.  ``jobs``: worker processes that
    attack each rung's shards side by side (CPU)."""
    device = get_device(device)
    models = _learned_models(g, h, learned_names, n_test, root=root, base_overrides=base_overrides,
                             mixing_overrides=mixing_overrides, device=device)
    x, y, sq_pos = test_images(zoo.recipe(g).dataset, n_test, budget, device)
    runs = _runs(models[learned_names[0]], models, device, only)
    base = {name: evaluate(m, x, y, budget, identity=ident, square_idx=sq_pos, use_cache=use_cache,
                           progress=progress) for name, (m, ident) in runs.items()}
    out = {"n": len(y), "steps": list(steps), "shards": shards, "tol_points": tol_points,
           "rule": f"converged when the last rung lowers the attacked accuracy by < {tol_points:g} points; the "
                   "reported accuracy is the per-image worst case over the base set and every rung",
           "methods": {}}
    finals, square_after = {}, {}
    for name, (m, ident) in runs.items():
        own = list((method_steps or {}).get(name, steps))
        if not own or any(s not in steps for s in own):
            raise ValueError(f"method_steps[{name!r}] must be budgets of the ladder {list(steps)}, got {own}")
        lad = ladder(m, x, y, budget, identity=ident, survivors=base[name]["worst"], steps=own, shards=shards,
                     only_shard=only_shard, jobs=jobs, use_cache=use_cache, progress=progress)
        part = slice(None) if only_shard is None else shard_slices(len(y), shards)[only_shard]
        n = len(range(len(y))[part])
        base_acc = int(base[name]["worst"][part].sum()) / n
        out["methods"][name] = {"steps": own, "clean": summary(base[name]["clean"]), "base": summary(base[name]["worst"]),
                                "rungs": [_with_interval(r, n) for r in lad["rungs"]],
                                "attacked": summary(lad["worst"]),
                                "reading": reading(base_acc, lad["rungs"], tol_points)}
        finals[name] = lad["worst"]
        sq = base[name]["square"]
        if sq is not None:
            pos = torch.as_tensor(sq_pos)
            square_after[name] = (pos, sq["after"])
            out["methods"][name]["square"] = {"attack": sq["attack"], "n": sq["n"],
                                              "after_ladder_and_square": summary(lad["worst"][pos] & sq["after"])}
    if only is None and only_shard is None:
        out["paired"] = compare(finals, square_after)
        out["verdicts"] = {n: verdict(out, n) for n in learned_names}
    return out


def ladder_tables(doc: dict) -> dict:
    """The ladder as ``tables.table`` dicts: attacked accuracy per method and budget, and the paired tests."""
    steps = doc["steps"]
    rows = []
    for name, m in doc["methods"].items():
        r = m["reading"]
        by_step = dict(zip(m.get("steps", steps), m["rungs"]))
        rows.append([name, pct(m["clean"]), pct(m["base"]),
                     *(pct(by_step[s]) if s in by_step else "– (not run)" for s in steps),
                     "yes" if r["converged"] else "no (upper bound)", r["at_steps"] or "–",
                     round(sum(x["seconds"] for x in m["rungs"]))])
    ladder_t = table(["method", "clean %", "base set, 20 steps %", *(f"+ strong, {s} steps %" for s in steps),
                      f"converged (< {doc['tol_points']:g} pt)", "stops moving at", "ladder attack seconds"], rows)
    prow = [[name, what, t["only_a"], t["only_b"], round(100 * t["diff"], 2), f"{t['p_value']:.3g}"]
            for name, p in doc.get("paired", {}).items() for what, t in p.items()]
    paired = table(["comparison", "on", "only learned right", "only constant right", "difference (points)",
                    "McNemar exact p"], prow)
    return {"ladder": ladder_t, "paired": paired}


def plot_ladder(doc: dict, ax=None):
    """Attacked accuracy against the attack budget, one line per method, 95 % intervals as bands; the base
    20-step set at budget 0 of the axis' left ("base")."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2))
    xs_all = [0] + list(range(1, len(doc["steps"]) + 1))
    for i, (name, m) in enumerate(doc["methods"].items()):
        pts = [m["base"]] + m["rungs"]
        xs = [0] + [doc["steps"].index(s) + 1 for s in m.get("steps", doc["steps"])]
        acc = [100 * p["acc"] for p in pts]
        ax.plot(xs, acc, "o-", color=f"C{i}", label=name)
        ax.fill_between(xs, [100 * p["low"] for p in pts], [100 * p["high"] for p in pts], color=f"C{i}", alpha=0.15)
    ax.set_xticks(xs_all, ["base set\n20 steps"] + [f"+ strong\n{s} steps" for s in doc["steps"]])
    ax.set_ylabel("attacked accuracy (%), cumulative worst case")
    ax.set_title(f"attack-budget convergence, n = {doc['n']} test images (95 % Clopper-Pearson bands)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax
