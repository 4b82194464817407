"""One procedure per notebook: the experiments behind the supplement's figures and tables.

Each notebook is its parameters cell and one call, ``exp = experiments.<name>(globals())``, which checks the
parameters, loads the models and images (:func:`adasmooth.notebook.setup`), computes everything and returns an
:class:`Experiment`; ``exp.show()`` draws its figures (saved as PNG under ``fig_dir``) and prints its tables, and
``exp.save()`` writes the results JSON (:func:`adasmooth.results.write`) with every parameter of the notebook's
parameters cell recorded automatically (:func:`recorded_params`).  Tests and benchmarks call the same functions.

The procedures live in one module each, named after the notebook (``loss_ablation`` for
``05_loss_ablation``) and imported below, so ``experiments.<name>`` is the procedure, never its module.
"""
from .base import NOT_RECORDED, NOTEBOOKS, Experiment, Figure, new, one_axes, recorded_params  # noqa: F401
from .quickstart import quickstart
from .theory_checks import theory_checks
from .ri_ablation import ri_ablation
from .certified_radii import certified_radii
from .adaptive_vs_constant import adaptive_vs_constant
from .loss_ablation import loss_ablation
from .sigmoid_scale import sigmoid_scale
from .alpha_explorer import alpha_explorer
from .mixing_methods import mixing_methods
