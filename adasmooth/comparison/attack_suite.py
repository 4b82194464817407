"""The attack set of the comparison and its :class:`Budget`: PGD through α_θ and detached, transfers,
softened surrogates, detector evasion, APGD-CE/APGD-T and Square; the constant α gets those that apply.

Two families share the names of the attacks they have in common:

- ``base`` (the set of the 20-step headline): every PGD with the constant step 2.5·ε/steps; evasion with
  α-term weights ``evasion_weights``; the two-phase evasion attack with half the steps in each phase.
- ``strong`` (the budget ladder of :mod:`.convergence`): every PGD with a cosine step schedule; α-term
  weights up to 1; two-phase evasion with ``steps`` steps in each phase and a second phase that keeps an
  α-term (w ∈ ``PHASE_WEIGHTS``); targeted evasion toward each of the top-3 wrong classes; PGD through a
  straight-through (BPDA) Sigmoid; APGD with max(``apgd_iter``, ``steps``) iterations.  The evasion family
  runs first, so the cheaper attacks see only what it left.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..adaptive import attack_adaptive
from ..attacks import autoattack, pgd
from ..mixing import MixedClassifier
from ..mixing_net import straight_through
from ..runtime import batches
from ..tables import caption

FAMILIES = ("base", "strong")
STRONG_EVASION_WEIGHTS = (0.5, 0.8, 0.9, 0.95, 1.0)
PHASE_WEIGHTS = (0.0, 0.5, 0.95)   # the second phase's α-term weight in the strong two-phase attack
EVASION_TARGETS = 3                 # targeted evasion toward each of the top-3 wrong classes


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
    family: str = "base"

    def __post_init__(self):
        if self.eps <= 0 or self.steps < 1 or self.apgd_iter < 0 or self.square_queries < 0 or self.square_n < 0:
            raise ValueError(f"budget needs eps > 0, steps >= 1 and apgd_iter, square_queries, square_n >= 0: "
                             f"{self}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")

    @property
    def schedule(self) -> str:
        return "cosine" if self.family == "strong" else "constant"

    def key(self) -> dict:
        """The budget as it enters a cache key: every field, ``family`` only where it is not ``base`` (so the
        base family's keys are those it always had)."""
        d = asdict(self)
        if self.family == "base":
            d.pop("family")
        return d

    @classmethod
    def of(cls, params) -> "Budget":
        """The budget a notebook's parameters name (``eps``, ``norm``, ``steps``, ``apgd_iter``, ``square_queries``,
        ``square_n``, ``seed`` and ``attack_batch_size``; a mapping)."""
        return cls(eps=params["eps"], norm=params["norm"], steps=params["steps"], apgd_iter=params["apgd_iter"],
                   square_queries=params["square_queries"], square_n=params["square_n"], seed=params["seed"],
                   batch_size=params["attack_batch_size"])

    def with_steps(self, steps: int, family: str = "strong") -> "Budget":
        """The same budget at ``steps`` PGD steps per attack (per phase) in ``family``."""
        from dataclasses import replace

        return replace(self, steps=int(steps), family=family)

    def caption(self, n: int) -> str:
        """The caption line of a figure attacked with this budget's full set on ``n`` images."""
        full_set = (f"the full attack set (comparison.attack_set), Square ({self.square_queries} queries) on "
                    f"{self.square_n} of the images")
        return caption(n=n, eps=self.eps, norm=self.norm, attacks=full_set)


def _with_alpha_term(model, base: str, w: float, threat: str, budget: Budget, **kw):
    def attack(x, y):
        return attack_adaptive(model, x, y, threat=threat, eps=budget.eps, steps=budget.steps, norm=budget.norm,
                               loss=base, alpha_weight=w, seed=budget.seed, batch_size=budget.batch_size,
                               schedule=budget.schedule, **kw)
    return attack


def _surrogate(model, base: str, surrogate_scale: float, budget: Budget):
    from ..adaptive import attack_adaptive, softened_head

    def attack(x, y):
        with softened_head(model.net, surrogate_scale):
            return attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=budget.steps, norm=budget.norm,
                                   loss=base, alpha_weight=0.2, seed=budget.seed, batch_size=budget.batch_size,
                                   schedule=budget.schedule)
    return attack


def _two_phase(model, budget: Budget, w2: float = 0.0):
    """Detector evasion: a first phase pushes α_θ toward g only (w = 1), a second attacks the mixture from that
    point, inside the same ε-ball, with loss (1 - w2)·CE + w2·BCE(γ, 1).  ``base``: half the steps in each phase
    and w2 = 0; ``strong``: ``steps`` in each phase."""
    def attack(x, y):
        first = max(1, budget.steps // 2) if budget.family == "base" else budget.steps
        second = (budget.steps - first or 1) if budget.family == "base" else budget.steps
        x1 = attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=first, norm=budget.norm, loss="ce",
                             alpha_weight=1.0, seed=budget.seed, batch_size=budget.batch_size,
                             schedule=budget.schedule)
        if budget.family == "base":
            out = torch.empty_like(x)
            for sl in batches(len(x), budget.batch_size):
                with model.threat("full"):
                    out[sl] = pgd(model, x[sl], y[sl], eps=budget.eps, steps=second, norm=budget.norm,
                                  loss="ce", start=x1[sl], seed=budget.seed + 1)
            return out
        return attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=second, norm=budget.norm, loss="ce",
                               alpha_weight=w2, seed=budget.seed + 1, batch_size=budget.batch_size,
                               schedule=budget.schedule, start=x1)
    return attack


def _targeted_evasion(model, rank: int, budget: Budget, w: float = 0.5):
    """Evasion toward the ``rank``-th most likely wrong class on the clean input: (1 - w)·(-CE to it) +
    w·BCE(γ, 1), through α_θ; success means reaching that class."""
    def attack(x, y):
        with torch.no_grad():
            z = torch.cat([model(x[sl]) for sl in batches(len(x), budget.batch_size)])
        z.scatter_(1, y[:, None], float("-inf"))
        t = z.topk(rank, 1).indices[:, rank - 1]
        return attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=budget.steps, norm=budget.norm,
                               loss="ce", alpha_weight=w, seed=budget.seed, batch_size=budget.batch_size,
                               schedule=budget.schedule, targets=t)
    return attack


def _bpda(model, loss: str, w: float, budget: Budget):
    """PGD through α_θ with the Sigmoid's gradient replaced by a straight-through one (:func:`straight_through`)."""
    inner = _with_alpha_term(model, loss, w, "full", budget)

    def attack(x, y):
        with straight_through(model.net):
            return inner(x, y)
    return attack


def _held_alpha(model, budget: Budget):
    """PGD on the mixture with α_θ held at its value on the clean input (judged on the real model)."""
    def attack(x, y):
        out = torch.empty_like(x)
        for sl in batches(len(x), budget.batch_size):
            with torch.no_grad():
                _, a0, _ = model(x[sl], return_alpha=True)
            out[sl] = pgd(MixedClassifier(model.g, model.h, a0), x[sl], y[sl], eps=budget.eps, steps=budget.steps,
                          norm=budget.norm, loss="ce", seed=budget.seed, schedule=budget.schedule)
        return out
    return attack


def _transfer(source, budget: Budget):
    def attack(x, y):
        return pgd(source, x, y, eps=budget.eps, steps=budget.steps, norm=budget.norm, loss="ce", seed=budget.seed,
                   batch_size=budget.batch_size, schedule=budget.schedule)
    return attack


def _pgd_on(model, loss, budget: Budget):
    def attack(x, y):
        return pgd(model, x, y, eps=budget.eps, steps=budget.steps, norm=budget.norm, loss=loss, seed=budget.seed,
                   batch_size=budget.batch_size, schedule=budget.schedule)
    return attack


def _apgd(model, which: str, budget: Budget, adaptive: bool):
    def attack(x, y):
        n_iter = budget.apgd_iter if budget.family == "base" else max(budget.apgd_iter, budget.steps)
        kw = dict(eps=budget.eps, norm=budget.norm, attacks=(which,), n_iter=n_iter,
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


def _evasion_family(model, budget: Budget) -> dict:
    """The detector-evasion attacks of ``budget.family`` (see the module docstring)."""
    weights = budget.evasion_weights if budget.family == "base" else STRONG_EVASION_WEIGHTS
    out = {f"evasion/w={w:g}": _with_alpha_term(model, "ce", w, "full", budget) for w in weights}
    if budget.family == "base":
        out["evasion/two-phase"] = _two_phase(model, budget)
        return out
    out.update({f"evasion/two-phase/w2={w2:g}": _two_phase(model, budget, w2) for w2 in PHASE_WEIGHTS})
    out.update({f"evasion/targeted-{k}": _targeted_evasion(model, k, budget) for k in range(1, EVASION_TARGETS + 1)})
    out.update({"bpda/pgd-ce/w=0.2": _bpda(model, "ce", 0.2, budget), "bpda/evasion/w=0.5": _bpda(model, "ce", 0.5, budget)})
    return out


def attack_set(model, budget: Budget) -> dict:
    """The ordered attacks ``{name: f(x, y) -> x_adv}`` for an ``AdaptiveMixedClassifier`` or a
    constant-α ``MixedClassifier`` (the attacks about α_θ are left out for the latter); Square last.
    The ``strong`` family runs its evasion attacks first."""
    adaptive = hasattr(model, "net")
    out = _evasion_family(model, budget) if adaptive and budget.family == "strong" else {}
    if adaptive:
        out.update({f"pgd-{loss}/full/w={w:g}": _with_alpha_term(model, loss, w, "full", budget)
                    for loss in ("ce", "margin") for w in (0.0, 0.2)})
        out.update({f"pgd-{loss}/detached": _with_alpha_term(model, loss, 0.0, "detached", budget)
                    for loss in ("ce", "margin")})
    else:
        out.update({f"pgd-{loss}": _pgd_on(model, loss, budget) for loss in ("ce", "margin")})
    out["transfer/g"] = _transfer(model.g, budget)
    out["transfer/h"] = _transfer(model.h, budget)
    if adaptive:
        for s in budget.surrogate_scales:
            if s < float(model.net.scale):
                out.update({f"surrogate-{s:g}/{loss}": _surrogate(model, loss, s, budget) for loss in ("ce", "margin")})
        if budget.family == "base":
            out.update(_evasion_family(model, budget))
        out["evasion/alpha-held"] = _held_alpha(model, budget)
    if budget.apgd_iter:
        out["apgd-ce"] = _apgd(model, "apgd-ce", budget, adaptive)
        out["apgd-t"] = _apgd(model, "apgd-t", budget, adaptive)
    if budget.square_queries and budget.square_n:
        out[f"square-{budget.square_queries}"] = _square(model, budget)
    return out
