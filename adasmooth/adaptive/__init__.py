"""Adaptive smoothing: the mixed classifier h^{α_θ(x)}(x) with a learned, per-input α (Appendix B).

    h^{α_θ}(x) = log((1 - α_θ(x))·softmax(g(x)) + α_θ(x)·softmax(h(x)))

g (accurate) and h (robust) are frozen; only the mixing network α_θ (``mixing_net``) is trained,
with the composite loss (B.2) on clean inputs (pseudo-label ᾱ = 0) and on inputs attacked
through the whole mixed model (ᾱ = 1):

    ℓ = c_CE·CE(h^{α_θ}(x+δ), y) + c_BCE·BCE(γ, ᾱ) + c_prod·CE·BCE,     α_θ = σ(γ).

One module per job; every name is re-exported here (``from adasmooth.adaptive import X``):

- :mod:`.model`: ``AdaptiveMixedClassifier`` and the threat models ``full`` / ``detached`` (``THREATS``);
- :mod:`.loss`: ``composite_loss`` (B.2);
- :mod:`.attacks`: ``training_attack`` (randomized radii and steps, the attacker's α-term),
  ``attack_adaptive`` (PGD under a threat model), ``softened_head`` (the surrogate of a saturated Sigmoid);
- :mod:`.evaluate`: ``robust_accuracy_adaptive`` (both threat models, transfers, surrogate, APGD-T);
- :mod:`.train`: ``MixingConfig``, ``train_mixing_network``, ``training_curve``;
- :mod:`.cache`: ``get_mixing_network``, ``mixing_stem`` (checkpoints in the zoo cache);
- :mod:`.calibrate`: ``calibrate_shift``, ``calibrate_constant_alpha``, ``calibrate_range``, ``mixture_parts``.
"""
from ..calibration import Calibration
from .attacks import attack_adaptive, softened_head, training_attack
from .cache import get_mixing_network, mixing_stem
from .calibrate import (alpha_min_from_parts, calibrate_constant_alpha, calibrate_range, calibrate_shift,
                        mixture_parts)
from .evaluate import EVAL_LOSSES, robust_accuracy_adaptive
from .loss import composite_loss
from .model import THREATS, AdaptiveMixedClassifier
from .train import MixingConfig, train_mixing_network, training_curve

__all__ = ["THREATS", "EVAL_LOSSES", "AdaptiveMixedClassifier", "composite_loss", "training_attack",
           "attack_adaptive", "softened_head", "robust_accuracy_adaptive", "MixingConfig",
           "train_mixing_network", "training_curve", "get_mixing_network", "mixing_stem", "mixture_parts",
           "calibrate_shift", "calibrate_constant_alpha", "calibrate_range", "alpha_min_from_parts", "Calibration"]
