"""The project's attack suites by name, run by :func:`runner.run` (AutoAttack's "standard" / "plus" idea).

- ``tradeoff``: the trade-off curves' set (``evaluate.tradeoff_curve``): CE- and DLR-PGD on the mix, CE-PGD
  transferred from g and from h, then APGD-T on what they left; for any mixer of g and h.
- ``tables``: the set of Tables SM2/SM3 (``adaptive.robust_accuracy_adaptive``): PGD through α_θ (CE and
  margin, α-term weights 0 and 0.2) and with α_θ detached, a softened-head surrogate (Sigmoid scale 1, the
  tables' default), the transfers, APGD-T through α_θ; for h^{α_θ}.
- ``headline``: the headline's full set (``comparison.attack_set``, the ``base`` family at ``steps``), every
  attack on what the earlier ones left, Square last; for h^{α_θ} or a constant-α mixer.
- ``strong``: the ladder's strong family at ``steps`` per attack (``comparison.convergence``).
- or a user's own list of :class:`runner.Attack` (``fn(x, y) -> x_adv`` with the model bound).

Three lines evaluate a mixer::

    from adasmooth import suites
    res = suites.evaluate(mixed, x, y, "headline", eps=0.1)
    print(f"{res.accuracy:.3f} after {[s['attack'] for s in res.steps]}")
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .adaptive.evaluate import tables_suite
from .attack_cache import fingerprint
from .comparison.attack_suite import Budget, attack_set
from .evaluate import DEFAULT_ATTACKS, tradeoff_suite
from .runner import Attack, Run, run

SUITES = ("tradeoff", "tables", "headline", "strong")


def build(name: str, model, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf", steps: int = 20,
          seed: int = 0, batch_size: int = 250, apgd_iter: int = 100, n_targets: int = 3,
          square_queries: int = 5000) -> list[Attack]:
    """The suite ``name`` (one of :data:`SUITES`) for ``model`` on (x, y) with this budget."""
    if name not in SUITES:
        raise ValueError(f"suite must be one of {SUITES} or a list of runner.Attack, got {name!r}")
    adaptive = hasattr(model, "net")
    if name == "tables" and not adaptive:
        raise ValueError("suite 'tables' attacks α_θ: model must be an AdaptiveMixedClassifier (it has no .net)")
    if name == "tradeoff":
        common = dict(eps=eps, steps=steps, norm=norm, step_size=None, random_start=False, seed=seed,
                      batch_size=batch_size)
        apgd = dict(eps=eps, norm=norm, n_iter=apgd_iter, seed=seed, batch_size=batch_size)
        return tradeoff_suite(model.g, model.h, x, y, DEFAULT_ATTACKS, common, apgd, n_targets)(model)
    if name == "tables":
        return tables_suite(model, eps=eps, steps=steps, norm=norm, losses=("ce", "margin"), alpha_weights=(0.0, 0.2),
                            random_start=True, seed=seed, batch_size=batch_size, apgd_iter=apgd_iter,
                            n_targets=n_targets, transfer=True, surrogate_scale=1.0)
    budget = Budget(eps=eps, norm=norm, steps=steps, apgd_iter=apgd_iter, n_targets=n_targets,
                    square_queries=square_queries, square_n=len(y) if square_queries else 0, seed=seed,
                    batch_size=batch_size)
    if name == "strong":
        budget = replace(budget, family="strong")
    return [Attack(n, fn) for n, fn in attack_set(model, budget).items()]


def evaluate(model, x: torch.Tensor, y: torch.Tensor, suite="headline", *, eps: float, norm: str = "linf",
             steps: int = 20, seed: int = 0, batch_size: int = 250, apgd_iter: int = 100, n_targets: int = 3,
             square_queries: int = 5000, use_cache: bool = False, identity: str | None = None,
             progress: bool = False) -> Run:
    """Attack ``model`` (a mixer of g and h, in eval mode) on (x, y) with ``suite`` (a name of :data:`SUITES` or a
    list of :class:`runner.Attack`) and return the per-image :class:`runner.Run` (``.accuracy``, ``.correct``,
    ``.steps``).  With ``use_cache`` each attack's outcome is cached under ``identity`` (default: the model's
    weights) and the suite's budget."""
    model.eval()
    dev = next(model.parameters()).device
    x, y = x.to(dev), y.to(dev)
    budget = dict(eps=eps, norm=norm, steps=steps, seed=seed, batch_size=batch_size, apgd_iter=apgd_iter,
                  n_targets=n_targets, square_queries=square_queries)
    attacks = build(suite, model, x, y, **budget) if isinstance(suite, str) else list(suite)
    question = None
    if use_cache:
        if not isinstance(suite, str):
            raise ValueError("use_cache=True needs a named suite: a list of callables cannot key the cache")
        question = {"identity": identity or fingerprint(model), "suite": suite, "budget": budget}
    return run(model, x, y, attacks, question=question, label=suite if isinstance(suite, str) else "own suite",
               use_cache=use_cache, batch_size=batch_size, progress=progress)
