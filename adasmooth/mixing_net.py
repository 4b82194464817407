"""The mixing network α_θ of adaptive smoothing (supplement Appendix B, Fig. SM3).

α_θ reads the feature taps ``[f1, f2]`` of both base models (``Classifier.forward_with_taps``):

    a = stage_a(cat(f1_g, f1_h))                (pre-activation residual blocks, stride 2)
    b = a + Conv1x1(cat(f2_g, f2_h))            (1x1 conv matches and reduces the channels)
    γ_raw = Linear(pool(stage_b(b)))            (Linear(C, 1, bias=False))
    γ = BN(γ_raw)·scale + shift                 (BatchNorm1d(1) without affine parameters)
    α = α_min + (α_max - α_min)·σ(γ)

In training mode γ_raw is first clamped to its batch mean ± 0.6·std and the full range
(α_min, α_max) = (0, 1) is used; at evaluation the range set with :meth:`set_alpha_range`
applies.  ``scale`` and ``shift`` (training defaults 2 and 0.4) can be changed after training:
the supplement shifts γ so that the clean accuracy of h^{α_θ} hits a target (Tables SM2, SM3).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import PreActBlock
from .taps import with_taps

TRAIN_SCALE, TRAIN_SHIFT = 2.0, 0.4
CLAMP_STD = 0.6


def head(z, scale, shift, alpha_min=0.0, alpha_max=1.0):
    """The head of α_θ: α = α_min + (α_max − α_min)·σ(s·z + b) from BN(γ_raw) = ``z``, scale s and shift b
    (the one home of this formula: the network, calibration and the validation-chosen head all call it)."""
    return alpha_min + (alpha_max - alpha_min) * torch.sigmoid(z * scale + shift)


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [PreActBlock(cin, cout, stride)] + [PreActBlock(cout, cout, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _check_taps(taps, name):
    if len(taps) != 2 or any(int(c) <= 0 for c in taps):
        raise ValueError(f"{name} must be two positive channel counts (c1, c2), got {taps!r}")
    return tuple(int(c) for c in taps)


class MixingNetwork(nn.Module):
    """α_θ(x) from the taps of g and h; ``forward(taps_g, taps_h)`` returns α of shape (N,)."""

    def __init__(self, g_taps=(32, 64), h_taps=(32, 64), width: int = 64, blocks: int = 1,
                 scale: float = TRAIN_SCALE, shift: float = TRAIN_SHIFT, bn_momentum: float = 0.01):
        super().__init__()
        self.g_taps, self.h_taps = _check_taps(g_taps, "g_taps"), _check_taps(h_taps, "h_taps")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.width, self.blocks = int(width), int(blocks)
        c1 = self.g_taps[0] + self.h_taps[0]
        c2 = self.g_taps[1] + self.h_taps[1]
        self.stage_a = _stage(c1, width, blocks, stride=2)
        self.proj2 = nn.Conv2d(c2, width, kernel_size=1, bias=False)
        self.stage_b = _stage(width, 2 * width, blocks, stride=2)
        self.linear = nn.Linear(2 * width, 1, bias=False)
        self.bn = nn.BatchNorm1d(1, affine=False, momentum=bn_momentum)
        self.register_buffer("scale", torch.tensor(float(TRAIN_SCALE)))
        self.register_buffer("shift", torch.tensor(float(TRAIN_SHIFT)))
        self.register_buffer("alpha_min", torch.tensor(0.0))
        self.register_buffer("alpha_max", torch.tensor(1.0))
        self._full_range = False  # set by ``full_range``: eval mode with the (0, 1) range
        self._straight_through = False  # set by ``straight_through``: BPDA through the Sigmoid
        self.set_head(scale, shift)

    # ---- settable head -------------------------------------------------------------------
    def set_head(self, scale: float | None = None, shift: float | None = None) -> "MixingNetwork":
        """Set the Sigmoid input's ``scale`` (> 0) and/or ``shift``: γ = BN(γ_raw)·scale + shift."""
        if scale is not None:
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError(f"scale must be a finite number > 0, got {scale}")
            self.scale.fill_(float(scale))
        if shift is not None:
            if not math.isfinite(shift):
                raise ValueError(f"shift must be finite, got {shift}")
            self.shift.fill_(float(shift))
        return self

    def set_alpha_range(self, alpha_min: float = 0.0, alpha_max: float = 1.0) -> "MixingNetwork":
        """Evaluation range: α = α_min + (α_max - α_min)·σ(γ), 0 ≤ α_min ≤ α_max ≤ 1."""
        if not (0.0 <= alpha_min <= alpha_max <= 1.0):
            raise ValueError(f"alpha range must satisfy 0 <= alpha_min <= alpha_max <= 1, "
                             f"got ({alpha_min}, {alpha_max})")
        self.alpha_min.fill_(float(alpha_min))
        self.alpha_max.fill_(float(alpha_max))
        return self

    @property
    def alpha_range(self) -> tuple[float, float]:
        return float(self.alpha_min), float(self.alpha_max)

    # ---- forward -------------------------------------------------------------------------
    def raw_gamma(self, taps_g, taps_h) -> torch.Tensor:
        """γ_raw of shape (N, 1): the network before its BatchNorm head."""
        f1 = torch.cat([taps_g[0], taps_h[0]], 1)
        f2 = torch.cat([taps_g[1], taps_h[1]], 1)
        if f1.shape[1] != self.stage_a[0].bn1.num_features or f2.shape[1] != self.proj2.in_channels:
            raise ValueError(f"taps have {taps_g[0].shape[1]}+{taps_h[0].shape[1]} and "
                             f"{taps_g[1].shape[1]}+{taps_h[1].shape[1]} channels; this network expects "
                             f"g_taps={self.g_taps}, h_taps={self.h_taps}")
        a = self.stage_a(f1)
        if a.shape[-2:] != f2.shape[-2:]:  # any other down-sampling ratio between the two stages
            a = F.adaptive_avg_pool2d(a, f2.shape[-2:])
        b = self.stage_b(a + self.proj2(f2))
        return self.linear(F.adaptive_avg_pool2d(b, 1).flatten(1))

    def normalized_gamma(self, taps_g, taps_h) -> torch.Tensor:
        """BN(γ_raw) of shape (N,), before scale and shift (clamped to mean ± 0.6·std in training)."""
        raw = self.raw_gamma(taps_g, taps_h)
        if self.training and raw.shape[0] > 1:
            mean, std = raw.mean().detach(), raw.std().detach()
            raw = torch.clamp(raw, mean - CLAMP_STD * std, mean + CLAMP_STD * std)
        return self.bn(raw.float()).squeeze(1)

    def alpha_from_normalized(self, z: torch.Tensor, full_range: bool | None = None):
        """(α, γ) from BN(γ_raw) = ``z``; ``full_range`` defaults to ``self.training``."""
        gamma = z * self.scale + self.shift
        s = torch.sigmoid(gamma)
        if self._straight_through:  # BPDA: the forward value of σ, the gradient of its tangent at 0 (σ'(0) = 1/4)
            s = s.detach() + 0.25 * (gamma - gamma.detach())
        if full_range is None:
            full_range = self.training
        if not full_range:
            s = self.alpha_min + (self.alpha_max - self.alpha_min) * s
        return s, gamma

    def forward(self, taps_g, taps_h, return_gamma: bool = False):
        """α_θ of shape (N,); with ``return_gamma`` also the pre-Sigmoid γ = BN(γ_raw)·scale + shift."""
        alpha, gamma = self.alpha_from_normalized(self.normalized_gamma(taps_g, taps_h),
                                                  full_range=self.training or self._full_range)
        return (alpha, gamma) if return_gamma else alpha


@contextlib.contextmanager
def full_range(net: MixingNetwork):
    """Temporarily use the full (0, 1) output range in eval mode (training-time attacks)."""
    old = net._full_range
    net._full_range = True
    try:
        yield net
    finally:
        net._full_range = old


@contextlib.contextmanager
def straight_through(net: MixingNetwork):
    """Temporarily replace the Sigmoid's gradient by the constant σ'(0) = 1/4 (BPDA, Athalye et al. 2018): the
    forward values are unchanged, but a saturated Sigmoid no longer hides α_θ's dependence on the input."""
    old = net._straight_through
    net._straight_through = True
    try:
        yield net
    finally:
        net._straight_through = old


def for_models(g, h, **kwargs) -> MixingNetwork:
    """A mixing network sized for the taps of classifiers ``g`` and ``h`` (a model without ``tap_channels``:
    those of its default tap layers, :func:`adasmooth.taps.with_taps`)."""
    g, h = with_taps(g), with_taps(h)
    return MixingNetwork(g_taps=g.tap_channels, h_taps=h.tap_channels, **kwargs)
