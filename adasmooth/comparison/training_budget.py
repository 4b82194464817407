"""α_θ's training-budget curve: the headline recipe trained for fewer steps, each against the constant α.

The learned mixers named (``learned.RECIPES``: the headline recipe on a class-balanced share of the training
split, one epoch over it, so its warm-up and cosine schedule span the shorter run) each face the constant α at
the validation-chosen clean accuracy, on the headline's test images with the headline's attack set
(:func:`headline`); the constant α is the same for all of them (g, h and the target are).  A point is read
with its 95 % interval, McNemar's exact test against the constant α on the same images and the verdict rule of
:func:`verdict`.  The answer is the smallest number of training steps at which α_θ is significantly ahead.
"""
from __future__ import annotations

from .attack_suite import Budget
from .head_to_head import headline, pct, verdict
from ..tables import table


def run(*, learned_names, g: str = "fmnist-standard", h: str = "fmnist-linf-at", n_test: int = 1000,
        budget: Budget = Budget(), root=None, base_overrides=None, mixing_overrides=None, use_cache: bool = True,
        device=None, progress: bool = False) -> dict:
    """The curve: ``{"n", "budget", "constant", "points": [...], "smallest_steps", "smallest_significant"}``, the
    points sorted by training steps, each with the mixer's steps, training seconds, clean and attacked accuracy
    (95 % intervals), its Square-subset numbers, McNemar against the constant α and the verdict."""
    if not learned_names:
        raise ValueError("learned_names must name at least one learned mixer")
    doc = headline(g=g, h=h, learned_names=list(learned_names), n_test=n_test, budget=budget, with_diagnostics=False,
                   root=root, base_overrides=base_overrides, mixing_overrides=mixing_overrides, use_cache=use_cache,
                   device=device, progress=progress)
    points = []
    for name in learned_names:
        m = doc["methods"][name]
        pair = doc["paired"][f"{name} vs constant"]
        points.append({"name": name, "steps": m["training"]["steps"], "train_seconds": m["training"]["seconds"],
                       "clean": m["clean"], "attacked": m["attacked"], "square": m.get("square"),
                       "paired": pair["attacked"], "after_square": pair.get("after_square"),
                       "verdict": verdict(doc, name)})
    points.sort(key=lambda p: p["steps"])
    ahead = [p for p in points if p["paired"]["diff"] > 0 and p["paired"]["p_value"] < 0.05]
    reproduced = [p for p in points if p["verdict"]["verdict"] == "reproduced"]
    return {"n": doc["n"], "budget": doc["budget"], "constant": doc["methods"]["constant"], "points": points,
            "smallest_steps": ahead[0]["steps"] if ahead else None,
            "smallest_significant": reproduced[0]["steps"] if reproduced else None}


def tables(doc: dict) -> dict:
    """The curve as a table (one row per training budget, the constant α last)."""
    rows = []
    for p in doc["points"]:
        t, sq = p["paired"], p["after_square"]
        rows.append([p["name"], p["steps"], round(p["train_seconds"]), pct(p["clean"]), pct(p["attacked"]),
                     f"{t['only_a']} vs {t['only_b']}", f"{t['p_value']:.2g}",
                     f"{sq['only_a']} vs {sq['only_b']}, p {sq['p_value']:.2g}" if sq else "–",
                     p["verdict"]["verdict"]])
    c = doc["constant"]
    rows.append(["constant α", "–", "–", pct(c["clean"]), pct(c["attacked"]), "–", "–", "–", "–"])
    return {"curve": table(["mixer", "training steps", "training seconds", "clean % [95 % CI]",
                            f"attacked % (all but Square, n={doc['n']})", "only α_θ vs only constant right",
                            "McNemar p", "Square subset, after Square", "verdict"], rows)}


def line(doc: dict) -> str:
    """One sentence: the smallest budget at which α_θ is significantly ahead (or that none is)."""
    last = doc["points"][-1]
    head = (f"α_θ is first significantly ahead of the constant α at {doc['smallest_steps']} training steps"
            if doc["smallest_steps"] is not None
            else "α_θ is significantly ahead of the constant α at no training budget")
    verdicts = ", ".join(f"{p['steps']} steps: {p['verdict']['verdict']}" for p in doc["points"])
    return (f"{head} (all attacks but Square, n = {doc['n']}; at {last['steps']} steps {pct(last['attacked'])} % vs "
            f"{pct(doc['constant']['attacked'])} %). Verdicts with Square: {verdicts}.")


def plot(doc: dict, ax=None):
    """Attacked (and clean) accuracy of α_θ against its training steps, 95 % intervals as error bars; the constant
    α as a band (its interval) and a line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2))
    steps = [p["steps"] for p in doc["points"]]
    for field, fmt, label in (("attacked", "o-", "α_θ attacked"), ("clean", "s--", "α_θ clean")):
        acc = [100 * p[field]["acc"] for p in doc["points"]]
        err = [[100 * (p[field]["acc"] - p[field]["low"]) for p in doc["points"]],
               [100 * (p[field]["high"] - p[field]["acc"]) for p in doc["points"]]]
        ax.errorbar(steps, acc, yerr=err, fmt=fmt, color="C0" if field == "attacked" else "C2", capsize=3, label=label)
    c = doc["constant"]["attacked"]
    ax.axhspan(100 * c["low"], 100 * c["high"], color="C1", alpha=0.2)
    ax.axhline(100 * c["acc"], color="C1", label="constant α attacked (95 % band)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xlabel("training steps of α_θ (128 clean + 128 attacked images each)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"α_θ's training budget at the validation-chosen clean accuracy, n = {doc['n']} test images",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax
