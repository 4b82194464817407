"""Projected gradient descent (Madry et al.) on any model that returns logits or log-probabilities.

``pgd`` maximises a per-sample loss L(model(x'), y) over the ε-ball ``‖x' - x‖_p ≤ ε`` (p = ∞ or 2)
intersected with the box [0, 1]:  x'_{t+1} = Π( x'_t + η · step_p(∇ L) ), with
step_∞(g) = sign(g) and step_2(g) = g / ‖g‖_2.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F

from .runtime import batches, generator, progress_bar

log = logging.getLogger(__name__)

NORMS = ("linf", "l2")
LOSSES = ("ce", "dlr", "cw")


def margin(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i≠y} z_i, per sample."""
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return zy - other.max(1).values


def attack_loss(name: str | Callable, z: torch.Tensor, y: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """Per-sample loss that the attacker *maximises*.

    ``ce``: cross-entropy (targeted: minus the CE to the target);
    ``cw``: max_{i≠y} z_i - z_y (targeted: z_t - max_{i≠t} z_i);
    ``dlr``: -(z_y - max_{i≠y} z_i) / (z_π1 - z_π3) (Croce & Hein 2020; targeted:
    -(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2), y then the true label and t the target).
    A callable ``f(z, y) -> per-sample loss`` is used as is.
    """
    if callable(name):
        return name(z, y)
    if name == "ce":
        ce = F.cross_entropy(z, y, reduction="none")
        return -ce if targeted else ce
    if name == "cw":
        return margin(z, y) if targeted else -margin(z, y)
    if name == "dlr":
        zs = z.sort(1, descending=True).values
        if not targeted:
            return -margin(z, y) / (zs[:, 0] - zs[:, 2] + 1e-12)
        raise ValueError("targeted DLR needs the true label: use dlr_targeted_loss")
    raise ValueError(f"loss must be one of {LOSSES} or a callable, got {name!r}")


def _check(x, eps, norm, steps):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    e = torch.as_tensor(eps)
    if (e < 0).any():
        raise ValueError(f"eps must be >= 0, got {eps}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("x must lie in [0, 1]")


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


def _pgd_batch(model, x, y, eps, step, steps, norm, random_start, loss, targeted, g):
    delta = _random_start(x, eps, norm, g) if random_start else torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        z = model(x + delta)
        lval = attack_loss(loss, z, y, targeted).sum()
        (grad,) = torch.autograd.grad(lval, delta)
        with torch.no_grad():
            if norm == "linf":
                delta = delta + step * grad.sign()
            else:
                delta = delta + step * grad / (_l2(grad) + 1e-12)
            delta = project(delta, eps, norm)
            delta = torch.clamp(x + delta, 0, 1) - x
    return (x + delta).detach()


def pgd(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps,
        steps: int, norm: str = "linf", step_size=None, random_start: bool = True, restarts: int = 1,
        loss: str | Callable = "ce", targeted: bool = False, seed: int = 0, batch_size: int | None = None,
        progress: bool = False) -> torch.Tensor:
    """Return adversarial examples ``x_adv`` with ``‖x_adv - x‖_p ≤ ε`` and ``x_adv ∈ [0, 1]``.

    ``eps`` and ``step_size`` may be floats or per-sample tensors of shape (N,). ``step_size``
    defaults to 2.5·ε/steps (Madry et al.).  With ``restarts > 1`` each input keeps the first
    restart that fools the model, else the one with the highest loss.  ``y`` is the target class
    when ``targeted``.  The model's train/eval mode is left as it is.
    """
    _check(x, eps, norm, steps)
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if step_size is None:
        step_size = 2.5 * torch.as_tensor(eps, dtype=torch.float64) / max(steps, 1)
    n = x.shape[0]
    bs = batch_size or n
    g = generator(seed, x.device)
    out = x.clone()
    eps_t = _per_sample(eps, n, x)
    step_t = _per_sample(step_size, n, x)
    for sl in progress_bar(list(batches(n, bs)), progress=progress, desc="PGD", leave=False):
        xb, yb = x[sl], y[sl]
        best, best_loss = xb.clone(), torch.full((xb.shape[0],), -float("inf"), device=x.device)
        done = torch.zeros(xb.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(restarts):
            adv = _pgd_batch(model, xb, yb, eps_t[sl], step_t[sl], steps, norm,
                             random_start, loss, targeted, g)
            with torch.no_grad():
                z = model(adv)
                lv = attack_loss(loss, z, yb, targeted)
                pred = z.argmax(1)
                fooled = (pred == yb) if targeted else (pred != yb)
            better = ~done & (fooled | (lv > best_loss))
            best[better] = adv[better]
            best_loss = torch.where(better, lv, best_loss)
            done |= fooled
            if done.all():
                break
        out[sl] = best
    return out
