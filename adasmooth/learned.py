"""Shipped learned mixers: the headline adaptive model ``fmnist-adaptive`` and its lever variants.

A learned mixer is a mixing network α_θ trained for a pair of zoo models (``adaptive.MixingConfig``)
plus an evaluation head chosen on the held-out validation split (``data.load(..., "val")``), never
on test images:

- ``shift``: the Sigmoid input's shift at which h^{α_θ} has the target clean validation accuracy,
  with α_θ in its full (0, 1) range (the supplement's Tables SM2/SM3 rule);
- ``alpha_range``: the supplement's evaluation range (α_min, α_min + width), width 0.1-0.15, with
  α_min set so that the clean validation accuracy is the same target (the shift stays as above).

The target clean accuracy is acc_val(h) + ``target_position``·(acc_val(g) - acc_val(h)).  The head
(scale, shift, range, the validation accuracies) is written beside the network as
``<zoo>/<name>.json``; ``get(name)`` (also ``zoo.get(name)``) returns the ready-to-evaluate
``AdaptiveMixedClassifier`` with ``metadata``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint, data, zoo
from .adaptive import MixingConfig, alpha_min_from_parts, get_mixing_network, mixture_parts
from .calibration import bisect_to_accuracy
from .mixing import mix_log_probs
from .mixing_net import head
from .runtime import get_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnedRecipe:
    """A learned mixer: base models, the mixing network's training config, the head rule."""

    name: str
    g: str
    h: str
    mixing: dict
    target_position: float = 0.5
    range_width: float = 0.15
    clamp: bool = False           # evaluate with the range (True) or the full (0, 1) range
    description: str = ""


# The supplement's scale: one epoch over the training set (less the validation slice: 429 steps of 128
# clean + 128 attacked images), training attacks of round(χ²(20)) steps with momentum U(0, 0.9).
HEADLINE_MIX = dict(eps=0.1, norm="linf", epochs=1, batch_size=128, c_ce=0.0, c_bce=1.5, c_prod=0.2, width=64,
                    steps_df=20, momentum_max=0.9, seed=0)

RECIPES: dict[str, LearnedRecipe] = {}


def register(r: LearnedRecipe) -> LearnedRecipe:
    """Add a learned mixer's recipe (``zoo.get(r.name)``, ``zoo train`` and notebook 04's ``headline_mixers``
    then know it); returns it."""
    if r.name in RECIPES:
        raise ValueError(f"learned mixer {r.name!r} is already registered")
    RECIPES[r.name] = r
    zoo.provide(r.name, lambda **kw: get(r.name, **kw))
    return r



register(LearnedRecipe("fmnist-adaptive", "fmnist-standard", "fmnist-linf-at", HEADLINE_MIX,
                   description="headline α_θ: supplement-scale training (1 epoch, χ²(20)-step attacks, momentum)"))
register(LearnedRecipe("fmnist-adaptive-clamped", "fmnist-standard", "fmnist-linf-at", HEADLINE_MIX, clamp=True,
                   description="the headline α_θ evaluated in its validation-chosen range (α_min, α_min + 0.15)"))
register(LearnedRecipe("fmnist-adaptive-diverse", "fmnist-standard", "fmnist-linf-at",
                   dict(HEADLINE_MIX, attack_losses=("ce", "margin", "dlr")),
                   description="lever: training attacks draw CE, margin or DLR per step"))
register(LearnedRecipe("fmnist-adaptive-sixteenth", "fmnist-standard", "fmnist-linf-at",
                   dict(HEADLINE_MIX, train_subset=3456),
                   description="lever: a sixteenth of the epoch (27 steps; the Table SM2 cell c_CE 0, c_prod 0.2)"))

# The training-budget curve (issue 30): the headline recipe on a class-balanced share of the fit split, one epoch over
# it, so that its warm-up and cosine schedule span the shorter run (26, 53, 107, 215 and 429 steps recorded: the
# class-balanced share and the last partial batch dropped).  A description is part of a shipped head and so of its
# attack-cache key: the shipped ones keep the step counts they were written with (27, 54, 108, 216).
BUDGET_SHARES = {"sixteenth": 3456, "eighth": 6912, "quarter": 13824, "half": 27648}
for _share, _n in list(BUDGET_SHARES.items())[1:]:
    register(LearnedRecipe(f"fmnist-adaptive-{_share}", "fmnist-standard", "fmnist-linf-at",
                           dict(HEADLINE_MIX, train_subset=_n),
                           description=f"training budget: the headline recipe on {_n} images ({_n // 128} steps)"))


def recipe(name: str) -> LearnedRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown learned mixer {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


def mixing_config(name: str, mixing_overrides: dict | None = None):
    """The recipe's ``MixingConfig`` (``mixing_overrides``: tiny test variants)."""
    return MixingConfig(**{**recipe(name).mixing, **(mixing_overrides or {})})


def head_path(name: str, root=None, base_overrides=None, mixing_overrides=None) -> Path:
    """``<zoo>/<name>.json``, or ``<name>-<hash of the overrides>.json`` for a variant."""
    tag = ""
    if base_overrides or mixing_overrides:
        tag = "-" + checkpoint.config_hash({"base": base_overrides or {}, "mixing": mixing_overrides or {}})
    return zoo.cache_dir(root) / f"{name}{tag}.json"


def train(name: str, *, root=None, base_overrides=None, mixing_overrides=None, device=None,
          progress: bool = False):
    """Train (or load) the recipe's mixing network and choose its head on the validation split."""
    r = recipe(name)
    model = get_mixing_network(r.g, r.h, mixing_config(name, mixing_overrides), train_if_missing=True, root=root,
                               base_overrides=base_overrides, device=device, progress=progress)
    head = choose_head(model, r, device=device)
    head.update({"name": name, "kind": "learned-mixer", "g": r.g, "h": r.h,
                 "mixing_checkpoint": model.metadata["name"], "mixing_sha256": model.metadata["sha256"],
                 "description": r.description})
    checkpoint.atomic_write_json(head_path(name, root, base_overrides, mixing_overrides), head)
    return get(name, root=root, base_overrides=base_overrides, mixing_overrides=mixing_overrides, device=device)


def choose_head(model, r: LearnedRecipe, *, device=None) -> dict:
    """Shift and evaluation range of ``model`` from the validation split (see the module docstring)."""

    device = get_device(device)
    t0 = time.perf_counter()
    x, y = data.load(zoo.recipe(r.g).dataset, "val")
    y = y.to(device)
    model = model.to(device).eval()
    lg, lh, z = mixture_parts(model, x, device)
    acc_g = (lg.argmax(1) == y).double().mean().item()
    acc_h = (lh.argmax(1) == y).double().mean().item()
    target = acc_h + r.target_position * (acc_g - acc_h)
    scale = float(model.net.scale)

    def acc(alpha):
        return (mix_log_probs(lg, lh, alpha).argmax(1) == y).double().mean().item()

    span = 60.0 + scale * float(z.abs().max())
    tol = 1.0 / len(y)
    shift = bisect_to_accuracy(lambda s: acc(head(z, scale, s)), -span, span, target, tol, len(y), 200,
                    "the head's shift (validation)", "α in (0, 1)")
    sig = head(z, scale, shift.value)
    w = r.range_width
    amin = alpha_min_from_parts(lg, lh, sig, y, target, w, tol, "α_min (validation)")
    const = bisect_to_accuracy(acc, 0.0, 1.0, target, tol, len(y), 200, "constant α (validation)", "α = 0 .. 1")
    return {"scale": scale, "shift": shift.value, "alpha_min": amin.value, "alpha_max": amin.value + w,
            "clamp": r.clamp, "range_width": w, "target_position": r.target_position,
            "val": {"n": len(y), "acc_g": acc_g, "acc_h": acc_h, "target": target, "acc_shift": shift.accuracy,
                    "acc_range": amin.accuracy, "constant_alpha": const.value, "acc_constant": const.accuracy},
            "chosen_on": "validation split (data.load(dataset, 'val')), never test images",
            "seconds": round(time.perf_counter() - t0, 1)}


def get(name: str, *, root=None, base_overrides=None, mixing_overrides=None, device=None):
    """The ready-to-evaluate ``AdaptiveMixedClassifier`` of learned mixer ``name`` (head applied)."""
    r = recipe(name)
    p = head_path(name, root, base_overrides, mixing_overrides)
    if not p.exists():
        raise checkpoint.CheckpointError(
            f"learned mixer {name!r} has no head file {p}; restore it (git checkout -- {p}) or train it with: "
            f"python -m adasmooth zoo train {name}")
    import json

    head = json.loads(p.read_text())
    model = get_mixing_network(r.g, r.h, mixing_config(name, mixing_overrides), train_if_missing=False, root=root,
                               base_overrides=base_overrides, device=device)
    if model.metadata["sha256"] != head["mixing_sha256"]:
        raise checkpoint.CheckpointError(f"{p} was chosen for another mixing network "
                                         f"({head['mixing_sha256'][:12]}..., cached {model.metadata['sha256'][:12]}...)")
    model.net.set_head(scale=head["scale"], shift=head["shift"])
    if r.clamp:
        model.net.set_alpha_range(head["alpha_min"], head["alpha_max"])
    model.metadata = {**model.metadata, "head": head, "learned_mixer": name}
    return model


def training_curves(names, *, root=None, base_overrides=None, mixing_overrides=None) -> dict:
    """``{name: curve}``: the training curve each learned mixer's network recorded
    (``adaptive.training_curve``; None for a network trained before curves were recorded)."""
    out = {}
    for name in names:
        r = recipe(name)
        model = get_mixing_network(r.g, r.h, mixing_config(name, mixing_overrides), train_if_missing=False,
                                   root=root, base_overrides=base_overrides, device="cpu")
        out[name] = model.metadata.get("curve")
    return out


def table_network(g: str, h: str, *, eps: float, norm: str, epochs: int, batch_size: int, c_ce: float,
                  c_bce: float, c_prod: float, n_train: int | None, steps_df: int, width: int, momentum: float,
                  seed: int, root=None, base_overrides=None, train_if_missing: bool = True, device=None,
                  progress: bool = False):
    """The mixing network of one cell of Tables SM2/SM3 (notebooks 05 and 06): loaded from the zoo cache,
    or trained there when missing and ``train_if_missing``."""
    cfg = MixingConfig(eps=eps, norm=norm, epochs=epochs, batch_size=batch_size, c_ce=c_ce, c_bce=c_bce,
                       c_prod=c_prod, train_subset=n_train, steps_df=steps_df, width=width, momentum_max=momentum,
                       seed=seed)
    return get_mixing_network(g, h, cfg, train_if_missing=train_if_missing, root=root,
                              base_overrides=base_overrides, device=device, progress=progress)


def get_or_train(name: str, *, train_if_missing: bool = False, root=None, base_overrides=None,
                 mixing_overrides=None, device=None, progress: bool = False):
    """:func:`get`, or, when its head file is missing and ``train_if_missing``, :func:`train`."""
    if head_path(name, root, base_overrides, mixing_overrides).exists() or not train_if_missing:
        return get(name, root=root, base_overrides=base_overrides, mixing_overrides=mixing_overrides, device=device)
    return train(name, root=root, base_overrides=base_overrides, mixing_overrides=mixing_overrides, device=device,
                 progress=progress)
