"""Attacks on any model that returns logits or log-probabilities.

``pgd`` (Madry et al.) maximises a per-sample loss L(model(x'), y) over the ε-ball
``‖x' - x‖_p ≤ ε`` (p = ∞ or 2) intersected with the box [0, 1]:
x'_{t+1} = Π( x'_t + η · step_p(∇ L) ), with step_∞(g) = sign(g) and step_2(g) = g / ‖g‖_2.

An *attack* below is any callable ``attack(model, x, y) -> x_adv`` (e.g.
``functools.partial(pgd, eps=0.1, steps=20, loss="dlr")``).  ``pgd_targeted`` runs targeted
PGD towards the top other classes (a PGD version of APGD-T), ``apgd_targeted`` runs APGD-T itself
and ``autoattack`` Croce & Hein's AutoAttack (both from the ``pyautoattack`` package), ``transfer``
crafts examples on another model (g or h alone) and ``worst_case`` keeps, per input, the first
attack that fools the model: the reported robust accuracy is the per-input minimum over all of them.
The losses (:func:`attack_loss`, :func:`loss_name`, …) live in :mod:`adasmooth.attack_losses` and are
re-exported here.
"""
from __future__ import annotations

import logging
import math
import operator
from typing import Callable, Mapping, NamedTuple, Sequence

import torch

from .attack_losses import (LOSS_ALIASES, LOSSES, attack_loss, dlr_targeted_loss, logit_margin,  # noqa: F401
                            loss_name)
from .mixing import check_finite
from .runtime import batches, generator, progress_bar

log = logging.getLogger(__name__)

NORMS = ("linf", "l2")
SCHEDULES = ("constant", "cosine")


def _check(x, eps, norm, steps, steps_name: str = "steps"):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    try:
        if isinstance(steps, bool):
            raise TypeError
        steps = operator.index(steps)
    except TypeError:
        raise ValueError(f"{steps_name} must be an int >= 1, got {steps!r}") from None
    if steps < 1:
        raise ValueError(f"{steps_name} must be >= 1, got {steps}")
    try:
        e = torch.as_tensor(eps, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"eps must be a finite number >= 0 or a tensor of such, got {eps!r}") from None
    if not torch.isfinite(e).all() or (e < 0).any():
        raise ValueError(f"eps must be finite and >= 0 (in [0, inf)), got {eps}")
    if not torch.is_tensor(x):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains non-finite values (NaN or inf)")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("x must lie in [0, 1]")


def model_output(model, x):
    """``model(x)``, refused (:class:`~adasmooth.mixing.NonFiniteOutput` naming the model) where it holds NaN or
    inf: an attack or an accuracy on such outputs would be meaningless."""
    z = model(x)
    check_finite({f"the model ({type(model).__name__})": z})
    return z


def _per_sample(v, n, ref):
    v = torch.as_tensor(v, dtype=ref.dtype, device=ref.device)
    if v.ndim == 0:
        v = v.expand(n)
    if v.shape != (n,):
        raise ValueError(f"per-sample eps/step_size must have shape ({n},), got {tuple(v.shape)}")
    return v.view(n, *([1] * (ref.ndim - 1)))


def _l2(v):
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))


def project(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project ``delta`` onto the ε-ball of ``norm`` (``eps`` broadcastable per sample)."""
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, eps), -eps)
    return delta * torch.clamp(eps / (_l2(delta) + 1e-12), max=1.0)


def _random_start(x, eps, norm, g):
    if norm == "linf":
        d = (torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    else:
        d = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        r = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), generator=g, device=x.device, dtype=x.dtype)
        d = d / (_l2(d) + 1e-12) * eps * r
    return torch.clamp(x + d, 0, 1) - x


def _step_sizes(step, steps: int, schedule: str):
    """The step size of each iteration: ``step`` throughout (``constant``) or ``step``·½(1 + cos(π·t/steps))
    (``cosine``: large first steps that explore, small last steps that settle)."""
    if schedule == "constant":
        return [step] * steps
    return [step * 0.5 * (1 + math.cos(math.pi * t / steps)) for t in range(steps)]


def _pgd_batch(model, x, y, eps, step, steps, norm, random_start, loss, targeted, g, momentum=None, start=None,
               schedule="constant"):
    """``steps`` signed (ℓ∞) or normalised (ℓ2) gradient steps, projected; with ``momentum`` μ (per
    sample, shape (N, 1, ...)) the step follows m ← μ·m + ∇/‖∇‖₁ (MI-FGSM).  Returns the final iterate,
    and, per input, the latest evaluated iterate that reached the goal (another class, or the target)
    with a mask of where one did: :func:`pgd` falls back to it where the final iterate misses
    (APGD likewise keeps its best point)."""
    if start is not None:
        delta = torch.clamp(x + project(start - x, eps, norm), 0, 1) - x
    else:
        delta = _random_start(x, eps, norm, g) if random_start else torch.zeros_like(x)
    reached = x.clone()
    found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    buf = torch.zeros_like(x) if momentum is not None else None
    for step_t in _step_sizes(step, steps, schedule):
        delta.requires_grad_(True)
        z = model_output(model, x + delta)
        lval = attack_loss(loss, z, y, targeted).sum()
        (grad,) = torch.autograd.grad(lval, delta)
        with torch.no_grad():
            hit = _reached(z, y, targeted)
            reached[hit] = (x + delta)[hit]
            found |= hit
            if buf is not None:
                l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
                buf = momentum * buf + grad / l1
                grad = buf
            if norm == "linf":
                delta = delta + step_t * grad.sign()
            else:
                delta = delta + step_t * grad / (_l2(grad) + 1e-12)
            delta = project(delta, eps, norm)
            delta = torch.clamp(x + delta, 0, 1) - x
    return (x + delta).detach(), reached, found


def _reached(z: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Inputs whose prediction argmax z reaches the attack's goal: the target y, or any class but y."""
    pred = z.argmax(1)
    return (pred == y) if targeted else (pred != y)


def pgd(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps,
        steps: int, norm: str = "linf", step_size=None, random_start: bool = True, restarts: int = 1,
        loss: str | Callable = "ce", targeted: bool = False, seed: int = 0, batch_size: int | None = None,
        momentum=None, start: torch.Tensor | None = None, schedule: str = "constant",
        progress: bool = False) -> torch.Tensor:
    """Return adversarial examples ``x_adv`` with ``‖x_adv - x‖_p ≤ ε`` and ``x_adv ∈ [0, 1]``.

    ``momentum`` (float or per-sample tensor in [0, 1), default none) accumulates L1-normalised
    gradients as in MI-FGSM (the authors' training attacks draw it from U(0, 0.9)).  ``start`` (same
    shape as x) starts the first restart there (projected onto the ball) instead of a random point.

    ``eps`` and ``step_size`` may be floats or per-sample tensors of shape (N,). ``step_size``
    defaults to 2.5·ε/steps (Madry et al.); with ``schedule="cosine"`` it is the first step, decayed as
    ½(1 + cos(π·t/steps)), and defaults to ε/4 (the same path length as the constant step at 20 steps).  With ``restarts > 1`` each input keeps the first
    restart that fools the model, else the one with the highest loss.  ``y`` is the target class
    when ``targeted``.  The model's train/eval mode is left as it is.
    """
    _check(x, eps, norm, steps)
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step_size is None:
        e = torch.as_tensor(eps, dtype=torch.float64)
        step_size = e / 4 if schedule == "cosine" else 2.5 * e / max(steps, 1)
    n = x.shape[0]
    bs = batch_size or n
    g = generator(seed, x.device)
    out = x.clone()
    eps_t = _per_sample(eps, n, x)
    step_t = _per_sample(step_size, n, x)
    if start is not None and start.shape != x.shape:
        raise ValueError(f"start must have the shape of x {tuple(x.shape)}, got {tuple(start.shape)}")
    mom_t = None
    if momentum is not None:
        mom = torch.as_tensor(momentum, dtype=torch.float64)
        if not torch.isfinite(mom).all() or (mom < 0).any() or (mom >= 1).any():
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        mom_t = _per_sample(momentum, n, x)
    for sl in progress_bar(list(batches(n, bs)), progress=progress, desc="PGD", leave=False):
        xb, yb = x[sl], y[sl]
        best, best_loss = xb.clone(), torch.full((xb.shape[0],), -float("inf"), device=x.device)
        done = torch.zeros(xb.shape[0], dtype=torch.bool, device=x.device)
        for r in range(restarts):
            adv, reached, found = _pgd_batch(model, xb, yb, eps_t[sl], step_t[sl], steps, norm,
                                             random_start, loss, targeted, g,
                                             None if mom_t is None else mom_t[sl],
                                             start[sl] if start is not None and r == 0 else None, schedule)
            with torch.no_grad():
                z = model_output(model, adv)
                lv = attack_loss(loss, z, yb, targeted)  # only compared where no iterate reached the goal
                fooled = _reached(z, yb, targeted)
                back = found & ~fooled
                adv[back] = reached[back]
                fooled |= back
            better = ~done & (fooled | (lv > best_loss))
            best[better] = adv[better]
            best_loss = torch.where(better, lv, best_loss)
            done |= fooled
            if done.all():
                break
        out[sl] = best
    return out


Attack = Callable[[Callable, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(model: Callable, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """argmax_i model(x)_i, batched, without gradients."""
    if len(x) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    return torch.cat([model_output(model, x[sl]).argmax(1) for sl in batches(len(x), batch_size or len(x))])


def pgd_targeted(model: Callable, x: torch.Tensor, y: torch.Tensor, *, eps, steps: int, n_targets: int = 9,
                 norm: str = "linf", step_size=None, random_start: bool = False, loss: str = "dlr",
                 seed: int = 0, batch_size: int | None = None, progress: bool = False) -> torch.Tensor:
    """Untargeted adversarial examples from targeted PGD towards each of the ``n_targets`` classes
    ranked highest (after y) by ``model(x)``, a PGD version of APGD-T.

    ``loss="dlr"`` maximises :func:`dlr_targeted_loss`, ``"ce"`` minus the CE to the target.  Per
    input, the first target whose example fools the model wins (later targets only attack the
    inputs still classified correctly; misclassified inputs come back unchanged); otherwise the
    example with the lowest margin z_y - max_{i≠y} z_i.  ``y`` are the true labels.
    """
    if loss not in ("dlr", "ce"):
        raise ValueError(f"loss must be 'dlr' or 'ce' for pgd_targeted, got {loss!r}")
    _check(x, eps, norm, steps)
    n = x.shape[0]
    bs = batch_size or n
    eps_t = _per_sample(eps, n, x).flatten()
    step_t = None if step_size is None else _per_sample(step_size, n, x).flatten()
    out = x.clone()
    for sl in progress_bar(list(batches(n, bs)), progress=progress, desc="PGD-T", leave=False):
        xb, yb = x[sl], y[sl]
        with torch.no_grad():
            z0 = model_output(model, xb)
        k = z0.shape[1] - 1
        if not 1 <= n_targets <= k:
            raise ValueError(f"n_targets must be in [1, {k}] for {k + 1} classes, got {n_targets}")
        ranked = z0.scatter(1, yb[:, None], float("-inf")).argsort(1, descending=True)
        best, best_m = xb.clone(), logit_margin(z0, yb)
        done = best_m < 0
        for r in range(n_targets):
            todo = (~done).nonzero().flatten()
            if len(todo) == 0:
                break
            xt, yt, t = xb[todo], yb[todo], ranked[todo, r]
            fn = (lambda z, tt, yy=yt: dlr_targeted_loss(z, yy, tt)) if loss == "dlr" else "ce"
            adv = pgd(model, xt, t, eps=eps_t[sl][todo], steps=steps, norm=norm,
                      step_size=None if step_t is None else step_t[sl][todo],
                      random_start=random_start, loss=fn, targeted=True, seed=seed + r)
            with torch.no_grad():
                m = logit_margin(model_output(model, adv), yt)
            better = (m < 0) | (m < best_m[todo])
            best[todo[better]], best_m[todo[better]] = adv[better], m[better]
            done[todo[m < 0]] = True
        out[sl] = best
    return out


def autoattack(model: Callable, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
               attacks: Sequence[str] = ("apgd-ce", "apgd-t"), n_iter: int = 100, n_restarts: int = 1,
               n_target_classes: int = 9, square_queries: int = 5000, seed: int = 0,
               batch_size: int = 250) -> torch.Tensor:
    """AutoAttack (Croce & Hein 2020) through the ``pyautoattack`` package, default APGD-CE + APGD-T.

    Runs on ``x``'s device; returns ``x_adv`` (inputs no attack fooled come back unchanged).
    ``n_iter``/``n_restarts``/``n_target_classes`` are the APGD budgets (standard: 100/1/9),
    ``square_queries`` Square's query budget (standard: 5000; gradient-free, so it sees past masking).
    pyautoattack seeds torch's global generator with ``seed``; the caller's generator state is
    restored afterwards.
    """
    from pyautoattack import AutoAttack

    names = {"linf": "Linf", "l2": "L2"}
    if norm not in names:
        raise ValueError(f"norm must be one of {tuple(names)}, got {norm!r}")
    known = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
    if not attacks or any(a not in known for a in attacks):
        raise ValueError(f"attacks must be a non-empty list drawn from {known}, got {attacks!r}")
    _check(x, eps, norm, n_iter, "n_iter")
    with torch.no_grad():
        k = model(x[:1]).shape[1]
    if k < 4 and any(a in ("apgd-t", "apgd-dlr") for a in attacks):
        raise ValueError(f"attacks 'apgd-t' and 'apgd-dlr' use the DLR loss, which needs at least 4 classes; "
                         f"the model has {k}")
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        aa = AutoAttack(model, attacks=list(attacks), device=x.device, eps=float(eps), norm=names[norm],
                        seed=seed, version="custom")
        aa.verbose = False
        aa.apgd.n_iter, aa.apgd.n_restarts = n_iter, n_restarts
        aa.apgd_targeted.n_iter, aa.apgd_targeted.n_restarts = n_iter, 1
        aa.apgd_targeted.n_target_classes = min(n_target_classes, k - 1)
        aa.fab.n_target_classes = min(aa.fab.n_target_classes, k - 1)
        if not isinstance(square_queries, int) or square_queries < 1:
            raise ValueError(f"square_queries must be an int >= 1, got {square_queries!r}")
        aa.square.n_queries = square_queries
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return x_adv.detach()


def apgd_targeted(model: Callable, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
                  n_iter: int = 100, n_targets: int = 3, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """APGD-T (Croce & Hein 2020, from ``pyautoattack``): targeted DLR loss towards each of the
    ``n_targets`` classes ranked highest after y, ``n_iter`` iterations with APGD's adaptive step
    size.  Its step-size schedule is what fixed-step PGD lacks on a mixture: on the default zoo,
    targeted PGD with 100 steps stays 2-3 points above AutoAttack, APGD-T (100 iterations, 3
    targets) matches it.  Needs at least 4 classes."""
    return autoattack(model, x, y, eps=eps, norm=norm, attacks=("apgd-t",), n_iter=n_iter,
                      n_target_classes=n_targets, seed=seed, batch_size=batch_size)


def transfer(source: Callable, attack: Attack) -> Attack:
    """An attack crafted on ``source`` (e.g. g or h alone) and evaluated on whatever model is given."""
    def transferred(model, x, y):
        return attack(source, x, y)

    transferred.source = source
    return transferred


class WorstCase(NamedTuple):
    """Per-input worst case over several attacks (clean input included)."""

    x_adv: torch.Tensor                 # per input: the first adversarial example that fooled the model
    correct: torch.Tensor               # (N,) bool: correct on the clean input and under every attack
    per_attack: dict                    # attack name -> (N,) bool correctness under that attack alone


def worst_case(model: Callable, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack] | Sequence[Attack],
               *, batch_size: int | None = None, progress: bool = False, only_robust: Sequence[str] = ()) -> WorstCase:
    """Run every attack on (x, y) and keep the per-input minimum: an input counts as robust only when
    the model is right on it and on every attack's example (the paper's min(transfer, direct)).

    Attacks named in ``only_robust`` run after the others and, as in AutoAttack, only on the inputs
    still classified correctly; their ``per_attack`` entry is the worst case up to and including them."""
    if not isinstance(attacks, Mapping):
        attacks = {f"attack{i}": a for i, a in enumerate(attacks)}
    if not attacks:
        raise ValueError("attacks must name at least one attack")
    unknown = [k for k in only_robust if k not in attacks]
    if unknown:
        raise ValueError(f"only_robust must name attacks among {list(attacks)}, got {unknown}")
    attacks = {**{k: a for k, a in attacks.items() if k not in only_robust}, **{k: attacks[k] for k in only_robust}}
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"y must have one label per input: x has {x.shape[0]}, y has {y.shape[0]}")
    correct = predict(model, x, batch_size) == y
    x_worst = x.clone()
    fooled = ~correct
    per = {}
    for name, attack in progress_bar(list(attacks.items()), progress=progress, desc="attacks", leave=False):
        idx = (~fooled).nonzero().flatten() if name in only_robust else None
        if idx is not None and len(idx) == 0:
            per[name] = ~fooled
            continue
        xs, ys = (x, y) if idx is None else (x[idx], y[idx])
        adv_s = attack(model, xs, ys)
        if adv_s.shape != xs.shape:
            raise ValueError(f"attack {name!r} returned shape {tuple(adv_s.shape)}, expected {tuple(xs.shape)}")
        ok_s = predict(model, adv_s, batch_size) == ys
        if idx is None:
            adv, ok = adv_s, ok_s
        else:
            adv, ok = x.clone(), ~fooled
            adv[idx], ok[idx] = adv_s, ok_s
        per[name] = ok
        new = ~ok & ~fooled
        x_worst[new] = adv[new]
        fooled |= ~ok
        log.info("%s: %.2f %% accuracy (worst case so far %.2f %%)", name, 100 * ok.float().mean().item(),
                 100 * (~fooled).float().mean().item())
    return WorstCase(x_worst, ~fooled, per)
