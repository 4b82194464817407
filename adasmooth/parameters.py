"""The numbered notebooks' parameters, each declared once: name, type, default, allowed values (domain), one-line
help and the value each reproduction profile runs it with.

Everything else reads :data:`NOTEBOOKS`: the notebooks' parameters cells are rendered from it (:func:`cell`,
written by ``python -m adasmooth notebooks sync``; ``tests/test_parameters.py`` fails when a committed cell differs),
the checks before any kernel starts and in each notebook's first cell (:func:`check`, :func:`check_notebook`), the
profiles' per-notebook values (:func:`profile_values`, read by :mod:`adasmooth.profiles`) and the procedures'
lookups (:func:`bind`: only declared names).  Types are those of ``pipeline.params`` (``int``, ``float``, ``str``,
``bool``, ``list``, ``dict``, ``None``, ``model``, ``models``, ``zoo``; alternatives joined by ``|``); domains are
built with :mod:`adasmooth.domains` (a ``Domain`` or a function returning one, called when first checked).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import domains
from .domains import (ALPHA, ANY_BOOL, ANY_PATH, COUNT, NON_NEGATIVE, POSITIVE, PROB, Domain, at_least_classes,
                      at_most, choices, each, existing_file, int_up_to, interval, item_of, keys_of, learned_mixer,
                      mix_keys, multiple_of_classes, number_or_each, radius, square_subset, step_ladder, zoo_keys,
                      ladder_budgets)

log = logging.getLogger(__name__)

PROFILE_NAMES = ("smoke", "default", "paper")
HEADER = "# Parameters (a profile of `python -m adasmooth reproduce` injects its values after this cell)"


@dataclass(frozen=True)
class Param:
    """One notebook parameter: ``profiles`` maps a profile name to the value that profile runs it with (a profile
    not named leaves the default); ``domain`` is None (its type only is checked), a ``Domain`` or a function
    returning one."""

    name: str
    type: str
    default: object
    help: str = ""
    domain: object = None
    profiles: dict = field(default_factory=dict)

    def but(self, **changes) -> "Param":
        """The same declaration with ``changes`` (fields of :class:`Param`)."""
        return replace(self, **changes)

    def allowed(self) -> Domain | None:
        """The parameter's domain (None: only its type is checked)."""
        return self.domain if self.domain is None or isinstance(self.domain, Domain) else self.domain()

    def line(self) -> str:
        """The parameters cell's line: ``name = default  # type: T  help``."""
        return f"{self.name} = {literal(self.default)}  # type: {self.type}" + (f"  {self.help}" if self.help else "")


def literal(v) -> str:
    """``v`` as the Python literal of a parameters cell (strings in double quotes)."""
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(x)}" for k, x in v.items()) + "}"
    if v is None or isinstance(v, (bool, int, float)):
        return repr(v)
    raise TypeError(f"a parameter's default must be None, a bool, number, str, list or dict, got {v!r}")


def log_grid(lo: float, hi: float, n: int, ends: bool = True) -> list[float]:
    """``n`` α values log-spaced in [lo, hi], plus 0 and 1 when ``ends`` (the curve's two end points)."""
    vals = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)] if n > 1 else [lo]
    vals = [round(v, 4) for v in vals]
    return sorted(set(([0.0, 1.0] if ends else []) + vals))


C10_EPS = 8 / 255  # the paper's CIFAR-10 ℓ∞ radius

# ---------------------------------------------------------------- shared declarations (reused with .but(...))

DATASET = Param("dataset", "str", "fashion-mnist", "dataset of the models", domains.dataset, {"paper": "cifar10"})
G = Param("g", "model", "fmnist-standard", "accurate classifier g", domains.model, {"paper": "cifar10-standard-rn18"})
H = Param("h", "model", "fmnist-linf-at", "robust classifier h", domains.model, {"paper": "cifar10-linf-at-rn18"})
NORM = Param("norm", "str", "linf", "attack norm", choices("linf", "l2"))
EPS = Param("eps", "float", 0.1, "attack radius ε", radius(), {"paper": C10_EPS})
STEPS = Param("steps", "int", 20, "PGD steps", COUNT, {"smoke": 2, "default": 20, "paper": 20})
N_EVAL = Param("n_eval", "int", 500, "test images (class-balanced)", multiple_of_classes())
ALPHAS = Param("alphas", "list", [0.0, 0.5, 1.0], "smoothing strengths α", each(ALPHA))
ATTACKS = Param("attacks", "list|None", None, "attacks of the per-image worst case (None: the library's default set)",
                domains.attacks)
OPTIONS = Param("options", "list", ["prob", "logit"], "mixing options (R is 1, on probabilities or on logits)",
                domains.options)
SEED = Param("seed", "int", 0, "every random computation is seeded", interval(0, integer=True),
             {"smoke": 0, "default": 0, "paper": 0})
DEVICE = Param("device", "str|None", None, "None: CUDA when available, else CPU", domains.device)
PROGRESS = Param("progress", "bool", False, "show progress bars", ANY_BOOL)
BATCH_SIZE = Param("batch_size", "int", 500, "images per forward/attack batch", COUNT,
                   {"smoke": 250, "default": 500, "paper": 200})
ATTACK_BATCH_SIZE = Param("attack_batch_size", "int", 250, "images per attack batch of the comparison (a part of the "
                          "attack cache key: the shipped cache was computed at 250)", COUNT)
OUT_DIR = Param("out_dir", "str|None", None, "the results JSON goes here (None: <project>/results/interactive)",
                ANY_PATH)
FIG_DIR = Param("fig_dir", "str|None", None,
                "the figures (PNG) go here (None: <project>/results/interactive/figures)", ANY_PATH)
ZOO_ROOT = Param("zoo_root", "str|None", None, "zoo cache folder (None: <data>/zoo)", ANY_PATH)
ZOO_OVERRIDES = Param("zoo_overrides", "dict", {}, "zoo recipe overrides (the smoke profile's tiny models)",
                      keys_of(zoo_keys, "zoo recipe fields (train.TrainConfig's and eval_n)"))
TRAIN_MISSING = Param("train_missing", "bool", True, "train zoo models that are not cached yet", ANY_BOOL)
# use_attack_cache False: the smoke run (and the tests) leave data/attack-cache alone
USE_ATTACK_CACHE = Param("use_attack_cache", "bool", True, "reuse attack results cached by content "
                         "(data/attack-cache): each (models, α, option, attacks, images) is attacked once", ANY_BOOL,
                         {"smoke": False})
PER_IMAGE_CACHE = USE_ATTACK_CACHE.but(help="reuse per-image attack results cached by content (data/attack-cache)")
APGD_ITER = Param("apgd_iter", "int", 100, "APGD-T iterations after PGD, through α_θ and on the constant-α baseline "
                  "(0: PGD only)", interval(0, integer=True), {"smoke": 5})
SQUARE_QUERIES = Param("square_queries", "int", 5000, "Square's query budget (gradient-free; 0: off)",
                       interval(0, integer=True), {"smoke": 20})
CURVE_POSITIONS = Param("curve_positions", "list", [0.25, 0.5, 0.75], "", each(PROB), {"smoke": [0.75]})
HEADLINE_MIX_OVERRIDES = Param("headline_mix_overrides", "dict", {}, "",
                               keys_of(mix_keys, "adaptive.MixingConfig fields"))

#: seed, device, progress, batch size: how every notebook runs
RUN = (SEED, DEVICE, PROGRESS, BATCH_SIZE)
#: where its results, figures and zoo go (the pipeline sets them)
FOLDERS = (OUT_DIR, FIG_DIR, ZOO_ROOT, ZOO_OVERRIDES, TRAIN_MISSING)

# notebooks 05 and 06: the mixing networks, their training and the common clean accuracy they are shifted to
_MIX_SMOKE = {"n_train": 64, "epochs": 1, "mix_batch_size": 32, "mix_steps_df": 2, "mix_width": 8, "n_eval": 30,
              "steps": 1, "apgd_iter": 5}
# Tables SM2/SM3 mixing networks (default profile): a sixteenth of the supplement's epoch (26 steps of 128 clean +
# 128 attacked images of the "fit" split), training attacks of round(χ²(20)) steps with momentum U(0, 0.9), width 64
# (about 2.5 minutes each on one CPU thread; shipped in data/zoo).  The headline network (learned.HEADLINE_MIX)
# trains a whole epoch (429 steps, 33 min); the session's CPU budget did not allow the same for twelve networks.
_MIX_DEFAULT = {"n_train": 3456, "epochs": 1, "mix_batch_size": 128, "mix_steps_df": 20, "mix_width": 64,
                "mix_momentum": 0.9, "n_eval": 200}


def _mix(name: str, *rest) -> dict:
    """The smoke and default values of mixing-network parameter ``name`` (``rest``: more profiles' values)."""
    out = {"smoke": _MIX_SMOKE[name]} if name in _MIX_SMOKE else {}
    if name in _MIX_DEFAULT:
        out["default"] = _MIX_DEFAULT[name]
    for prof, value in rest:
        out[prof] = value
    return out


#: the notebooks that train mixing networks: g and h by zoo name (the networks are cached beside them), the evaluation's
#: PGD steps
ZOO_PAIR = (DATASET, G.but(type="zoo", help="accurate classifier g (a zoo name: mixing networks are cached beside it)"),
            H.but(type="zoo", help="robust classifier h (a zoo name)"))
EVAL_STEPS = STEPS.but(help="PGD steps of the evaluation", profiles={"smoke": 1, "default": 20, "paper": 20})

MIXING_NETWORKS = (
    *ZOO_PAIR,
    NORM.but(help="attack norm (training and evaluation)"),
    EPS,
    EVAL_STEPS,
    APGD_ITER,
    Param("surrogate_scale", "float|None", 1.0, "at a larger Sigmoid scale, PGD also attacks α_θ softened to this "
          "scale (a saturated Sigmoid hides gradients; None: off)", POSITIVE),
    N_EVAL.but(help="test images (class-balanced), also used to calibrate the clean accuracy",
               profiles=_mix("n_eval", ("paper", 2000))),
    Param("target_clean", "float|None", None, "clean accuracy every model is shifted to (None: see target_position)",
          interval(0, 1, lo_open=True), {"paper": 0.90}),
    Param("target_position", "float", 0.5, "with target_clean None: acc(h) + target_position·(acc(g) - acc(h)) "
          "(the paper: 90 % between ~95 % and ~85 %)", PROB),
    Param("n_train", "int", 2000, "training images of each mixing network (class-balanced)", at_least_classes(),
          _mix("n_train", ("paper", 50000))),
    Param("epochs", "int", 1, "training epochs of each mixing network", COUNT, _mix("epochs", ("paper", 3))),
    Param("mix_batch_size", "int", 128, "clean images per training step (plus as many attacked ones)", COUNT,
          _mix("mix_batch_size")),
    Param("mix_steps_df", "int", 20, "training-attack steps ~ round(χ²(mix_steps_df))", COUNT, _mix("mix_steps_df")),
    Param("mix_width", "int", 64, "width of the mixing network", COUNT, _mix("mix_width")),
    Param("mix_momentum", "float", 0.9, "training attacks' PGD momentum μ ~ U(0, mix_momentum) (the published code: "
          "0.9)", interval(0, 1, hi_open=True), _mix("mix_momentum")),
)

RANGE_WIDTH = Param("range_width", "float|None", 0.15, "", interval(0, 1, lo_open=True))


def _range_width(what: str) -> Param:
    return RANGE_WIDTH.but(help=f"each {what} is also evaluated with the evaluation range (α_min, α_min + "
                                "range_width), α_min chosen for the same clean accuracy (None: without only)")


# ---------------------------------------------------------------- the notebooks

QUICKSTART = (
    DATASET, G, H, NORM.but(help="attack norm: linf or l2"), EPS, STEPS,
    N_EVAL.but(default=1000, profiles={"smoke": 50, "default": 200, "paper": 2000}),
    ALPHAS.but(default=[0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0],
               profiles={"smoke": [0.0, 0.5, 1.0], "default": [0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0],
                         "paper": log_grid(0.05, 0.99, 12)}),
    Param("space", "str", "prob", 'mix probabilities ("prob") or logits ("logit")', choices("prob", "logit")),
    ATTACKS.but(profiles={"smoke": ["pgd_ce", "pgd_dlr", "transfer_g"]}),
    *RUN, *FOLDERS, USE_ATTACK_CACHE,
)

_THM3 = " (Theorem 3 check)"
THEORY_CHECKS = (
    DATASET.but(help=DATASET.help + _THM3), G.but(help=G.help + _THM3), H.but(help=H.help + _THM3),
    NORM.but(help="attack norm of the Theorem 3 check"), EPS.but(help="attack radius of the Theorem 3 check"),
    STEPS.but(help="PGD steps (Theorem 3 check and the attack inside certified radii)"),
    N_EVAL.but(help="test images for the Theorem 3 check", profiles={"smoke": 40, "default": 500, "paper": 1000}),
    ALPHAS.but(default=[0.5, 0.6, 0.76, 0.9, 1.0], help="α values checked", profiles={"smoke": [0.5, 0.8, 1.0]}),
    Param("toy_sigma", "float", 0.15, "smoothing σ of the toy h", POSITIVE),
    Param("n_points", "int", 400, "toy points checked", COUNT, {"smoke": 40, "default": 400, "paper": 1000}),
    Param("n_perturb", "int", 200, "random perturbations per point inside its certified radius", COUNT,
          {"smoke": 10, "default": 200, "paper": 1000}),
    Param("lemma_trials", "int", 100000, "random (g, h) output pairs per α for Lemma 1", COUNT,
          {"smoke": 1000, "default": 100000, "paper": 1000000}),
    Param("grid_side", "int", 200, "resolution of the drawn regions", interval(2, integer=True),
          {"smoke": 40, "default": 200, "paper": 300}),
    Param("draw_alphas", "list", [0.6, 0.76, 1.0], "α values drawn", each(ALPHA), {"smoke": [0.8, 1.0]}),
    *RUN, *FOLDERS,
)

# smoke: only the tiny models other tests train too (standard, ℓ∞-AT, Gaussian σ = 0.25): SM2a/b reuse the ℓ∞-AT h
RI_ABLATION = (
    DATASET, G.but(help="g of Figures 1 and SM2b"),
    H.but(name="h_linf", help="h of Figure 1 (ℓ∞ adversarial training)"),
    G.but(name="g_sm2a", help="g of Figure SM2a (the paper: ConvNeXt-T)", profiles={"paper": "cifar10-convnext-t"}),
    H.but(name="h_trades", default="fmnist-trades", help="h of Figure SM2a (TRADES)",
          profiles={"smoke": "fmnist-linf-at", "paper": "cifar10-trades-wrn34"}),
    H.but(name="h_l2", default="fmnist-l2-at", help="h of Figure SM2b (ℓ2 adversarial training)",
          profiles={"smoke": "fmnist-linf-at", "paper": "cifar10-l2-at-rn18"}),
    Param("panels", "list", ["fig1", "sm2a", "sm2b"], "which panels to compute", each(choices("fig1", "sm2a", "sm2b"))),
    EPS.but(name="eps_linf", help="ℓ∞ radius (Figures 1, SM2a)", domain=radius("linf")),
    EPS.but(name="eps_l2", default=1.0, help="ℓ2 radius (Figure SM2b)", domain=radius("l2"), profiles={"paper": 0.5}),
    STEPS.but(name="steps_fig1", default=10, help="PGD steps of Figure 1", profiles={"smoke": 1, "default": 10,
                                                                                     "paper": 10}),
    STEPS.but(name="steps_sm2", help="PGD steps of Figures SM2a/b", profiles={"smoke": 1, "default": 20, "paper": 20}),
    Param("step_size_sm2a", "float|None", None, "PGD step of SM2a (None: 2.5 ε/steps)", POSITIVE, {"paper": 0.0027}),
    Param("step_size_sm2b", "float|None", None, "PGD step of SM2b (None: 2.5 ε/steps)", POSITIVE, {"paper": 0.075}),
    OPTIONS.but(default=["logit", "prob", "prob_grad_g", "prob_grad_ratio"], help="the R options compared"),
    ATTACKS.but(type="list", default=["pgd_ce", "transfer_g"],
                help="per-image worst case over these (the paper: PGD on the mix, PGD on g)"),
    ALPHAS.but(default=[0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0],
               profiles={"smoke": [0.0, 0.5, 1.0], "default": [0.0, 0.25, 0.5, 0.7, 0.85, 0.95, 1.0],
                         "paper": log_grid(0.02, 0.99, 12)}),
    N_EVAL.but(default=300, profiles={"smoke": 30, "default": 200, "paper": 2000}),
    *RUN, *FOLDERS, USE_ATTACK_CACHE,
)

# smoke: the RS baseline smooths the same base model as h with a smaller σ
CERTIFIED_RADII = (
    DATASET, G.but(profiles={"paper": "cifar10-convnext-t"}),
    H.but(default="fmnist-gauss-0.5", help="base model of the RS classifier h (trained with Gaussian noise σ_h)",
          profiles={"smoke": "fmnist-gauss-0.25", "paper": "cifar10-gauss-0.5-rn18"}),
    Param("sigma_h", "float", 0.5, "smoothing σ of h", POSITIVE, {"smoke": 0.25, "paper": 0.5}),
    H.but(name="baseline", default="fmnist-gauss-0.25", help="base model of the baseline RS classifier",
          profiles={"smoke": "fmnist-gauss-0.25", "paper": "cifar10-gauss-0.25-rn18"}),
    Param("sigma_baseline", "float", 0.25, "smoothing σ of the baseline", POSITIVE, {"smoke": 0.12, "paper": 0.25}),
    Param("alpha", "float|None", None, "α of h^α (None: match the baseline's clean accuracy)", ALPHA),
    N_EVAL.but(profiles={"smoke": 40, "default": 200, "paper": 500}),
    Param("n_samples", "int", 1000, "noise draws per image", interval(2, integer=True),
          {"smoke": 32, "default": 10000, "paper": 10000}),
    Param("failure_prob", "float|None", 0.001, "Clopper-Pearson failure probability of the radii (None: plug-in "
          "estimates, as the paper)", interval(0, 1, lo_open=True, hi_open=True)),
    Param("r_max", "float", 2.0, "largest radius of the dense grid the curves are computed on (the figure's x range "
          "fits the curves)", POSITIVE),
    Param("radii_table", "list", [0.0, 0.25, 0.5, 1.0, 1.5], "radii listed in the table (the crossing and each "
          "curve's largest certified radius are added)", each(NON_NEGATIVE)),
    PER_IMAGE_CACHE.but(help="reuse the noise votes cached by content (data/attack-cache): each (model, σ, draws, "
                             "seed, images) is sampled once"),
    *RUN, *FOLDERS,
)

# Table SM2 (notebook 05): the composite loss's weights, each network shifted to the common clean accuracy
LOSS_ABLATION = (
    *MIXING_NETWORKS,
    Param("c_prod", "list", [0.0, 0.1, 0.2], "values of c_prod (rows of Table SM2)", each(NON_NEGATIVE),
          {"smoke": [0.0, 0.2]}),
    Param("c_ce", "list", [0.0, 0.5, 1.0, 1.5], "values of c_CE (columns; c_BCE is c_sum - c_CE)",
          each(at_most("c_sum")), {"smoke": [0.0, 1.5]}),
    Param("c_sum", "float", 1.5, "c_CE + c_BCE", POSITIVE),
    _range_width("network"),
    PER_IMAGE_CACHE,
    *RUN, *FOLDERS,
)

# the headline (notebook 04; default profile: 1,000 images, the full attack set incl. Square-5000 on 200) is read from
# the shipped attack cache (data/attack-cache, keyed by content): about 40 CPU-minutes per learned mixer from an empty
# cache; the levers beside the headline mixer: its range (clamped), diverse training attacks, a sixteenth of the epoch
ADAPTIVE_VS_CONSTANT = (
    *ZOO_PAIR,
    NORM,
    EPS,
    EVAL_STEPS,
    APGD_ITER.but(help="APGD-CE and APGD-T iterations of the base attack set (0: off)"),
    Param("headline_mixers", "list", ["fmnist-adaptive", "fmnist-adaptive-clamped"],
          "learned mixers of the headline (zoo names)", each(learned_mixer(), empty=True),
          {"default": ["fmnist-adaptive", "fmnist-adaptive-clamped", "fmnist-adaptive-diverse",
                       "fmnist-adaptive-sixteenth"]}),
    N_EVAL.but(name="headline_n", default=1000, help="test images of the headline (class-balanced)",
               profiles={"smoke": 30}),
    HEADLINE_MIX_OVERRIDES.but(help="mixing-network overrides of the headline mixers (the smoke profile's tiny ones)",
                               profiles={"smoke": {"train_subset": 256, "batch_size": 32, "steps_df": 2, "width": 8}}),
    SQUARE_QUERIES.but(help="Square's query budget in the headline (gradient-free; 0: off)"),
    Param("square_n", "int", 200, "headline images (class-balanced subset) Square runs on", square_subset("headline_n"),
          {"smoke": 20}),
    Param("budget_ladder", "list", [20, 50, 100, 200], "attack-budget ladder: PGD steps per attack of the strong "
          "attack family, run in turn on what the lower budgets left ([]: off)", step_ladder, {"smoke": [1, 2]}),
    Param("ladder_mixers", "list", ["fmnist-adaptive"], "headline mixers that climb the ladder beside the constant α",
          each(item_of("headline_mixers"), empty=True), {"default": ["fmnist-adaptive", "fmnist-adaptive-diverse"]}),
    # the diverse lever climbed to 100 steps (session 13); its 200-step rung did not fit the CPU time
    Param("ladder_budgets", "dict", {}, "per ladder mixer, the budgets of budget_ladder it climbs when not all (e.g. "
          "for lack of CPU time; its reading follows the same rule on those)", ladder_budgets,
          {"default": {"fmnist-adaptive-diverse": [20, 50, 100]}}),
    Param("ladder_shards", "int", 2, "the ladder's images in this many contiguous parts (each its own cache entries; "
          "several processes can fill them)", int_up_to("headline_n")),
    Param("ladder_jobs", "int", 1, "worker processes that attack each rung's shards side by side (CPU only; the "
          "results are the same for any value)", int_up_to("ladder_shards")),
    Param("budget_mixers", "list", [], "α_θ's training-budget curve: learned mixers of the headline recipe trained "
          "for fewer steps, each against the constant α with the headline's attack set ([]: off)",
          each(learned_mixer(), empty=True),
          {"default": ["fmnist-adaptive-sixteenth", "fmnist-adaptive-eighth", "fmnist-adaptive-quarter",
                       "fmnist-adaptive-half", "fmnist-adaptive"]}),
    CURVE_POSITIONS.but(help="the curves: positions p in [0, 1] between acc(h) and acc(g) (validation) where α_θ's "
                             "shift and the constant α are matched ([]: off)", domain=each(PROB, empty=True)),
    Param("curve_endpoints", "bool", True, "the curves' common ends: g (α 0) and h (α 1), attacked like the constant α",
          ANY_BOOL, {"smoke": False}),
    PER_IMAGE_CACHE,
    SEED, DEVICE, PROGRESS, ATTACK_BATCH_SIZE, *FOLDERS,
)

SIGMOID_SCALE = (
    *MIXING_NETWORKS,
    Param("scales", "list", [0.5, 1.0, 2.0, 4.0], "Sigmoid scales compared", each(POSITIVE), {"smoke": [1.0, 2.0]}),
    Param("c_ce", "float", 0.0, "loss weights of the network (Table SM2's best)", number_or_each(NON_NEGATIVE)),
    Param("c_bce", "float", 1.5, "", NON_NEGATIVE),
    Param("c_prod", "float", 0.2, "", number_or_each(NON_NEGATIVE)),
    _range_width("scale"),
    *RUN, *FOLDERS, USE_ATTACK_CACHE.but(help="reuse attack results cached by content (data/attack-cache)"),
)

ALPHA_EXPLORER = (
    DATASET, G, H, NORM, EPS, STEPS.but(help="PGD steps of the precomputed grid"),
    N_EVAL.but(profiles={"smoke": 50, "default": 200, "paper": 1000}),
    ALPHAS.but(default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], help="α grid of the attacked accuracy",
               profiles={"smoke": [0.0, 0.25, 0.5, 1.0], "default": [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                         "paper": log_grid(0.05, 0.99, 10)}),
    OPTIONS,
    Param("alpha", "float", 0.5, "initial slider position", ALPHA),
    ATTACKS.but(profiles={"smoke": ["pgd_ce", "transfer_g"]}),
    Param("grid_from", "str|None", None, "a results JSON of this notebook whose recorded grid is shown instead of "
          "computing it (the app: results/default)",
          existing_file("an existing results JSON of notebook 07 (None: compute the grid)")),
    *RUN, *FOLDERS, USE_ATTACK_CACHE,
)

# smoke: its own tiny learned mixer (not 04's: the two notebooks may run side by side in the same private zoo);
# default: one matched point (the headline's position) on the headline's images and attack budget: constant α and α_θ
# are read from the attack cache (04's headline), only MixedNUTS is attacked here; paper: no learned mixer is trained
# for CIFAR-10, constant α against MixedNUTS
MIXING_METHODS = (
    DATASET, G.but(type="zoo", help="accurate classifier g (a zoo name)"),
    H.but(type="zoo", help="robust classifier h (a zoo name)"),
    Param("learned_mixer", "str|None", "fmnist-adaptive", "the learned α_θ compared (a learned mixer of this g and h; "
          "None: left out)", learned_mixer("a learned mixer name (or None)"), {"paper": None}),
    NORM, EPS,
    STEPS.but(help="PGD steps of the evaluation attacks (and of the NUTS fit's attack on h, see nuts_fit_steps)"),
    APGD_ITER.but(help="APGD-CE and APGD-T iterations (0: off)"),
    SQUARE_QUERIES,
    Param("square_n", "int", 200, "test images (class-balanced subset) Square runs on", square_subset("n_eval"),
          {"smoke": 20}),
    N_EVAL.but(help="test images (class-balanced), the same for every method",
               profiles={"smoke": 30, "default": 1000, "paper": 1000}),
    CURVE_POSITIONS.but(help="positions p in [0, 1] from acc(h) to acc(g) on the validation split where the methods "
                             "are matched", profiles={"smoke": [0.75], "default": [0.5]}),
    Param("curve_endpoints", "bool", False, "also attack g (α 0) and h (α 1) alone, as the constant α is attacked",
          ANY_BOOL),
    Param("budget_ladder", "list", [20, 50, 100, 200], "attack-budget ladder: PGD steps per attack of the strong "
          "attack family, run in turn on what the lower budgets left, for every method at every position ([]: off)",
          step_ladder, {"smoke": [1, 2]}),
    Param("ladder_shards", "int", 2, "the ladder's images in this many contiguous parts (each its own cache entries; "
          "several processes can fill them)", int_up_to("n_eval")),
    Param("nuts_percentile", "float", 95.0, "MixedNUTS fit: percent of h's attacked-correct validation margins kept "
          "above the cutoff", interval(0, 100, lo_open=True, hi_open=True)),
    Param("nuts_grid", "dict|None", None, "MixedNUTS fit: grid of s, p and c values (None: nuts.DEFAULT_GRID)",
          domains.nuts_grid, {"smoke": {"s": [0.2, 1.0], "p": [1.0, 2.0], "c": [-0.7, 0.0]}}),
    Param("nuts_k", "int|None", None, "MixedNUTS map: normalise over the k largest logits (None: all)",
          interval(2, integer=True)),
    Param("nuts_n_fit", "int", 1000, "MixedNUTS fit: validation images (class-balanced)", at_least_classes(),
          {"smoke": 50}),
    Param("nuts_fit_steps", "int", 20, "MixedNUTS fit: PGD steps of the attack on h", COUNT, {"smoke": 2}),
    Param("nuts_smooth", "float", 1.0, "temperature of g's softmax, the smooth stand-in of its argmax that attacks "
          "differentiate", POSITIVE),
    HEADLINE_MIX_OVERRIDES.but(help="mixing-network overrides of the learned mixer (the smoke profile's tiny one)",
                               profiles={"smoke": {"train_subset": 128, "batch_size": 32, "steps_df": 2, "width": 8}}),
    PER_IMAGE_CACHE,
    *RUN, ATTACK_BATCH_SIZE, *FOLDERS[:-1],
    TRAIN_MISSING.but(help="train zoo models (and the learned mixer) that are not cached yet"),
)


def _table(decls: dict) -> dict[str, dict[str, Param]]:
    """``{stem: {name: Param}}``, refusing a name declared twice or a profile that does not exist."""
    out = {}
    for stem, params in decls.items():
        table = {}
        for p in params:
            if p.name in table:
                raise ValueError(f"{stem}: parameter {p.name!r} is declared twice")
            unknown = sorted(set(p.profiles) - set(PROFILE_NAMES))
            if unknown:
                raise ValueError(f"{stem}: parameter {p.name!r} names unknown profile(s) {unknown}")
            table[p.name] = p
        out[stem] = table
    return out


#: notebook stem -> {parameter name: its declaration}, in the order of the parameters cell
NOTEBOOKS = _table({
    "00_quickstart": QUICKSTART,
    "01_theory_checks": THEORY_CHECKS,
    "02_ri_ablation": RI_ABLATION,
    "03_certified_radii": CERTIFIED_RADII,
    "04_adaptive_vs_constant": ADAPTIVE_VS_CONSTANT,
    "05_loss_ablation": LOSS_ABLATION,
    "06_sigmoid_scale": SIGMOID_SCALE,
    "07_alpha_explorer": ALPHA_EXPLORER,
    "08_mixing_methods": MIXING_METHODS,
})

#: the shared declarations by name: the domains of a notebook that has no declarations here (a test's, your own)
SHARED = {p.name: p for p in (DATASET, G, H, NORM, EPS, STEPS, N_EVAL, ALPHAS, ATTACKS, OPTIONS, *RUN,
                              ATTACK_BATCH_SIZE, *FOLDERS, USE_ATTACK_CACHE)}


def declared(stem: str) -> dict[str, Param]:
    """The declarations of notebook ``stem`` (``ValueError`` naming the known notebooks if it has none)."""
    if stem not in NOTEBOOKS:
        raise ValueError(f"no parameters are declared for notebook {stem!r} in adasmooth/parameters.py; "
                         f"known: {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[stem]


def defaults(stem: str) -> dict:
    """``{name: default}`` of notebook ``stem``."""
    return {n: p.default for n, p in declared(stem).items()}


def profile_values(profile: str) -> dict[str, dict]:
    """``{stem: {name: value}}``: what ``profile`` sets on each notebook (parameters it leaves out keep their
    defaults)."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILE_NAMES)}")
    return {stem: {n: p.profiles[profile] for n, p in table.items() if profile in p.profiles}
            for stem, table in NOTEBOOKS.items()}


# ---------------------------------------------------------------- the parameters cells

def cell(stem: str) -> str:
    """The source of notebook ``stem``'s parameters cell, rendered from its declarations."""
    return "\n".join([HEADER] + [p.line() for p in declared(stem).values()])


def _parameters_cell(nb, path):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{path}: expected one cell tagged 'parameters', found {len(tagged)}")
    return tagged[0]


def out_of_sync(nb_dir) -> list[Path]:
    """The declared notebooks in folder ``nb_dir`` whose parameters cell differs from :func:`cell`."""
    import nbformat

    out = []
    for stem in NOTEBOOKS:
        src = Path(nb_dir) / f"{stem}.ipynb"
        if not src.is_file():
            raise FileNotFoundError(f"{src} not found: adasmooth/parameters.py declares notebook {stem}")
        if _parameters_cell(nbformat.read(str(src), as_version=4), src).source != cell(stem):
            out.append(src)
    return out


def sync(nb_dir) -> list[Path]:
    """Rewrite the parameters cell of every declared notebook in folder ``nb_dir`` that differs from its declarations
    (its other cells untouched); return the notebooks written."""
    import nbformat

    written = []
    for src in out_of_sync(nb_dir):
        nb = nbformat.read(str(src), as_version=4)
        _parameters_cell(nb, src).source = cell(src.stem)
        nbformat.write(nb, str(src))
        log.info("rewrote the parameters cell of %s", src)
        written.append(src)
    return written


# ---------------------------------------------------------------- checks

def domain(stem: str, name: str) -> Domain | None:
    """The domain of parameter ``name`` of notebook ``stem`` (None: only its type is checked); a notebook without
    declarations gets the shared parameters' domains."""
    p = NOTEBOOKS[stem].get(name) if stem in NOTEBOOKS else SHARED.get(name)
    return None if p is None else p.allowed()


def problems(stem: str, params: dict, names=None) -> list[str]:
    """One line per parameter of ``params`` (those in ``names``, default all) outside its domain."""
    out = []
    for name in (params if names is None else names):
        d, v = domain(stem, name), params[name]
        if d is not None and v is not None and not d.ok(v, params):
            out.append(f"parameter {name!r} = {v!r} is not allowed: must be "
                       f"{d.text.format(k=domains.classes(params))}")
    return out


def check(stem: str, params: dict, names=None) -> None:
    """``ValueError`` naming notebook ``stem`` and every parameter of ``params`` outside its domain."""
    bad = problems(stem, params, names)
    if bad:
        raise ValueError(f"{stem}: " + "; ".join(bad))


def check_notebook(stem: str, namespace: dict) -> None:
    """The check of a notebook's first cell: every declared parameter in ``namespace`` (its globals)."""
    known = NOTEBOOKS.get(stem, SHARED)
    names = [n for n in namespace if n in known]
    check(stem, {n: namespace[n] for n in names}, names)


# ---------------------------------------------------------------- the procedures' view

class Values(Mapping):
    """A notebook's parameters as its procedure reads them, ``p.name`` or ``p["name"]``: declared names only
    (``KeyError`` / ``AttributeError`` naming the notebook otherwise)."""

    def __init__(self, stem: str, namespace: Mapping):
        self._stem, self._decl, self._ns = stem, declared(stem), namespace

    def __getitem__(self, name):
        if name not in self._decl:
            raise KeyError(f"{self._stem} declares no parameter {name!r} (adasmooth/parameters.py)")
        if name not in self._ns:
            raise KeyError(f"{self._stem}: parameter {name!r} was not given")
        return self._ns[name]

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(e.args[0]) from None

    def __iter__(self):
        return (n for n in self._decl if n in self._ns)

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return f"Values({self._stem!r}, {dict(self)!r})"


def bind(stem: str, namespace: Mapping) -> Values:
    """Notebook ``stem``'s parameters in ``namespace`` (its globals) as its procedure reads them."""
    return Values(stem, namespace)
