"""The reproduction profiles: the parameters each notebook runs with under ``reproduce --profile NAME``.

- ``smoke``: tiny zoo variants, a hundred images, a few attack steps, a few α values; every notebook
  together in a few minutes on 2 CPU cores (the test suite runs it).
- ``default``: the embedded default (Fashion-MNIST, the zoo's SmallCNNs) at meaningful sizes; the whole
  suite, zoo training included, in about 60 minutes on 2 CPU cores (measured fresh: 3605 s, zoo and notebooks
  sharing two one-thread workers).
- ``paper``: CIFAR-10 with the supplement's settings (Table SM1, Fig. SM1, Tables SM2/SM3), for a GPU.

A profile's ``common`` parameters go to every notebook that declares them; ``notebooks[stem]`` adds
or replaces parameters of one notebook (and must only name declared ones).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    common: dict
    notebooks: dict = field(default_factory=dict)
    zoo_overrides: dict = field(default_factory=dict)
    private_zoo: bool = False           # keep the zoo in <results>/<profile>/zoo (tiny variants)
    figures_in_project: bool = False    # figures to <project>/figures (committed) instead of results/
    execution_timeout: float | None = None  # seconds per cell

    def params(self, stem: str, *, declared: dict, out_dir: str, fig_dir: str, zoo_root: str | None = None,
               device: str | None = None) -> dict:
        """The parameters of notebook ``stem``: the profile's common ones it declares, its own, the run's
        output folders, the zoo variant and (when given) the device."""
        p = {k: v for k, v in self.common.items() if k in declared}
        p.update(self.notebooks.get(stem, {}))
        run = {"out_dir": out_dir, "fig_dir": fig_dir, "zoo_overrides": dict(self.zoo_overrides)}
        if zoo_root is not None:
            run["zoo_root"] = zoo_root
        if device is not None:
            run["device"] = device
        p.update({k: v for k, v in run.items() if k in declared})
        return p


def log_grid(lo: float, hi: float, n: int, ends: bool = True) -> list[float]:
    """``n`` α values log-spaced in [lo, hi], plus 0 and 1 when ``ends`` (the curve's two end points)."""
    vals = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)] if n > 1 else [lo]
    vals = [round(v, 4) for v in vals]
    return sorted(set(([0.0, 1.0] if ends else []) + vals))


# The zoo variants the smoke profile trains in seconds (same as the tests' TINY fixture, so they share caches).
SMOKE_ZOO = {"train_subset": 3000, "epochs": 2, "eval_n": 200}

_SMOKE_MIX = dict(n_train=64, epochs=1, mix_batch_size=32, mix_steps_df=2, mix_width=8, n_eval=30, steps=1, apgd_iter=5)

SMOKE = Profile(
    "smoke",
    "Tiny models, a few dozen images, one or two attack steps: checks that every notebook runs end to end "
    "(the numbers are not meaningful).",
    # use_attack_cache False: the smoke run (and the tests) leave data/attack-cache alone
    common=dict(n_eval=50, steps=2, seed=0, batch_size=250, alphas=[0.0, 0.5, 1.0], use_attack_cache=False),
    notebooks={
        "00_quickstart": dict(attacks=["pgd_ce", "pgd_dlr", "transfer_g"]),
        "01_theory_checks": dict(n_points=40, n_perturb=10, lemma_trials=1000, grid_side=40, n_eval=40,
                                 alphas=[0.5, 0.8, 1.0], draw_alphas=[0.8, 1.0]),
        # only the tiny models other tests train too (standard, ℓ∞-AT, Gaussian σ = 0.25): SM2a/b reuse the
        # ℓ∞-AT h, and the RS baseline smooths the same base model with a smaller σ
        "02_ri_ablation": dict(n_eval=30, steps_fig1=1, steps_sm2=1, h_trades="fmnist-linf-at", h_l2="fmnist-linf-at"),
        "03_certified_radii": dict(n_eval=40, n_samples=32, h="fmnist-gauss-0.25", sigma_h=0.25,
                                   baseline="fmnist-gauss-0.25", sigma_baseline=0.12),
        "04_loss_ablation": dict(c_prod=[0.0, 0.2], c_ce=[0.0, 1.5], headline_n=30, square_queries=20, square_n=20,
                                 curve_positions=[0.75], curve_endpoints=False, budget_ladder=[1, 2],
                                 headline_mix_overrides=dict(train_subset=256, batch_size=32, steps_df=2, width=8),
                                 **_SMOKE_MIX),
        "05_sigmoid_scale": dict(scales=[1.0, 2.0], **_SMOKE_MIX),
        "06_alpha_explorer": dict(alphas=[0.0, 0.25, 0.5, 1.0], attacks=["pgd_ce", "transfer_g"]),
        # its own tiny learned mixer (not 04's: the two notebooks may run side by side in the same private zoo)
        "07_mixing_methods": dict(n_eval=30, curve_positions=[0.75], square_queries=20, square_n=20, apgd_iter=5,
                                  budget_ladder=[1, 2],
                                  nuts_n_fit=50, nuts_fit_steps=2,
                                  nuts_grid={"s": [0.2, 1.0], "p": [1.0, 2.0], "c": [-0.7, 0.0]},
                                  headline_mix_overrides=dict(train_subset=128, batch_size=32, steps_df=2, width=8)),
    },
    zoo_overrides=SMOKE_ZOO,
    private_zoo=True,
    execution_timeout=600,
)

# Tables SM2/SM3 mixing networks: a sixteenth of the supplement's epoch (27 steps of 128 clean + 128 attacked
# images of the "fit" split), training attacks of round(χ²(20)) steps with momentum U(0, 0.9), width 64 (about
# 2.5 minutes each on one CPU thread; shipped in data/zoo).  The headline network (learned.HEADLINE_MIX) trains a
# whole epoch (429 steps, 33 min); the session's CPU budget did not allow the same for twelve networks.
_DEFAULT_MIX = dict(n_train=3456, epochs=1, mix_batch_size=128, mix_steps_df=20, mix_width=64, mix_momentum=0.9,
                    n_eval=200)

DEFAULT = Profile(
    "default",
    "The embedded default: Fashion-MNIST, the zoo's SmallCNNs, ℓ∞ ε = 0.1 and ℓ2 ε = 1.0.",
    common=dict(n_eval=500, steps=20, seed=0, batch_size=500),
    notebooks={
        "00_quickstart": dict(n_eval=200, alphas=[0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0]),
        "01_theory_checks": dict(n_points=400, n_perturb=200, lemma_trials=100000, grid_side=200, n_eval=500),
        "02_ri_ablation": dict(n_eval=200, steps_fig1=10, steps_sm2=20, alphas=[0.0, 0.25, 0.5, 0.7, 0.85, 0.95, 1.0]),
        "03_certified_radii": dict(n_eval=500, n_samples=500),
        # the headline (1,000 images, the full attack set incl. Square-5000 on 200) is read from the shipped attack
        # cache (data/attack-cache, keyed by content): about 40 CPU-minutes per learned mixer from an empty cache
        # the levers beside the headline mixer: its range (clamped), diverse training attacks, a sixteenth of the epoch
        "04_loss_ablation": dict(_DEFAULT_MIX, headline_mixers=["fmnist-adaptive", "fmnist-adaptive-clamped",
                                                                "fmnist-adaptive-diverse", "fmnist-adaptive-sixteenth"]),
        "05_sigmoid_scale": dict(_DEFAULT_MIX),
        "06_alpha_explorer": dict(n_eval=200, alphas=[0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        # one matched point (the headline's position) on the headline's images and attack budget: constant α and α_θ are read from the attack cache (04's
        # headline), only MixedNUTS is attacked here
        "07_mixing_methods": dict(n_eval=1000, curve_positions=[0.5]),
    },
    figures_in_project=True,
    execution_timeout=3600,
)

_C10 = 8 / 255
PAPER = Profile(
    "paper",
    "CIFAR-10 with the supplement's settings (Table SM1, Fig. SM1, Tables SM2/SM3). Needs a GPU and CIFAR-10 "
    "(python -m adasmooth data fetch cifar10); the cifar10-* zoo models that are not cached are trained first "
    "(many GPU hours).",
    common=dict(dataset="cifar10", n_eval=2000, steps=20, seed=0, batch_size=200, eps=_C10),
    notebooks={
        "00_quickstart": dict(g="cifar10-standard-rn18", h="cifar10-linf-at-rn18",
                              alphas=log_grid(0.05, 0.99, 12)),
        "01_theory_checks": dict(g="cifar10-standard-rn18", h="cifar10-linf-at-rn18", n_eval=1000,
                                 n_points=1000, n_perturb=1000, lemma_trials=1000000, grid_side=300),
        "02_ri_ablation": dict(g="cifar10-standard-rn18", h_linf="cifar10-linf-at-rn18",
                               g_sm2a="cifar10-convnext-t", h_trades="cifar10-trades-wrn34",
                               h_l2="cifar10-l2-at-rn18", eps_linf=_C10, eps_l2=0.5, steps_fig1=10, steps_sm2=20,
                               step_size_sm2a=0.0027, step_size_sm2b=0.075, alphas=log_grid(0.02, 0.99, 12)),
        "03_certified_radii": dict(g="cifar10-convnext-t", h="cifar10-gauss-0.5-rn18", sigma_h=0.5,
                                   baseline="cifar10-gauss-0.25-rn18", sigma_baseline=0.25, n_eval=500,
                                   n_samples=10000),
        "04_loss_ablation": dict(g="cifar10-standard-rn18", h="cifar10-linf-at-rn18", target_clean=0.90,
                                 n_train=50000, epochs=3, n_eval=2000),
        "05_sigmoid_scale": dict(g="cifar10-standard-rn18", h="cifar10-linf-at-rn18", target_clean=0.90,
                                 n_train=50000, epochs=3, n_eval=2000),
        "06_alpha_explorer": dict(g="cifar10-standard-rn18", h="cifar10-linf-at-rn18", n_eval=1000,
                                  alphas=log_grid(0.05, 0.99, 10)),
        # no learned mixer is trained for CIFAR-10: constant α against MixedNUTS
        "07_mixing_methods": dict(g="cifar10-standard-rn18", h="cifar10-linf-at-rn18", learned_mixer=None,
                                  n_eval=1000),
    },
    execution_timeout=None,
)

PROFILES = {p.name: p for p in (SMOKE, DEFAULT, PAPER)}


def get(name: str) -> Profile:
    """The profile called ``name`` (``smoke``, ``default`` or ``paper``)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


