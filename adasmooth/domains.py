"""The allowed values (domains) of the numbered notebooks' parameters: the constructors the declarations of
:mod:`adasmooth.parameters` use.

A domain is a check of one value (given the notebook's other parameters, e.g. its ``dataset``) and the
text saying what is allowed.  Types are checked first (``pipeline.check_parameters``); a ``None`` that the type
allows is never checked against the domain.  The checks themselves (one ``ValueError`` naming the notebook and
every parameter out of its domain) are :func:`adasmooth.parameters.check` and ``check_notebook``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import data, learned, resolve, zoo
from .adaptive import MixingConfig
from .evaluate import ATTACKS
from .mixing import OPTIONS
from .train import TrainConfig


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


def dataset() -> Domain:
    return choices(*data.DATASETS)


def model() -> Domain:
    """A model spec whose zoo model (if it is one) is of the notebook's dataset."""
    def ok(v, p):
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


def keys_of(allowed: Callable[[], list], what: str) -> Domain:
    return Domain(lambda v, p: isinstance(v, dict) and set(v) <= set(allowed()),
                  f"a dict whose keys are {what}")


def zoo_keys():
    from dataclasses import fields

    return [f.name for f in fields(TrainConfig)] + ["eval_n"]


def mix_keys():
    from dataclasses import fields

    return [f.name for f in fields(MixingConfig)]


def learned_names():
    return list(learned.RECIPES)


def device() -> Domain:
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


def attacks() -> Domain:
    return each(choices(*ATTACKS))


def options() -> Domain:
    return each(choices(*OPTIONS))


ANY_PATH = Domain(lambda v, p: isinstance(v, str) and v != "", "a folder path")
ANY_BOOL = Domain(lambda v, p: isinstance(v, bool), "True or False")
POSITIVE = interval(0, lo_open=True)
NON_NEGATIVE = interval(0)
PROB = interval(0, 1)
COUNT = interval(1, integer=True)
ALPHA = interval(0, 1)


def radius(norm: str | None = None) -> Domain:
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


def square_subset(limit: str) -> Domain:
    """Square's images: 0 or a positive multiple of the class count, at most parameter ``limit``."""
    return Domain(lambda v, p: multiple_of_classes(zero=True).ok(v, p) and v <= p.get(limit, v),
                  f"0 or a positive multiple of the class count {{k}}, at most {limit}")


def at_most(limit: str) -> Domain:
    """A number 0 <= x <= parameter ``limit``."""
    return Domain(lambda v, p: NON_NEGATIVE.ok(v, p) and v <= p.get(limit, v), f"a number 0 <= x <= {limit}")


def int_up_to(limit: str) -> Domain:
    """An int in [1, parameter ``limit``]."""
    return Domain(lambda v, p: _int(v) and 1 <= v <= p.get(limit, v), f"an int in [1, {limit}]")


def item_of(names: str) -> Domain:
    """One of the items of list parameter ``names``."""
    return Domain(lambda v, p: v in p.get(names, []), f"one of {names}")


def learned_mixer(text: str = "a learned mixer name") -> Domain:
    return Domain(lambda v, p: v in learned_names(), text)


def existing_file(text: str) -> Domain:
    return Domain(lambda v, p: isinstance(v, str) and Path(v).is_file(), text)


def step_ladder() -> Domain:
    """Increasing PGD step counts (the attack-budget ladder)."""
    return Domain(lambda v, p: isinstance(v, list) and all(_int(s) and s >= 1 for s in v) and v == sorted(set(v)),
                  "increasing PGD step counts >= 1 ([]: no ladder)")


def ladder_budgets() -> Domain:
    """Per ladder mixer, the budgets of ``budget_ladder`` it climbs (increasing, non-empty)."""
    return Domain(lambda v, p: isinstance(v, dict) and all(
        k in p.get("ladder_mixers", []) and isinstance(b, list) and b and b == sorted(set(b))
        and all(s in p.get("budget_ladder", []) for s in b) for k, b in v.items()),
        "a dict {ladder mixer: increasing budgets of budget_ladder}")


def nuts_grid() -> Domain:
    """MixedNUTS's fit grid: ``{'s': [...], 'p': [...], 'c': [...]}``."""
    return Domain(lambda v, p: isinstance(v, dict) and set(v) == {"s", "p", "c"}
                  and all(each(POSITIVE).ok(v[n], p) for n in ("s", "p")) and each(interval()).ok(v["c"], p),
                  "a dict {'s': [...], 'p': [...], 'c': [...]}: non-empty lists, s and p > 0 (or None)")
