"""Clean and attacked accuracy, and the accuracy-robustness trade-off curve of h^α over α.

The attacked ("robust") accuracy is a per-input worst case: an input counts only when the model is
right on it and on the example of every attack (CE-PGD, DLR-PGD and APGD-T on the mix itself, and
PGD examples crafted on g alone and on h alone, transferred to the mix; the paper plots
min(transfer, direct)).  CE-PGD alone overestimates the robustness of a mixture, and so does
fixed-step PGD: on the default zoo (500 images, ℓ∞ 0.1) the set without APGD-T read up to 5.6 points
above AutoAttack (at α = 0.5); with APGD-T (100 iterations, 3 targets) at most 0.4 points.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import torch

from . import checkpoint, data
from .attack_cache import fingerprint
from .attacks import NORMS, apgd_targeted, autoattack, model_output, pgd, pgd_targeted, worst_case
from .mixing import (LABELS, OPTIONS, check_alpha,  # noqa: F401 - OPTIONS, LABELS: also read as evaluate.*
                     get as get_mixer)
from .runner import Attack, Run, run
from .runtime import batches, get_device, progress_bar

log = logging.getLogger(__name__)

# attacks tradeoff_curve knows by name; the default set is what the reported robust accuracy uses
ATTACKS = ("pgd_ce", "pgd_dlr", "pgd_margin", "pgd_t", "apgd_ce", "apgd_t", "transfer_g", "transfer_h")
DEFAULT_ATTACKS = ("pgd_ce", "pgd_dlr", "transfer_g", "transfer_h", "apgd_t")
# the costly APGD attacks run last, only on the inputs the cheaper ones left correct (as AutoAttack does)
CASCADED = ("apgd_ce", "apgd_t")


def _device(model, device):
    if device is not None:
        return get_device(device)
    p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return p.device if p is not None else get_device(None)


def _fraction(mask: torch.Tensor) -> float:
    return mask.sum().item() / max(mask.numel(), 1)


def _check_xy(x, y):
    if not torch.is_tensor(x) or x.ndim < 2:
        raise ValueError(f"x must be a batch of inputs (N, ...), got {getattr(x, 'shape', type(x).__name__)}")
    if not torch.is_tensor(y) or y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(getattr(y, 'shape', ()))}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains non-finite values (NaN or inf)")


def _check_labels(y, num_classes: int):
    """Labels must index the model's outputs: y in [0, C), C the width of model(x)."""
    if len(y) == 0:
        return
    lo, hi = y.min().item(), y.max().item()
    if hi >= num_classes:
        raise ValueError(f"y must hold labels in [0, {num_classes}) (C = {num_classes}, the width of the model's "
                         f"output), got largest label {hi}")
    if lo < 0:
        raise ValueError(f"y must hold labels in [0, {num_classes}) (C = {num_classes}, the width of the model's "
                         f"output), got smallest label {lo}")


def accuracy(model: Callable, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000, device=None) -> float:
    """Fraction of inputs with argmax model(x) = y (batched, no gradients, on the model's device)."""
    _check_xy(x, y)
    dev = _device(model, device)
    hits = 0
    for i, sl in enumerate(batches(len(x), batch_size)):
        with torch.no_grad():
            z = model_output(model, x[sl].to(dev))
        if i == 0:
            _check_labels(y, z.shape[1])
        hits += (z.argmax(1) == y[sl].to(dev)).sum().item()
    return hits / len(x)


class Robust(NamedTuple):
    accuracy: float           # fraction correct on the clean input and under every attack
    correct: torch.Tensor     # (N,) bool, on the CPU
    per_attack: dict          # attack name -> accuracy under that attack alone
    per_attack_correct: dict  # attack name -> (N,) bool correctness under that attack alone


def robust_accuracy(model: Callable, x: torch.Tensor, y: torch.Tensor,
                    attacks: Mapping[str, Callable | torch.Tensor], *, batch_size: int | None = None,
                    device=None, progress: bool = False, only_robust: Sequence[str] = ()) -> Robust:
    """Per-input worst case over ``attacks`` (each ``attack(model, x, y) -> x_adv``, or a tensor of
    examples precomputed for these x), run on chunks of ``batch_size`` inputs.  Attacks named in
    ``only_robust`` run last, on the inputs the others left correct (see ``attacks.worst_case``)."""
    _check_xy(x, y)
    if not isinstance(attacks, Mapping) or not attacks:
        raise ValueError("attacks must be a non-empty mapping name -> attack")
    for k, a in attacks.items():
        if torch.is_tensor(a) and a.shape != x.shape:
            raise ValueError(f"attacks[{k!r}] holds examples of shape {tuple(a.shape)}, expected {tuple(x.shape)}")
    dev = _device(model, device)
    n = len(x)
    correct = torch.zeros(n, dtype=torch.bool)
    per = {k: torch.zeros(n, dtype=torch.bool) for k in attacks}
    for sl in progress_bar(list(batches(n, batch_size or n)), progress=progress, desc="robust", leave=False):
        chunk = {k: (lambda m, xx, yy, a=a[sl].to(dev): a) if torch.is_tensor(a) else a for k, a in attacks.items()}
        wc = worst_case(model, x[sl].to(dev), y[sl].to(dev), chunk, only_robust=only_robust)
        correct[sl] = wc.correct.cpu()
        for k in attacks:
            per[k][sl] = wc.per_attack[k].cpu()
    return Robust(_fraction(correct), correct, {k: _fraction(v) for k, v in per.items()}, per)


def tradeoff_curve(g: torch.nn.Module, h: torch.nn.Module, alphas: Sequence[float], options: Sequence[str],
                   x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 20, norm: str = "linf",
                   step_size: float | None = None, random_start: bool = False,
                   attacks: Sequence[str] = DEFAULT_ATTACKS, extra_attacks: Mapping[str, Callable] | None = None,
                   reference: Mapping[str, Callable] | None = None, n_targets: int = 3, apgd_iter: int = 100,
                   subsets: Mapping[str, Sequence[str]] | None = None, batch_size: int = 500, device=None,
                   seed: int = 0, use_cache: bool = False, alpha_keys: Mapping[float, dict] | None = None,
                   progress: bool = False) -> list[dict]:
    """Clean and attacked accuracy of h^α for every α in ``alphas`` and every mixing option.

    Each row: ``option, space, R, alpha, n, clean, attacked`` and the accuracy under each attack
    alone.  ``attacked`` is the per-input worst case over ``attacks`` (names from ``ATTACKS``: PGD
    with CE / DLR / margin (Carlini-Wagner) loss, targeted DLR-PGD towards ``n_targets`` classes, and CE-PGD crafted on g
    or h alone and transferred, all ``steps`` steps; APGD-CE and APGD-T (``n_targets`` classes) with
    ``apgd_iter`` iterations; ε = ``eps``) and ``extra_attacks``.  The APGD attacks run last and only
    on the inputs every other attack left correct, so their columns hold the worst case up to them.
    ``reference`` attacks (e.g. AutoAttack) are reported in their own columns and in
    ``attacked_all`` (worst case including them) but not in ``attacked``.  ``subsets`` adds columns
    ``name: worst case over those attacks only`` (e.g. ``{"attacked_base": ("pgd_ce", "pgd_dlr")}``).
    The models are used in their current mode (zoo models are in eval mode).  Each row is the suite
    :func:`tradeoff_suite` run by :func:`runner.run`; with ``use_cache`` each attack's per-image outcome is read
    from (or written to) :mod:`adasmooth.attack_cache`, keyed by both models' weights, the option, α, the attack
    with every parameter, and the images it attacked (only attacks named from ``ATTACKS``: ``extra_attacks`` and
    ``reference`` are callables the cache cannot key); the row then says ``cached`` and keeps the ``seconds``
    its computation took.  ``alpha_keys`` maps an α that a calibration chose to what the calibration read
    (:func:`attack_cache.calibrated`), its key in the cache.
    """
    options, subsets = _check_tradeoff(x, y, alphas, options, norm=norm, apgd_iter=apgd_iter, attacks=attacks,
                                       extra_attacks=extra_attacks, reference=reference, subsets=subsets,
                                       use_cache=use_cache)
    dev = _device(g, device)
    x, y = x.to(dev), y.to(dev)
    common = dict(eps=eps, steps=steps, norm=norm, step_size=step_size, random_start=random_start, seed=seed,
                  batch_size=batch_size)
    apgd = dict(eps=eps, norm=norm, n_iter=apgd_iter, seed=seed, batch_size=batch_size)
    suite = tradeoff_suite(g, h, x, y, attacks, common, apgd, n_targets, extra_attacks)
    question = _cache_question(g, h, common, apgd, n_targets) if use_cache else None
    reference = dict(reference or {})
    rows = []
    grid = [(o, float(a)) for o in options for a in alphas]
    for oname, a in progress_bar(grid, progress=progress, desc="trade-off"):
        spec = get_mixer(oname)
        mix = spec.build(g, h, a, norm=norm)
        row_question = question and {**question, "option": oname, "alpha": (alpha_keys or {}).get(a, a)}
        res = run(mix, x, y, suite(mix), question=row_question, label=f"{oname} α={a:.4g}", use_cache=use_cache,
                  batch_size=batch_size)
        row = _accuracy_row(oname, spec, a, len(x), res, subsets)
        seconds = res.seconds
        if reference:
            seconds += _add_reference(row, mix, x, y, reference, res.correct, batch_size, dev)
        row["seconds"] = round(seconds, 2)
        if use_cache:
            row["cached"] = res.cached
        log.info("%s α=%.3g: clean %.2f %%, attacked %.2f %%%s", oname, a, 100 * row["clean"], 100 * row["attacked"],
                 " (cached)" if res.cached else "")
        rows.append(row)
    return rows


def _check_tradeoff(x, y, alphas, options, *, norm, apgd_iter, attacks, extra_attacks, reference, subsets,
                    use_cache) -> tuple[list, dict]:
    """:func:`tradeoff_curve`'s arguments checked; returns the options as a list and the subsets as a dict."""
    _check_xy(x, y)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not alphas:
        raise ValueError("alphas must hold at least one α in [0, 1]")
    for a in alphas:
        check_alpha(a, "alphas")
    options = [options] if isinstance(options, str) else list(options)
    if not options or any(not isinstance(o, str) or o not in OPTIONS for o in options):
        raise ValueError(f"options must name one or more of {tuple(OPTIONS)}, got {options!r}")
    if not isinstance(apgd_iter, int) or apgd_iter < 1:
        raise ValueError(f"apgd_iter must be an int >= 1, got {apgd_iter!r}")
    bad = [a for a in attacks if a not in ATTACKS]
    if bad:
        raise ValueError(f"attacks must be drawn from {ATTACKS}, got {bad}")
    names = [*attacks, *(extra_attacks or {})]
    subsets = dict(subsets or {})
    for sname, members in subsets.items():
        if not members or any(m not in names for m in members):
            raise ValueError(f"subsets[{sname!r}] must name attacks among {names}, got {members!r}")
    if use_cache and (extra_attacks or reference):
        raise ValueError("use_cache=True needs attacks named from ATTACKS only: extra_attacks and reference are "
                         "callables the attack cache cannot key")
    return options, subsets


def _accuracy_row(oname: str, spec, a: float, n: int, res: Run, subsets: dict) -> dict:
    """A trade-off row's accuracies: clean, worst case, per attack and per subset of attacks."""
    row = {"option": oname, "space": spec.space, "R": spec.R, "alpha": a, "n": n,
           "clean": _fraction(res.clean), "attacked": _fraction(res.correct),
           **{k: _fraction(v) for k, v in res.masks.items()}}
    for sname, members in subsets.items():
        ok = torch.stack([res.clean, *(res.masks[m] for m in members)]).all(0)
        row[sname] = _fraction(ok)
    return row


def _add_reference(row: dict, mix, x, y, reference: Mapping, correct, batch_size: int, dev) -> float:
    """The ``reference`` attacks' columns and ``attacked_all`` added to ``row``; returns their seconds."""
    t0 = time.perf_counter()
    ref = robust_accuracy(mix, x, y, reference, batch_size=batch_size, device=dev)
    row.update(ref.per_attack)
    row["attacked_all"] = _fraction(correct & ref.correct)
    return time.perf_counter() - t0


def tradeoff_suite(g, h, x, y, attacks, common: dict, apgd: dict, n_targets: int, extra_attacks=None) -> Callable:
    """``suite(mix) -> [runner.Attack]``: the trade-off set on (x, y) for a mixture of g and h.  Every attack runs
    on every image (its column: the attack alone) but APGD-CE / APGD-T, which run last on the images all others
    left correct (as AutoAttack does); the transfers are crafted once on g or h alone (on the first mixture whose
    answer is not cached) and reused for every mixture.  ``extra_attacks``: ``attack(model, x, y) -> x_adv`` or
    examples precomputed for x."""
    crafted: dict[str, torch.Tensor] = {}

    def transfer(name):
        def fn(xs, ys):
            if name not in crafted:
                t0 = time.perf_counter()
                crafted[name] = pgd(g if name == "transfer_g" else h, x, y, loss="ce", **common)
                log.info("%s crafted in %.1f s", name, time.perf_counter() - t0)
            return crafted[name]
        return fn

    direct = {"pgd_ce": partial(pgd, loss="ce", **common), "pgd_dlr": partial(pgd, loss="dlr", **common),
              "pgd_margin": partial(pgd, loss="margin", **common),
              "pgd_t": partial(pgd_targeted, n_targets=n_targets, loss="dlr", **common),
              "apgd_ce": partial(autoattack, attacks=("apgd-ce",), **apgd),
              "apgd_t": partial(apgd_targeted, n_targets=n_targets, **apgd)}

    def suite(mix) -> list[Attack]:
        def bound(a):
            return (lambda xs, ys: a) if torch.is_tensor(a) else (lambda xs, ys: a(mix, xs, ys))
        named = [Attack(n, transfer(n) if n.startswith("transfer_") else bound(direct[n]),
                        on="survivors" if n in CASCADED else "all") for n in attacks]
        extra = [Attack(n, bound(a), on="all") for n, a in (extra_attacks or {}).items()]
        return ([a for a in named if a.on == "all"] + extra + [a for a in named if a.on == "survivors"])
    return suite


def _cache_question(g, h, common: dict, apgd: dict, n_targets: int) -> dict:
    for name, m in (("g", g), ("h", h)):
        if not hasattr(m, "state_dict"):
            raise ValueError(f"use_cache=True needs {name} to be a torch module (its weights are the cache key)")
    return {"what": "evaluate.tradeoff_curve", "g": fingerprint(g, extra=repr(g)), "h": fingerprint(h, extra=repr(h)),
            "pgd": common, "apgd": apgd, "n_targets": n_targets}


def autoattack_reference(*, eps: float, norm: str = "linf", attacks=("apgd-ce", "apgd-t"), seed: int = 0,
                         **kw) -> Callable:
    """An attack callable running :func:`adasmooth.attacks.autoattack` (for ``tradeoff_curve(reference=...)``)."""
    return partial(autoattack, eps=eps, norm=norm, attacks=tuple(attacks), seed=seed, **kw)


def save_curve(rows: list[dict], path: str | Path, meta: dict | None = None) -> tuple[Path, Path]:
    """Write ``rows`` to ``<path>.json`` (with ``meta``) and ``<path>.csv``, atomically; return both paths."""
    if not rows:
        raise ValueError("rows must hold at least one row")
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix in (".json", ".csv") else stem
    jpath, cpath = stem.parent / (stem.name + ".json"), stem.parent / (stem.name + ".csv")
    checkpoint.atomic_write_json(jpath, {"rows": rows, "meta": meta or {}})
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    checkpoint.atomic_write_bytes(cpath, buf.getvalue().encode())
    return jpath, cpath


def load_curve(path: str | Path) -> list[dict]:
    """The rows saved by :func:`save_curve` (from the JSON file)."""
    p = Path(path)
    p = p if p.suffix == ".json" else p.parent / (p.with_suffix("").name + ".json")
    return json.loads(p.read_text())["rows"]


def plot_tradeoff(rows: list[dict], ax=None, *, y_key: str = "attacked", annotate: bool = True,
                  title: str | None = None, intervals: bool = True):
    """Draw attacked accuracy (``y_key``) against clean accuracy, one line per option, points in α order;
    with ``intervals`` and rows that record their number of images ``n``, each point gets 95 %
    Clopper-Pearson error bars on both axes (:func:`adasmooth.verdicts.accuracy`).  Return the matplotlib
    Figure (a new one unless ``ax`` is given)."""
    from .statistics import accuracy

    if not rows:
        raise ValueError("rows must hold at least one row")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.5, 4.2), layout="constrained")
        ax = fig.subplots()
    for opt in dict.fromkeys(r["option"] for r in rows):
        rs = sorted((r for r in rows if r["option"] == opt), key=lambda r: r["alpha"])
        cx, cy = [100 * r["clean"] for r in rs], [100 * r[y_key] for r in rs]
        line, = ax.plot(cx, cy, marker="o", label=LABELS.get(opt, opt))
        if intervals and all(r.get("n") for r in rs):
            def err(key):
                a = [accuracy(r[key], r["n"]) for r in rs]
                return [[100 * (p.acc - p.low) for p in a], [100 * (p.high - p.acc) for p in a]]

            ax.errorbar(cx, cy, xerr=err("clean"), yerr=err(y_key), fmt="none", ecolor=line.get_color(), alpha=0.5,
                        capsize=2, lw=0.8)
        if annotate:
            for r, u, v in zip(rs, cx, cy):
                ax.annotate(f"{r['alpha']:g}", (u, v), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"{'attacked' if y_key == 'attacked' else y_key} accuracy (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure


# ---- the metrics a zoo checkpoint records -------------------------------------------------------
@torch.no_grad()
def _accuracy_under_noise(model, x, y, device, bs=1000, noise_sigma=0.0, seed=0):
    correct = 0
    g = torch.Generator(device=device).manual_seed(seed)
    for sl in batches(len(x), bs):
        xb = x[sl].to(device)
        if noise_sigma:
            xb = xb + noise_sigma * torch.randn(xb.shape, generator=g, device=device)
        correct += (model_output(model, xb).argmax(1) == y[sl].to(device)).sum().item()
    return correct / len(x)


def checkpoint_metrics(model, dataset: str, cfg: dict, *, device=None, progress=False) -> dict:
    """Metrics recorded in a zoo checkpoint (``cfg`` is the recipe's :meth:`zoo.Recipe.config`): clean
    accuracy; PGD accuracy (ε of the recipe, no restarts) for adversarially trained models; accuracy
    under N(0, σ²) noise for Gaussian ones.  On ``cfg["eval_n"]`` class-balanced test images (all when None)."""
    device = get_device(device)
    model.eval()
    x, y = data.load(dataset, "test")
    if cfg["eval_n"]:
        idx = data.balanced_subset(y, cfg["eval_n"] // data.info(dataset)["num_classes"])
        x, y = x[idx], y[idx]
    tr = cfg["train"]
    out = {"clean": _accuracy_under_noise(model, x, y, device), "n_eval": len(x)}
    if tr["recipe"] in ("pgd", "trades"):
        steps = cfg["eval_attack_steps"]
        hits = 0
        for sl in batches(len(x), 500):
            xb, yb = x[sl].to(device), y[sl].to(device)
            adv = pgd(model, xb, yb, eps=tr["eps"], steps=steps, norm=tr["norm"], seed=0)
            with torch.no_grad():
                hits += (model_output(model, adv).argmax(1) == yb).sum().item()
        out["robust"] = hits / len(x)
        out["robust_attack"] = f"PGD-{steps} {tr['norm']} eps={tr['eps']:g}"
    if tr["recipe"] == "gaussian":
        out["noisy"] = _accuracy_under_noise(model, x, y, device, noise_sigma=tr["sigma"])
    return out
