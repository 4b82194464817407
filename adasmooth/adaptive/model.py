"""The adaptive mixed classifier h^{α_θ(x)}(x), its threat models, and a model-mode helper.

    h^{α_θ}(x) = log((1 - α_θ(x))·softmax(g(x)) + α_θ(x)·softmax(h(x)))

g (accurate) and h (robust) are frozen; only the mixing network α_θ (``mixing_net``) is trained.

Threat models.  The supplement's "Setting A/B" are not defined in what we have, so we name ours:

- ``detached``: the attacker treats α_θ(x) as a constant: gradients reach x only through g and
  h (the taps feeding α_θ are detached); the attack loss is CE or the margin.
- ``full``: gradients also flow through α_θ, and the attacker adds the α-term
  w·BCE(γ, 1) to push α_θ toward the non-robust g (evaluated at w = 0 and w = 0.2 by default).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..mixing import check_finite, check_module, mix_log_probs
from ..mixing_net import MixingNetwork
from ..taps import with_taps

THREATS = ("full", "detached")


class AdaptiveMixedClassifier(nn.Module):
    """h^{α_θ(x)}(x): returns log-probabilities; ``forward(x, return_alpha=True)`` gives (logp, α, γ).

    g and h run once each (``forward_with_taps``), are frozen and stay in eval mode even after
    ``.train()``.  ``attack_through_alpha=False`` detaches the taps that feed α_θ, so input
    gradients do not flow through α_θ (α_θ's own parameters still get gradients).  A model without
    ``forward_with_taps`` is wrapped in :class:`adasmooth.taps.Tapped` (its default tap layers).  Non-finite
    logits of g or h, or a non-finite α_θ, raise :class:`~adasmooth.mixing.NonFiniteOutput` naming the culprit.
    """

    def __init__(self, g: nn.Module, h: nn.Module, net: MixingNetwork, attack_through_alpha: bool = True):
        super().__init__()
        for m, name, role in ((g, "g", "the accurate model"), (h, "h", "the robust model"),
                              (net, "net", "the mixing network")):
            check_module(m, name, role)
        g, h = with_taps(g), with_taps(h)
        if g.num_classes != h.num_classes:
            raise ValueError(f"g and h must have the same number of classes, got {g.num_classes} "
                             f"and {h.num_classes}")
        if g.in_channels != h.in_channels:
            raise ValueError(f"g and h must take the same input channels, got {g.in_channels} and {h.in_channels}")
        if tuple(g.tap_channels) != net.g_taps or tuple(h.tap_channels) != net.h_taps:
            raise ValueError(f"net expects g_taps={net.g_taps}, h_taps={net.h_taps}; the models have "
                             f"{tuple(g.tap_channels)} and {tuple(h.tap_channels)}")
        self.g, self.h, self.net = g, h, net
        self.attack_through_alpha = bool(attack_through_alpha)
        self.num_classes, self.in_channels = g.num_classes, g.in_channels
        self.input_size = getattr(g, "input_size", None) or getattr(h, "input_size", None)
        for p in list(g.parameters()) + list(h.parameters()):
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.g.eval()
        self.h.eval()
        return self

    def forward(self, x: torch.Tensor, return_alpha: bool = False):
        zg, taps_g = self.g.forward_with_taps(x)
        zh, taps_h = self.h.forward_with_taps(x)
        if not self.attack_through_alpha:
            taps_g, taps_h = [t.detach() for t in taps_g], [t.detach() for t in taps_h]
        alpha, gamma = self.net(taps_g, taps_h, return_gamma=True)
        check_finite({f"g ({type(self.g).__name__})": zg, f"h ({type(self.h).__name__})": zh,
                      "the mixing network α_θ": alpha})
        logp = mix_log_probs(F.log_softmax(zg.float(), 1), F.log_softmax(zh.float(), 1), alpha)
        return (logp, alpha, gamma) if return_alpha else logp

    @contextlib.contextmanager
    def threat(self, name: str):
        """Temporarily switch to threat model ``name`` (``full``: gradients through α_θ; ``detached``)."""
        if name not in THREATS:
            raise ValueError(f"threat must be one of {THREATS}, got {name!r}")
        old = self.attack_through_alpha
        self.attack_through_alpha = name == "full"
        try:
            yield self
        finally:
            self.attack_through_alpha = old



@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)
