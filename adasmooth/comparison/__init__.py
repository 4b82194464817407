"""The honest comparison: the learned α_θ against the constant α, at matched clean accuracy.

Everything that is chosen (the head's shift, the evaluation range, the constant α) is chosen on the
validation split (``learned.choose_head``, :func:`val_calibration`); the test images only measure.
Both mixers face the same attack set, run AutoAttack-style (each attack only on the inputs every
earlier one left correct, so the last column is the per-image worst case):

- PGD with CE and margin losses, through α_θ (``full``, attacker's α-term w = 0 and 0.2) and with α_θ
  detached; PGD crafted on g alone and on h alone (transfers);
- against masking: PGD on softened surrogates of α_θ (γ/T, judged on the real model); detector
  evasion: the α-term at large weights, a two-phase attack that first drives α_θ toward g and then
  attacks the mixture from there, and PGD on the mixture with α_θ held at its clean value;
- APGD-CE and APGD-T through α_θ (pyautoattack), then Square (gradient-free, ``square_queries``) on a
  class-balanced subset of ``square_n`` images.

The constant α gets every attack that applies to it (those about α_θ do not).  Per-image results are
cached by content (model weights, mixer head, attack and its parameters, images): a rerun or another
notebook asking the same question reads the answer instead of recomputing it.  Intervals are
Clopper-Pearson (95 %), "A beats B" is McNemar's exact test on the same images.

Modules: :mod:`.statistics` (intervals, McNemar, AUC), :mod:`.attack_suite` (:class:`Budget`, :func:`attack_set`),
:mod:`.cached_run` (:func:`evaluate` with the cache, α_θ diagnostics, the test images), :mod:`.head_to_head`
(:func:`headline`, its tables, plot and :func:`verdict`), :mod:`.convergence` (the attack-budget ladder:
:func:`convergence`, its tables and plot), :mod:`.training_budget` (α_θ's training-budget curve); every name but
the last module's is re-exported here.
"""
from .attack_suite import Budget, attack_set  # noqa: F401
from .cached_run import _masks_doc, alpha_values, diagnostics, evaluate, test_images  # noqa: F401
from .convergence import LADDER, TOL_POINTS, ladder_tables, plot_ladder  # noqa: F401
from .convergence import run as convergence  # noqa: F401
from .head_to_head import finish_axes, headline, headline_tables, plot_headline, verdict  # noqa: F401
from . import training_budget  # noqa: F401
from ..statistics import auc, interval, mcnemar, summary  # noqa: F401
