"""Calibration: move the head's shift so that the clean accuracy of h^{α_θ} hits a target
(``calibrate_shift``), as the supplement does at 90 % ± 0.02 pt on CIFAR-10;
``calibrate_constant_alpha`` does the same for a constant-α mixture (the baseline), and
``calibrate_range`` places the evaluation range (α_min, α_min + w) so that the clean accuracy keeps the target.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..calibration import Calibration, bisect_to_accuracy, check_target  # noqa: F401  (Calibration: re-exported)
from ..mixing import check_alpha, mix_log_probs
from ..mixing_net import head
from ..runtime import batches, get_device
from .model import AdaptiveMixedClassifier


@torch.no_grad()
def _log_probs(model, x, device, batch_size):
    out = []
    for sl in batches(len(x), batch_size):
        out.append(F.log_softmax(model(x[sl].to(device)).float(), 1))
    return torch.cat(out)


@torch.no_grad()
def mixture_parts(model: AdaptiveMixedClassifier, x: torch.Tensor, device, batch_size: int = 500):
    """g's and h's log-probabilities and BN(γ_raw) on ``x``: everything a re-mix with another head needs."""
    lg, lh, zs = [], [], []
    for sl in batches(len(x), batch_size):
        xb = x[sl].to(device)
        zg, tg = model.g.forward_with_taps(xb)
        zh, th = model.h.forward_with_taps(xb)
        lg.append(F.log_softmax(zg.float(), 1))
        lh.append(F.log_softmax(zh.float(), 1))
        zs.append(model.net.normalized_gamma(tg, th))
    return torch.cat(lg), torch.cat(lh), torch.cat(zs)


def calibrate_shift(model: AdaptiveMixedClassifier, x: torch.Tensor, y: torch.Tensor, target_clean_acc: float,
                    tol: float = 2e-4, *, batch_size: int = 500, max_iter: int = 200, device=None) -> Calibration:
    """Set the head's shift so that the clean accuracy of h^{α_θ} on (x, y) is ``target_clean_acc``.

    g's and h's log-probabilities and BN(γ_raw) are computed once; each bisection step then
    re-mixes with α = α_min + (α_max - α_min)·σ(scale·BN(γ_raw) + shift).  Larger shift → larger
    α → closer to h.  Raises ``ValueError`` when the target lies outside
    [acc(h^{α_max}), acc(h^{α_min})] (± tol); with n images the achievable accuracies are
    multiples of 1/n, so when none lies within ``tol`` the closest one is used
    (``within_tol=False``).  The shift is set on ``model.net`` and the result returned.
    """
    check_target(target_clean_acc, tol)
    device = get_device(device)
    model = model.to(device).eval()
    y = y.to(device)
    net = model.net
    lg, lh, z = mixture_parts(model, x, device, batch_size)
    amin, amax = net.alpha_range

    def acc(shift):
        a = head(z, net.scale, shift, amin, amax)
        return (mix_log_probs(lg, lh, a).argmax(1) == y).double().mean().item()

    # σ(±60) is 0 / 1 in float32: the ends give α_min and α_max for every input
    span = 60.0 + float(net.scale) * float(z.abs().max())
    res = bisect_to_accuracy(acc, -span, span, float(target_clean_acc), tol, len(y), max_iter, "the head's shift",
                  f"α_min={amin:g} .. α_max={amax:g}")
    net.set_head(shift=res.value)
    return res


def calibrate_constant_alpha(g: nn.Module, h: nn.Module, x: torch.Tensor, y: torch.Tensor, target_clean_acc: float,
                             tol: float = 2e-4, *, batch_size: int = 500, max_iter: int = 200,
                             device=None) -> Calibration:
    """The constant α ∈ [0, 1] at which h^α on (x, y) has clean accuracy ``target_clean_acc``
    (same rules as :func:`calibrate_shift`; ``value`` is α)."""
    check_target(target_clean_acc, tol)
    device = get_device(device)
    g, h = g.to(device).eval(), h.to(device).eval()
    y = y.to(device)
    lg, lh = _log_probs(g, x, device, batch_size), _log_probs(h, x, device, batch_size)

    def acc(alpha):
        return (mix_log_probs(lg, lh, alpha).argmax(1) == y).double().mean().item()

    res = bisect_to_accuracy(acc, 0.0, 1.0, float(target_clean_acc), tol, len(y), max_iter, "constant α",
                  "α = 0 .. 1")
    check_alpha(res.value, "alpha")
    return res


def alpha_min_from_parts(lg, lh, sig, y, target: float, width: float, tol: float, what: str = "α_min"):
    """α_min with α = α_min + ``width``·σ(γ) (``sig`` = σ(γ) per input) reaching clean accuracy ``target``
    for precomputed log-probabilities of g and h (bisection; a :class:`Calibration`)."""
    def acc(amin):
        return (mix_log_probs(lg, lh, amin + width * sig).argmax(1) == y).double().mean().item()

    return bisect_to_accuracy(acc, 0.0, 1.0 - width, float(target), tol, len(y), 200, what, f"range width {width:g}")


def calibrate_range(model: AdaptiveMixedClassifier, x: torch.Tensor, y: torch.Tensor, target: float, width: float,
                    *, tol: float = 2e-4, batch_size: int = 500, device=None) -> Calibration:
    """Set the evaluation range (α_min, α_min + ``width``) of ``model.net`` so that, with its current scale
    and shift, the clean accuracy of h^{α_θ} on (x, y) is ``target`` (the closest achievable when none is
    within ``tol``); return the :class:`Calibration` (``value`` is α_min)."""
    if not 0 < width <= 1:
        raise ValueError(f"range_width must lie in (0, 1], got {width}")
    check_target(target, tol)
    device = get_device(device)
    model = model.to(device).eval()
    lg, lh, z = mixture_parts(model, x, device, batch_size)
    sig = head(z, model.net.scale, model.net.shift)
    res = alpha_min_from_parts(lg, lh, sig, y.to(device), target, width, tol)
    model.net.set_alpha_range(res.value, res.value + width)
    return res
