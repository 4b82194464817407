"""Certified robustness of the mixed classifier h^α (supplement Appendix D, Fig. SM1).

Notation: g is the accurate classifier, h the robust one, both as class probabilities; the mixed
classifier predicts argmax_i h^α_i(x) = argmax_i (1-α)·g_i(x) + α·h_i(x); y = argmax_i h_i(x) and
y' = argmax_{i≠y} h_i(x) is the runner-up.

- **Lemma 1.** If α ∈ [1/2, 1] and h keeps the margin μ = (1-α)/α on the ball ‖δ‖_p ≤ r
  (h_y(x+δ) ≥ h_i(x+δ) + μ for all i ≠ y), then h^α predicts y on that ball, whatever g is.
- **Theorem 1** (Lipschitz h, any ℓp):
  r^α_Lip(x) = min_{i≠y} [α(h_y(x) - h_i(x)) + α - 1] / [α(Lip(h_y) + Lip(h_i))].
- **Theorem 2** (h = E_ξ[h̄(x+ξ)], ξ ~ N(0, σ²I), h̄ ∈ [0, 1], ℓ2):
  r^α_σ(x) = (σ/2)[Φ⁻¹(α·h_y(x)) - Φ⁻¹(α·h_y'(x) + 1 - α)]; at α = 1 this is Cohen et al.'s radius.
- **Theorem 3.** The oracle α(x+δ) = 0 where g is right, 1 elsewhere, is right wherever g or h is.

Radii are 0 where the formula is ≤ 0 and for α < 1/2 (no certificate).  :class:`Smooth` is
Cohen et al.'s randomized-smoothing classifier (PREDICT, CERTIFY) and the Monte-Carlo estimate of
h(x) = E[h̄(x+ξ)] used by Fig. SM1, batched over many inputs at once.  Its default h̄ is the one-hot
vote of the base model (Cohen et al.'s smoothed classifier, and what the authors' Fig. SM1 code
mixes); the softmax is an option.  Fig. SM1 plugs the estimate into Theorems 1 and 2 without a
confidence bound, so at α = 1 an image whose n votes all agree gets an infinite Theorem 2 radius;

Modules: :mod:`.lipschitz` (Lemma 1, Theorem 1), :mod:`.smoothing` (Theorem 2, Φ⁻¹ radii, :class:`Smooth`,
Clopper-Pearson bounds), :mod:`.theorem3` (the oracle α), :mod:`.mixed` (h^α's predictions and certificates),
:mod:`.accuracy_curves` (Fig. SM1's curves, key radii, table and plot), :mod:`.inputs` (argument checks).
"""
from .accuracy_curves import (certified_accuracy, crossing_radius, curve_interval, fitted_x_max,  # noqa: F401
                              key_metrics, key_radii, largest_certified_radius, plot_certified_accuracy,
                              radii_table, table_radii)
from .lipschitz import has_margin, lemma1_certified, lipschitz_radius, required_margin  # noqa: F401
from .mixed import match_alpha, mixed_accuracy, mixed_certificates, mixed_predictions  # noqa: F401
from .smoothing import (ABSTAIN, Smooth, bounded_probs, lower_confidence_bound, rs_radius,  # noqa: F401
                        smoothed_lipschitz)
from .theorem3 import oracle_alpha, oracle_correct, theorem3_accuracy  # noqa: F401
