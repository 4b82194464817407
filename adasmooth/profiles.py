"""The reproduction profiles: the parameters each notebook runs with under ``reproduce --profile NAME``.

- ``smoke``: tiny zoo variants, a hundred images, a few attack steps, a few α values; every notebook
  together in a few minutes on 2 CPU cores (the test suite runs it).
- ``default``: the embedded default (Fashion-MNIST, the zoo's SmallCNNs) at meaningful sizes; the whole
  suite, zoo training included, in about 60 minutes on 2 CPU cores (measured fresh: 3605 s, zoo and notebooks
  sharing two one-thread workers).
- ``paper``: CIFAR-10 with the supplement's settings (Table SM1, Fig. SM1, Tables SM2/SM3), for a GPU.

The three profiles' per-notebook values are declared with the parameters (``profiles=`` of each
:class:`adasmooth.parameters.Param`) and read from there into ``notebooks``.  A profile's ``common`` parameters
go to every notebook that declares them (the built-in profiles have none; a test's or your own may); ``notebooks[stem]``
adds or replaces parameters of one notebook (and must only name declared ones).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import parameters


@dataclass(frozen=True)
class Profile:
    """A named set of notebook parameters and where a run keeps its models, figures and results."""

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


# The zoo variants the smoke profile trains in seconds (same as the tests' TINY fixture, so they share caches).
SMOKE_ZOO = {"train_subset": 3000, "epochs": 2, "eval_n": 200}

SMOKE = Profile(
    "smoke",
    "Tiny models, a few dozen images, one or two attack steps: checks that every notebook runs end to end "
    "(the numbers are not meaningful).",
    common={},
    notebooks=parameters.profile_values("smoke"),
    zoo_overrides=SMOKE_ZOO,
    private_zoo=True,
    execution_timeout=600,
)

DEFAULT = Profile(
    "default",
    "The embedded default: Fashion-MNIST, the zoo's SmallCNNs, ℓ∞ ε = 0.1 and ℓ2 ε = 1.0.",
    common={},
    notebooks=parameters.profile_values("default"),
    figures_in_project=True,
    execution_timeout=3600,
)

PAPER = Profile(
    "paper",
    "CIFAR-10 with the supplement's settings (Table SM1, Fig. SM1, Tables SM2/SM3). Needs a GPU and CIFAR-10 "
    "(python -m adasmooth data fetch cifar10); the cifar10-* zoo models that are not cached are trained first "
    "(many GPU hours).",
    common={},
    notebooks=parameters.profile_values("paper"),
    execution_timeout=None,
)

PROFILES = {p.name: p for p in (SMOKE, DEFAULT, PAPER)}


def get(name: str) -> Profile:
    """The profile called ``name`` (``smoke``, ``default`` or ``paper``)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


