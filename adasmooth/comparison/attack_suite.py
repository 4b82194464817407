"""The attack set of the comparison and its :class:`Budget`: PGD through α_θ and detached, transfers,
softened surrogates, detector evasion, APGD-CE/APGD-T and Square; the constant α gets those that apply."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..attacks import autoattack, pgd
from ..mixing import MixedClassifier
from ..runtime import batches


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

    @classmethod
    def of(cls, params) -> "Budget":
        """The budget a notebook's parameters name (``eps``, ``norm``, ``steps``, ``apgd_iter``, ``square_queries``,
        ``square_n``, ``seed`` and ``attack_batch_size``; a mapping)."""
        return cls(eps=params["eps"], norm=params["norm"], steps=params["steps"], apgd_iter=params["apgd_iter"],
                   square_queries=params["square_queries"], square_n=params["square_n"], seed=params["seed"],
                   batch_size=params["attack_batch_size"])

    def caption(self, n: int) -> str:
        """The caption line of a figure attacked with this budget's full set on ``n`` images."""
        from ..results import caption

        full_set = (f"the full attack set (comparison.attack_set), Square ({self.square_queries} queries) on "
                    f"{self.square_n} of the images")
        return caption(n=n, eps=self.eps, norm=self.norm, attacks=full_set)


def _with_alpha_term(model, base: str, w: float, threat: str, budget: Budget, **kw):
    from ..adaptive import attack_adaptive

    def attack(x, y):
        return attack_adaptive(model, x, y, threat=threat, eps=budget.eps, steps=budget.steps, norm=budget.norm,
                               loss=base, alpha_weight=w, seed=budget.seed, batch_size=budget.batch_size, **kw)
    return attack


def _surrogate(model, base: str, surrogate_scale: float, budget: Budget):
    from ..adaptive import attack_adaptive, softened_head

    def attack(x, y):
        with softened_head(model.net, surrogate_scale):
            return attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=budget.steps, norm=budget.norm,
                                   loss=base, alpha_weight=0.2, seed=budget.seed, batch_size=budget.batch_size)
    return attack


def _two_phase(model, budget: Budget):
    """Detector evasion: half the steps push α_θ toward g only (w = 1), the rest attack the mixture (CE,
    w = 0) from that point, inside the same ε-ball."""
    from ..adaptive import attack_adaptive

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
