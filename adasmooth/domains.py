"""The allowed values (domains) of the numbered notebooks' parameters, checked before any kernel starts.

A domain is a check of one value (given the notebook's other parameters, e.g. its ``dataset``) and the
text saying what is allowed.  ``DOMAINS`` holds one per parameter name; ``PER_NOTEBOOK[stem]`` replaces
those a notebook uses differently.  Types are checked first (``pipeline.check_parameters``); a ``None``
that the type allows is never checked against the domain.  ``check`` raises one ``ValueError`` naming the
notebook, every parameter out of its domain, its value and what is allowed; the notebooks call
``check_notebook`` in their first cell, so papermill runs by hand hit the same check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Domain:
    """``ok(value, params) -> bool`` and the text of what is allowed (``{k}``: the class count)."""

    ok: Callable
    text: str


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def classes(params: dict) -> int:
    """The class count of the notebook's ``dataset`` (10 when it is unknown)."""
    from . import data

    ds = params.get("dataset", "fashion-mnist")
    return data.DATASETS[ds][3] if ds in data.DATASETS else 10


def interval(lo=-math.inf, hi=math.inf, *, lo_open=False, hi_open=False, integer=False) -> Domain:
    """A number (an int when ``integer``) in the interval."""
    def ok(v, p):
        if not (_int(v) if integer else _num(v)):
            return False
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    what = "an int" if integer else "a finite number"
    lo_op, hi_op = ("<" if lo_open else "<="), ("<" if hi_open else "<=")
    if lo != -math.inf and hi != math.inf:
        return Domain(ok, f"{what} {lo:g} {lo_op} x {hi_op} {hi:g}")
    if lo != -math.inf:
        return Domain(ok, f"{what} {'>' if lo_open else '>='} {lo:g}")
    return Domain(ok, f"{what} {hi_op} {hi:g}" if hi != math.inf else what)


def choices(*values) -> Domain:
    return Domain(lambda v, p: v in values, "one of " + ", ".join(repr(x) for x in values))


def each(d: Domain, *, empty: bool = False) -> Domain:
    """A list whose every item is in ``d`` (non-empty unless ``empty``)."""
    return Domain(lambda v, p: isinstance(v, list) and (empty or len(v) > 0) and all(d.ok(x, p) for x in v),
                  f"a {'' if empty else 'non-empty '}list, each item {d.text}")


def number_or_each(d: Domain) -> Domain:
    return Domain(lambda v, p: d.ok(v, p) or (isinstance(v, list) and len(v) > 0 and all(d.ok(x, p) for x in v)),
                  f"{d.text}, or a non-empty list of them")


def multiple_of_classes(zero: bool = False) -> Domain:
    """A positive multiple of the dataset's class count (the images are class-balanced)."""
    def ok(v, p):
        return _int(v) and (v == 0 and zero or v > 0 and v % classes(p) == 0)
    return Domain(ok, f"{'0 or ' if zero else ''}a positive multiple of the class count {{k}} "
                      "(class-balanced images)")


def at_least_classes() -> Domain:
    return Domain(lambda v, p: _int(v) and v >= classes(p),
                  "an int >= the class count {k} (rounded down to a multiple of it: class-balanced images)")


def _dataset() -> Domain:
    from . import data

    return choices(*data.DATASETS)


def _model() -> Domain:
    """A model spec whose zoo model (if it is one) is of the notebook's dataset."""
    def ok(v, p):
        from . import resolve, zoo

        try:
            k = resolve.kind(v)
        except ValueError:
            return False
        if k == "file":
            return Path(v.rsplit(":", 1)[0]).is_file()
        if k == "robustbench":
            from . import robustbench_zoo

            return robustbench_zoo.DATASETS[robustbench_zoo.parse(v)["dataset"]] == p.get("dataset", "fashion-mnist")
        return k != "zoo" or zoo.recipe(v).dataset == p.get("dataset", "fashion-mnist")
    return Domain(ok, "a zoo model of the notebook's dataset, 'package.module:factory', "
                      "'path/to/file.py:factory' naming an existing file or "
                      "'robustbench:<dataset>/<threat>/<name>' of the notebook's dataset")


def _keys(allowed: Callable[[], list], what: str) -> Domain:
    return Domain(lambda v, p: isinstance(v, dict) and set(v) <= set(allowed()),
                  f"a dict whose keys are {what}")


def _zoo_keys():
    from dataclasses import fields

    from .train import TrainConfig

    return [f.name for f in fields(TrainConfig)] + ["eval_n"]


def _mix_keys():
    from dataclasses import fields

    from .adaptive import MixingConfig

    return [f.name for f in fields(MixingConfig)]


def _learned_names():
    from . import learned

    return list(learned.RECIPES)


def _device() -> Domain:
    def ok(v, p):
        import torch

        if v == "auto":
            return True
        try:
            dev = torch.device(v)
        except (RuntimeError, TypeError):
            return False
        return dev.type == "cpu" or dev.type == "cuda" and torch.cuda.is_available() and \
            (dev.index is None or dev.index < torch.cuda.device_count())
    return Domain(ok, "'cpu', 'auto' or a CUDA device this machine has (None: CUDA when available)")


def _attacks() -> Domain:
    from .evaluate import ATTACKS

    return each(choices(*ATTACKS))


def _options() -> Domain:
    from .mixing import OPTIONS

    return each(choices(*OPTIONS))


ANY_PATH = Domain(lambda v, p: isinstance(v, str) and v != "", "a folder path")
ANY_BOOL = Domain(lambda v, p: isinstance(v, bool), "True or False")
POSITIVE = interval(0, lo_open=True)
NON_NEGATIVE = interval(0)
PROB = interval(0, 1)
COUNT = interval(1, integer=True)
ALPHA = interval(0, 1)


def _radius(norm: str | None = None) -> Domain:
    """An attack radius for images in [0, 1]: ℓ∞ ε in (0, 1]; ℓ2 ε in (0, the image's diameter √(C·H·W)]
    (``norm`` None: the notebook's ``norm`` parameter)."""
    def bound(p):
        which = norm or p.get("norm", "linf")
        if which == "linf":
            return 1.0
        try:
            from .data import info

            d = info(p.get("dataset", "fashion-mnist"))
            return math.sqrt(d["channels"] * d["side"] ** 2)
        except ValueError:
            return math.inf

    return Domain(lambda v, p: _num(v) and 0 < v <= bound(p),
                  "a radius in (0, 1] for ℓ∞, in (0, √(C·H·W)] (the image's diameter) for ℓ2")


def _lazy() -> tuple[dict, dict]:
    models = {n: _model() for n in ("g", "h", "h_linf", "g_sm2a", "h_trades", "h_l2", "baseline")}
    common = {
        **models,
        "dataset": _dataset(), "norm": choices("linf", "l2"), "space": choices("prob", "logit"),
        "eps": _radius(), "eps_linf": _radius("linf"), "eps_l2": _radius("l2"), "step_size_sm2a": POSITIVE,
        "step_size_sm2b": POSITIVE,
        "steps": COUNT, "steps_fig1": COUNT, "steps_sm2": COUNT, "batch_size": COUNT, "attack_batch_size": COUNT, "epochs": COUNT,
        "n_eval": multiple_of_classes(), "headline_n": multiple_of_classes(),
        "square_n": Domain(lambda v, p: multiple_of_classes(zero=True).ok(v, p) and v <= p.get("headline_n", v),
                           "0 or a positive multiple of the class count {k}, at most headline_n"),
        "n_train": at_least_classes(),
        "alphas": each(ALPHA), "draw_alphas": each(ALPHA), "alpha": ALPHA,
        "attacks": _attacks(), "options": _options(), "panels": each(choices("fig1", "sm2a", "sm2b")),
        "seed": interval(0, integer=True), "device": _device(),
        "progress": ANY_BOOL, "train_missing": ANY_BOOL, "headline": ANY_BOOL, "use_attack_cache": ANY_BOOL,
        "curve_endpoints": ANY_BOOL, "curve_positions": each(PROB, empty=True),
        "out_dir": ANY_PATH, "fig_dir": ANY_PATH, "zoo_root": ANY_PATH,
        "grid_from": Domain(lambda v, p: isinstance(v, str) and Path(v).is_file(),
                            "an existing results JSON of notebook 06 (None: compute the grid)"),
        "zoo_overrides": _keys(_zoo_keys, "zoo recipe fields (train.TrainConfig's and eval_n)"),
        "headline_mix_overrides": _keys(_mix_keys, "adaptive.MixingConfig fields"),
        "headline_mixers": each(Domain(lambda v, p: v in _learned_names(), "a learned mixer name"), empty=True),
        "budget_ladder": Domain(lambda v, p: isinstance(v, list) and all(_int(s) and s >= 1 for s in v)
                                and v == sorted(set(v)), "increasing PGD step counts >= 1 ([]: no ladder)"),
        "ladder_mixers": each(Domain(lambda v, p: v in p.get("headline_mixers", []), "one of headline_mixers"),
                              empty=True),
        "ladder_budgets": Domain(lambda v, p: isinstance(v, dict) and all(
            k in p.get("ladder_mixers", []) and isinstance(b, list) and b and b == sorted(set(b))
            and all(s in p.get("budget_ladder", []) for s in b) for k, b in v.items()),
            "a dict {ladder mixer: increasing budgets of budget_ladder}"),
        "ladder_shards": Domain(lambda v, p: _int(v) and 1 <= v <= p.get("headline_n", v),
                                "an int in [1, headline_n]"),
        "toy_sigma": POSITIVE, "sigma_h": POSITIVE, "sigma_baseline": POSITIVE,
        "n_points": COUNT, "n_perturb": COUNT, "lemma_trials": COUNT, "grid_side": interval(2, integer=True),
        "n_samples": interval(2, integer=True), "failure_prob": interval(0, 1, lo_open=True, hi_open=True),
        "r_max": POSITIVE, "radii_table": each(NON_NEGATIVE),
        "apgd_iter": interval(0, integer=True), "surrogate_scale": POSITIVE,
        "target_clean": interval(0, 1, lo_open=True), "target_position": PROB,
        "mix_batch_size": COUNT, "mix_steps_df": COUNT, "mix_width": COUNT,
        "mix_momentum": interval(0, 1, hi_open=True),
        "range_width": interval(0, 1, lo_open=True),
        "c_ce": number_or_each(NON_NEGATIVE), "c_bce": NON_NEGATIVE, "c_prod": number_or_each(NON_NEGATIVE),
        "c_sum": POSITIVE, "scales": each(POSITIVE), "square_queries": interval(0, integer=True),
    }
    per_notebook = {
        "04_loss_ablation": {
            "c_ce": each(Domain(lambda v, p: NON_NEGATIVE.ok(v, p) and v <= p.get("c_sum", v),
                                "a number 0 <= x <= c_sum")),
            "c_prod": each(NON_NEGATIVE),
        },
        "07_mixing_methods": {
            "learned_mixer": Domain(lambda v, p: v in _learned_names(), "a learned mixer name (or None)"),
            "ladder_shards": Domain(lambda v, p: _int(v) and 1 <= v <= p.get("n_eval", v), "an int in [1, n_eval]"),
            "curve_positions": each(PROB),
            "square_n": Domain(lambda v, p: multiple_of_classes(zero=True).ok(v, p) and v <= p.get("n_eval", v),
                               "0 or a positive multiple of the class count {k}, at most n_eval"),
            "nuts_percentile": interval(0, 100, lo_open=True, hi_open=True),
            "nuts_grid": Domain(lambda v, p: isinstance(v, dict) and set(v) == {"s", "p", "c"}
                                and all(each(POSITIVE).ok(v[n], p) for n in ("s", "p")) and each(interval()).ok(v["c"], p),
                                "a dict {'s': [...], 'p': [...], 'c': [...]}: non-empty lists, s and p > 0 (or None)"),
            "nuts_k": interval(2, integer=True), "nuts_n_fit": at_least_classes(), "nuts_fit_steps": COUNT,
            "nuts_smooth": POSITIVE,
        },
    }
    return common, per_notebook


_TABLES: list = []


def tables() -> tuple[dict, dict]:
    """``(DOMAINS, PER_NOTEBOOK)``, built on first use (they name the library's attacks, datasets, ...)."""
    if not _TABLES:
        _TABLES.extend(_lazy())
    return _TABLES[0], _TABLES[1]


def domain(stem: str, name: str) -> Domain | None:
    """The domain of parameter ``name`` of notebook ``stem`` (None: only its type is checked)."""
    common, per = tables()
    return per.get(stem, {}).get(name, common.get(name))


def problems(stem: str, params: dict, names=None) -> list[str]:
    """One line per parameter of ``params`` (those in ``names``, default all) outside its domain."""
    out = []
    for name in (params if names is None else names):
        d, v = domain(stem, name), params[name]
        if d is not None and v is not None and not d.ok(v, params):
            out.append(f"parameter {name!r} = {v!r} is not allowed: must be {d.text.format(k=classes(params))}")
    return out


def check(stem: str, params: dict, names=None) -> None:
    """``ValueError`` naming notebook ``stem`` and every parameter of ``params`` outside its domain."""
    bad = problems(stem, params, names)
    if bad:
        raise ValueError(f"{stem}: " + "; ".join(bad))


def check_notebook(stem: str, namespace: dict) -> None:
    """The check of a notebook's first cell: every parameter with a domain in ``namespace`` (its globals)."""
    common, per = tables()
    names = [n for n in namespace if n in common or n in per.get(stem, {})]
    check(stem, {n: namespace[n] for n in names}, names)
