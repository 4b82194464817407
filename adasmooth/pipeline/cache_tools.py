"""``python -m adasmooth cache check|verify``: the attack-cache questions of a profile's notebooks, asked
in this process without a kernel (each notebook's procedure runs with its profile parameters; figures and
results files are not written).

- :func:`check`: under :func:`attack_cache.checking` calibrations and clean forwards run, attacks do not; a
  question the cache cannot answer stops that notebook's check and is listed (later questions of a chain
  depend on its answer).
- :func:`verify`: under :func:`attack_cache.verifying` the procedures run and recompute a seeded sample of
  the cached answers they read (or the entries named), comparing them image by image.

Only the notebooks that read the attack cache (those declaring ``use_attack_cache``) are visited."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from .. import attack_cache, experiments
from .params import declared_parameters, plan


@dataclass
class Report:
    """What a check or a verification found, per notebook."""

    questions: dict = field(default_factory=dict)   # stem -> keys asked
    missing: dict = field(default_factory=dict)     # stem -> the first key the cache could not answer
    verified: dict = field(default_factory=dict)    # stem -> keys recomputed and compared

    def line(self) -> str:
        n = sum(len(q) for q in self.questions.values())
        return f"{n} questions, {n - len(self.missing)} cached, {len(self.missing)} missing"

    def unasked(self) -> list:
        """The cache's entries that no visited notebook asked for (stale: left by older keys or code)."""
        asked = {k for q in self.questions.values() for k in q}
        return sorted(p for p in attack_cache.cache_dir().glob("*.json") if p.stem not in asked)


def namespaces(profile: str, only=None):
    """``[(stem, namespace)]``: each selected notebook that reads the attack cache, its declared defaults
    overlaid with the profile's parameters, writing into a temporary folder."""
    out = []
    for src, params in plan(profile, only=only).notebooks:
        decl = declared_parameters(src)
        if "use_attack_cache" not in decl:
            continue
        tmp = tempfile.mkdtemp(prefix=f"adasmooth-{src.stem}-")
        ns = {n: d["default"] for n, d in decl.items()} | params | {"out_dir": tmp, "fig_dir": tmp,
                                                                    "progress": False, "train_missing": False}
        out.append((src.stem, ns))
    return out


def _procedure(stem: str):
    return getattr(experiments, stem[3:])


def check(profile: str, only=None) -> Report:
    """Ask every question of the profile's notebooks (see the module docstring)."""
    rep = Report()
    for stem, ns in namespaces(profile, only):
        with attack_cache.checking() as asked:
            try:
                _procedure(stem)(ns)
            except attack_cache.CacheMiss as miss:
                rep.missing[stem] = str(miss)
            rep.questions[stem] = list(asked)
    return rep


def verify(profile: str, only=None, *, fraction: float = 0.1, seed: int = 0, keys=None) -> Report:
    """Run the profile's notebooks' procedures recomputing a seeded ``fraction`` of the cached answers (or
    the entries ``keys``); a contradicted entry raises :class:`attack_cache.CacheMismatch`."""
    rep = Report()
    for stem, ns in namespaces(profile, only):
        before = len(attack_cache.stats["verified_keys"])
        with attack_cache.verifying(fraction, seed, keys):
            _procedure(stem)(ns)
        rep.verified[stem] = attack_cache.stats["verified_keys"][before:]
    return rep
