"""The honest comparison: the learned α_θ against the constant α, at matched clean accuracy.

Everything that is chosen (the head's shift, the evaluation range, the constant α) is chosen on the
validation split (``learned.choose_head``, :func:`val_calibration`); the test images only measure.
Both mixers face the same attack set, run AutoAttack-style (each attack only on the inputs every
earlier one left correct, so the last column is the per-image worst case):

- PGD with CE and margin losses, through α_θ (``full``, attacker's α-term w = 0 and 0.2) and with α_θ
  detached; PGD crafted on g alone and on h alone (transfers);
- against masking: PGD on softened surrogates of α_θ (γ/T, judged on the real model); detector
  evasion: the α-term at large weights, a two-phase attack that first drives α_θ toward g and then
  attacks the mixture from there, and PGD on the mixture with α_θ held at its clean value;
- APGD-CE and APGD-T through α_θ (pyautoattack), then Square (gradient-free, ``square_queries``) on a
  class-balanced subset of ``square_n`` images.

The constant α gets every attack that applies to it (those about α_θ do not).  Per-image results are
cached by content (model weights, mixer head, attack and its parameters, images): a rerun or another
notebook asking the same question reads the answer instead of recomputing it.  Intervals are
Clopper-Pearson (95 %), "A beats B" is McNemar's exact test on the same images.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch

from .attack_cache import cached_values, fingerprint, images_hash, key
from .attacks import autoattack, pgd, predict
from .mixing import MixedClassifier
from .runtime import batches, progress_bar

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k/n (scipy)."""
    from scipy.stats import binomtest

    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(int(k), int(n)).proportion_ci(level, method="exact")
    return float(ci.low), float(ci.high)


def summary(mask: torch.Tensor) -> dict:
    """Accuracy of a per-image bool mask with its 95 % interval."""
    k, n = int(mask.sum()), int(mask.numel())
    lo, hi = interval(k, n)
    return {"acc": k / n if n else float("nan"), "low": lo, "high": hi, "k": k, "n": n}


def mcnemar(a: torch.Tensor, b: torch.Tensor) -> dict:
    """McNemar's exact test of "a and b are equally accurate" on the same images (two-sided):
    a binomial test on the discordant pairs (scipy)."""
    from scipy.stats import binomtest

    if a.shape != b.shape:
        raise ValueError(f"paired masks must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": float(p), "diff": (only_a - only_b) / a.numel()}


def auc(neg: torch.Tensor, pos: torch.Tensor) -> float:
    """Area under the ROC curve of a score separating ``pos`` from ``neg`` (Mann-Whitney U, scipy)."""
    from scipy.stats import mannwhitneyu

    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    u = mannwhitneyu(pos.double().cpu().numpy(), neg.double().cpu().numpy()).statistic
    return float(u) / (len(neg) * len(pos))


# ---------------------------------------------------------------------------------------------
# Models compared
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# The attack set
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """The attack budget of the comparison (all of it enters the cache key)."""

    eps: float = 0.1
    norm: str = "linf"
    steps: int = 20
    apgd_iter: int = 100
    n_targets: int = 3
    surrogate_scales: tuple = (1.0, 0.25)
    evasion_weights: tuple = (0.5, 0.9)
    square_queries: int = 5000
    square_n: int = 200
    seed: int = 0
    batch_size: int = 250

    def __post_init__(self):
        if self.eps <= 0 or self.steps < 1 or self.apgd_iter < 0 or self.square_queries < 0 or self.square_n < 0:
            raise ValueError(f"budget needs eps > 0, steps >= 1 and apgd_iter, square_queries, square_n >= 0: "
                             f"{self}")


def _with_alpha_term(model, base: str, w: float, threat: str, budget: Budget, **kw):
    from .adaptive import attack_adaptive

    def attack(x, y):
        return attack_adaptive(model, x, y, threat=threat, eps=budget.eps, steps=budget.steps, norm=budget.norm,
                               loss=base, alpha_weight=w, seed=budget.seed, batch_size=budget.batch_size, **kw)
    return attack


def _surrogate(model, base: str, surrogate_scale: float, budget: Budget):
    from .adaptive import attack_adaptive, softened_head

    def attack(x, y):
        with softened_head(model.net, surrogate_scale):
            return attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=budget.steps, norm=budget.norm,
                                   loss=base, alpha_weight=0.2, seed=budget.seed, batch_size=budget.batch_size)
    return attack


def _two_phase(model, budget: Budget):
    """Detector evasion: half the steps push α_θ toward g only (w = 1), the rest attack the mixture (CE,
    w = 0) from that point, inside the same ε-ball."""
    from .adaptive import attack_adaptive

    def attack(x, y):
        half = max(1, budget.steps // 2)
        x1 = attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=half, norm=budget.norm, loss="ce",
                             alpha_weight=1.0, seed=budget.seed, batch_size=budget.batch_size)
        out = torch.empty_like(x)
        for sl in batches(len(x), budget.batch_size):
            with model.threat("full"):
                out[sl] = pgd(model, x[sl], y[sl], eps=budget.eps, steps=budget.steps - half or 1, norm=budget.norm,
                              loss="ce", start=x1[sl], seed=budget.seed + 1)
        return out
    return attack


def _held_alpha(model, budget: Budget):
    """PGD on the mixture with α_θ held at its value on the clean input (judged on the real model)."""
    def attack(x, y):
        out = torch.empty_like(x)
        for sl in batches(len(x), budget.batch_size):
            with torch.no_grad():
                _, a0, _ = model(x[sl], return_alpha=True)
            out[sl] = pgd(MixedClassifier(model.g, model.h, a0), x[sl], y[sl], eps=budget.eps, steps=budget.steps,
                          norm=budget.norm, loss="ce", seed=budget.seed)
        return out
    return attack


def _transfer(source, budget: Budget):
    def attack(x, y):
        return pgd(source, x, y, eps=budget.eps, steps=budget.steps, norm=budget.norm, loss="ce", seed=budget.seed,
                   batch_size=budget.batch_size)
    return attack


def _pgd_on(model, loss, budget: Budget):
    def attack(x, y):
        return pgd(model, x, y, eps=budget.eps, steps=budget.steps, norm=budget.norm, loss=loss, seed=budget.seed,
                   batch_size=budget.batch_size)
    return attack


def _apgd(model, which: str, budget: Budget, adaptive: bool):
    def attack(x, y):
        kw = dict(eps=budget.eps, norm=budget.norm, attacks=(which,), n_iter=budget.apgd_iter,
                  n_target_classes=budget.n_targets, seed=budget.seed, batch_size=budget.batch_size)
        if adaptive:
            with model.threat("full"):
                return autoattack(model, x, y, **kw)
        return autoattack(model, x, y, **kw)
    return attack


def _square(model, budget: Budget):
    def attack(x, y):
        return autoattack(model, x, y, eps=budget.eps, norm=budget.norm, attacks=("square",),
                          square_queries=budget.square_queries, seed=budget.seed, batch_size=budget.batch_size)
    return attack


def attack_set(model, budget: Budget) -> dict:
    """The ordered attacks ``{name: f(x, y) -> x_adv}`` for an ``AdaptiveMixedClassifier`` or a
    constant-α ``MixedClassifier`` (the attacks about α_θ are left out for the latter); Square last."""
    adaptive = hasattr(model, "net")
    if adaptive:
        out = {f"pgd-{loss}/full/w={w:g}": _with_alpha_term(model, loss, w, "full", budget)
               for loss in ("ce", "margin") for w in (0.0, 0.2)}
        out.update({f"pgd-{loss}/detached": _with_alpha_term(model, loss, 0.0, "detached", budget)
                    for loss in ("ce", "margin")})
    else:
        out = {f"pgd-{loss}": _pgd_on(model, loss, budget) for loss in ("ce", "margin")}
    out["transfer/g"] = _transfer(model.g, budget)
    out["transfer/h"] = _transfer(model.h, budget)
    if adaptive:
        for s in budget.surrogate_scales:
            if s < float(model.net.scale):
                out.update({f"surrogate-{s:g}/{loss}": _surrogate(model, loss, s, budget) for loss in ("ce", "margin")})
        out.update({f"evasion/w={w:g}": _with_alpha_term(model, "ce", w, "full", budget)
                    for w in budget.evasion_weights})
        out["evasion/two-phase"] = _two_phase(model, budget)
        out["evasion/alpha-held"] = _held_alpha(model, budget)
    if budget.apgd_iter:
        out["apgd-ce"] = _apgd(model, "apgd-ce", budget, adaptive)
        out["apgd-t"] = _apgd(model, "apgd-t", budget, adaptive)
    if budget.square_queries and budget.square_n:
        out[f"square-{budget.square_queries}"] = _square(model, budget)
    return out


# ---------------------------------------------------------------------------------------------
# Running it, with the content-addressed cache
# ---------------------------------------------------------------------------------------------
def _correct(model, x, y, bs):
    return (predict(model, x, bs) == y).cpu()


def evaluate(model, x: torch.Tensor, y: torch.Tensor, budget: Budget, *, identity: str, square_idx=None,
             use_cache: bool = True, progress: bool = False) -> dict:
    """Run :func:`attack_set` on (x, y) AutoAttack-style and return per-image masks.

    ``identity`` is the mixer's content address (:func:`fingerprint`).  Square runs only on
    ``square_idx`` (positions in x).  Returns ``{"clean", "worst": bool masks, "steps": [{"attack",
    "acc" (cumulative), "seconds", "cached"}], "square": {...} or None}`` where ``worst`` is the mask
    after every attack but Square, and ``square`` holds the masks before and after it on its subset.
    """
    model.eval()
    dev = next(model.parameters()).device
    x, y = x.to(dev), y.to(dev)
    bs = budget.batch_size
    base_key = {"identity": identity, "budget": asdict(budget)}
    clean = _correct(model, x, y, bs)
    correct = clean.clone()
    steps, sq = [], None
    attacks = attack_set(model, budget)
    for name, attack in progress_bar(list(attacks.items()), progress=progress, desc="attacks", leave=False):
        is_square = name.startswith("square")
        pool = correct.clone()
        if is_square:
            if square_idx is None:
                continue
            sub = torch.zeros_like(pool)
            sub[torch.as_tensor(square_idx)] = True
            pool &= sub
        idx = pool.nonzero().flatten()
        if len(idx) == 0:
            ok, secs, hit = torch.zeros(0, dtype=torch.bool), 0.0, False
        else:
            xs, ys = x[idx.to(dev)], y[idx.to(dev)]
            entry = key({**base_key, "attack": name, "images": images_hash(xs, ys)})

            def compute(attack=attack, xs=xs, ys=ys):
                return _correct(model, attack(xs, ys), ys, bs)
            ok, secs, hit = cached_values(entry, compute, use_cache)
        after = pool.clone()
        after[idx] = ok
        if is_square:
            sub_idx = torch.as_tensor(square_idx)
            sq = {"attack": name, "n": len(sub_idx), "before": correct[sub_idx].clone(),
                  "after": (correct & ~pool | after)[sub_idx], "seconds": round(secs, 1), "cached": hit}
        else:
            correct = after
            steps.append({"attack": name, "acc": correct.float().mean().item(), "seconds": round(secs, 1),
                          "cached": hit})
        log.info("%s: %s%s", identity[:8], name, " (cached)" if hit else f" {secs:.0f} s")
    return {"clean": clean, "worst": correct, "steps": steps, "square": sq}


@torch.no_grad()
def alpha_values(model, x, bs=500) -> torch.Tensor:
    """α_θ(x) of an adaptive model, per image."""
    dev = next(model.parameters()).device
    return torch.cat([model(x[sl].to(dev), return_alpha=True)[1] for sl in batches(len(x), bs)]).cpu()


# ---------------------------------------------------------------------------------------------
# The headline: the learned α_θ (with and without its range) against the constant α
# ---------------------------------------------------------------------------------------------
def _masks_doc(res: dict) -> dict:
    doc = {"clean": summary(res["clean"]), "attacked": summary(res["worst"]), "steps": res["steps"]}
    if res["square"] is not None:
        s = res["square"]
        doc["square"] = {"attack": s["attack"], "n": s["n"], "before": summary(s["before"]),
                         "after": summary(s["after"]), "seconds": s["seconds"], "cached": s["cached"],
                         "gap_points": 100 * (s["before"].float().mean() - s["after"].float().mean()).item()}
    return doc


def diagnostics(model, x, y, budget: Budget, *, identity: str, use_cache: bool = True) -> dict:
    """α_θ on clean test images and on two attacks' examples (all images): quantiles and the AUC with
    which α_θ separates attacked from clean inputs (α_θ values cached by content like the attacks)."""
    from .adaptive import attack_adaptive

    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    qs = torch.tensor(levels, dtype=torch.float64)
    a_clean = alpha_values(model, x)
    out = {"clean": {"quantiles": torch.quantile(a_clean.double(), qs).tolist()}, "quantile_levels": levels}
    for name, w in (("pgd-ce/full/w=0.2", 0.2), ("evasion/w=0.9", 0.9)):
        entry = key({"identity": identity, "budget": asdict(budget), "alpha_on": name, "images": images_hash(x, y)})

        def compute(w=w):
            adv = attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=budget.steps, norm=budget.norm,
                                  loss="ce", alpha_weight=w, seed=budget.seed, batch_size=budget.batch_size)
            return alpha_values(model, adv)
        a_adv, _, _ = cached_values(entry, compute, use_cache, dtype=torch.float32)
        out[name] = {"quantiles": torch.quantile(a_adv.double(), qs).tolist(), "auc": auc(a_clean, a_adv)}
    return out


def test_images(dataset: str, n_test: int, budget: Budget, device):
    """``(x, y, square_positions)``: ``n_test`` class-balanced test images (seed ``budget.seed``) and the
    class-balanced positions of Square's ``budget.square_n``-image subset among them (None if 0)."""
    from . import data

    k = data.info(dataset)["num_classes"]
    if n_test < k:
        raise ValueError(f"n_test must be at least the class count {k}, got {n_test}")
    xt, yt = data.load(dataset, "test")
    idx = data.balanced_subset(yt, n_test // k, seed=budget.seed)
    x, y = xt[idx].to(device), yt[idx].to(device)
    sq_pos = data.balanced_subset(y.cpu(), budget.square_n // k, seed=budget.seed + 1) if budget.square_n else None
    return x, y, sq_pos


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
    from . import data, learned, zoo
    from .runtime import get_device

    device = get_device(device)
    for n in learned_names:
        r = learned.recipe(n)
        if (r.g, r.h) != (g, h):
            raise ValueError(f"learned mixer {n!r} mixes g={r.g!r}, h={r.h!r}, not g={g!r}, h={h!r}")
    if n_test < data.info(zoo.recipe(g).dataset)["num_classes"]:
        raise ValueError(f"n_test must be at least the class count, got {n_test}")
    models = {n: learned.get(n, root=root, base_overrides=base_overrides, mixing_overrides=mixing_overrides,
                             device=device) for n in learned_names}
    first = models[learned_names[0]]
    head = first.metadata["head"]
    x, y, sq_pos = test_images(zoo.recipe(g).dataset, n_test, budget, device)
    const = MixedClassifier(first.g, first.h, head["val"]["constant_alpha"]).to(device).eval()
    runs = {"constant": (const, fingerprint(first.g, first.h, extra={"alpha": const.alpha}))}
    for n, m in models.items():
        runs[n] = (m, fingerprint(m, extra={"head": m.metadata["head"]}))
    out = {"n": len(y), "budget": asdict(budget), "target_val": head["val"]["target"], "val": head["val"],
           "methods": {}, "paired": {}}
    masks = {}
    if only is not None:
        unknown = set(only) - set(runs)
        if unknown:
            raise ValueError(f"only must name methods among {list(runs)}, got {sorted(unknown)}")
        runs = {k: v for k, v in runs.items() if k in only}
    for name, (model, ident) in runs.items():
        res = evaluate(model, x, y, budget, identity=ident, square_idx=sq_pos, use_cache=use_cache,
                       progress=progress)
        masks[name] = res
        out["methods"][name] = _masks_doc(res)
        if name != "constant":
            out["methods"][name]["head"] = {k2: v for k2, v in model.metadata["head"].items() if k2 != "val"}
    for name in models:
        if name not in masks or "constant" not in masks:
            continue
        pair = {"attacked": mcnemar(masks[name]["worst"], masks["constant"]["worst"]),
                "clean": mcnemar(masks[name]["clean"], masks["constant"]["clean"])}
        if masks[name]["square"] is not None:
            pair["after_square"] = mcnemar(masks[name]["square"]["after"], masks["constant"]["square"]["after"])
        out["paired"][f"{name} vs constant"] = pair
    if with_diagnostics:
        out["diagnostics"] = {n: diagnostics(m, x, y, budget, identity=runs[n][1], use_cache=use_cache)
                              for n, m in models.items() if n in masks}
    return out


def headline_tables(doc: dict) -> dict:
    """The headline's tables (``results.table`` dicts): per method, and the paired tests."""
    from .results import table

    def pct(s):
        return f"{100 * s['acc']:.1f} [{100 * s['low']:.1f}, {100 * s['high']:.1f}]"

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
      (McNemar exact, two-sided p < ``level``), and on the Square subset after Square it is not behind;
    - ``not reproduced``: α_θ is significantly behind on all images, or significantly ahead there but
      significantly behind on the Square subset after Square (the gain was masked gradients);
    - ``inconclusive``: anything else (ties included).

    ``square_gap_points``: how far Square lowered α_θ's accuracy on its subset below the gradient attacks.
    """
    pair = doc["paired"][f"{learned_name} vs constant"]
    main, sq = pair["attacked"], pair.get("after_square")
    ahead = main["diff"] > 0 and main["p_value"] < level
    behind = main["diff"] < 0 and main["p_value"] < level
    sq_behind = sq is not None and sq["diff"] < 0 and sq["p_value"] < level
    sq_not_behind = sq is None or sq["diff"] >= 0
    if ahead and sq_not_behind:
        v = "reproduced"
    elif behind or (ahead and sq_behind):
        v = "not reproduced"
    else:
        v = "inconclusive"
    gap = doc["methods"][learned_name].get("square", {}).get("gap_points")
    return {"claim": "the learned α_θ beats the constant α at equal clean accuracy", "verdict": v,
            "difference_points": round(100 * main["diff"], 2), "p_value": main["p_value"],
            "square_subset_difference_points": None if sq is None else round(100 * sq["diff"], 2),
            "square_gap_points": gap, "rule": "McNemar exact, two-sided, level 0.05; Square must not reverse it"}
