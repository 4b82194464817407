"""The attack runner, AutoAttack-style: one suite of named attacks, run in turn, per-image worst case.

A suite is an ordered list of :class:`Attack` s (:mod:`adasmooth.suites` names the project's: the trade-off
set, the tables' set, the headline's full set and the ladder's strong family; a user passes their own).
:func:`run` attacks each image only where it can still lower the worst case, as AutoAttack does:

- ``on="survivors"`` (the default): the images the model gets right on the clean input and under every
  earlier attack (AutoAttack's cascade; the costly attacks see only what the cheap ones left);
- ``on="all"``: every image, so the attack's own column reads "this attack alone" (AutoAttack's
  individual mode);
- ``on=(names...)``: the images right on the clean input and under the attacks named (e.g. APGD-T after
  the attacks of one threat model only).

An attack with ``subset`` (positions in x; Square) runs on the survivors among those positions and is
reported apart (:attr:`Run.subsets`), since it did not see every image.

With a ``question`` (a dict naming the model's content address and the suite's parameters) each attack's
per-image outcome is read from, or written to, the content-addressed cache: the key is the question, the
attack's name and the hash of the very images it attacked (:func:`attack_cache.key`), so an answer is a
function of what it says and two suites asking the same question share it.  ``shards`` splits the images
into contiguous parts, each run on its own (its own cache entries), so that processes can fill them side
by side; the shard count is part of a result's definition.  With ``jobs`` > 1 (on a CPU) that is what happens:
worker processes forked from this one attack the shards side by side and write their outcomes into the cache,
then this process reads them back, so the result is the one process's result (both cores busy to the end).
"""
from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from . import attack_cache
from .attack_cache import cached_values, images_hash, key
from .attacks import predict
from .runtime import progress_bar

log = logging.getLogger(__name__)

ON = ("survivors", "all")


@dataclass(frozen=True)
class Attack:
    """One attack of a suite: ``fn(x, y) -> x_adv`` (the model is bound in it), which images it attacks
    (``on``), and ``subset``: positions in x it is restricted to (reported apart)."""

    name: str
    fn: Callable
    on: str | tuple = "survivors"
    subset: Sequence[int] | torch.Tensor | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an attack needs a non-empty name, got {self.name!r}")
        if not callable(self.fn):
            raise ValueError(f"attack {self.name!r}: fn must be callable fn(x, y) -> x_adv")
        if not (self.on in ON or (isinstance(self.on, tuple) and all(isinstance(n, str) for n in self.on))):
            raise ValueError(f"attack {self.name!r}: on must be one of {ON} or a tuple of earlier attacks' names, "
                             f"got {self.on!r}")


@dataclass
class Run:
    """What :func:`run` found, per image (bool masks on the CPU).

    ``clean``: right on the clean input.  ``correct``: the per-image worst case, right on the clean input and
    under every attack without a subset.  ``masks[name]``: right on that attack's examples where it attacked,
    False where it did not (for ``on="all"``: the attack alone).  ``steps``: per attack ``{"attack", "n"
    (images attacked), "acc" (the worst case so far), "seconds", "cached"}``.  ``subsets[name]``:
    ``{"positions", "before", "after"}`` for an attack with a subset."""

    clean: torch.Tensor
    correct: torch.Tensor
    masks: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    subsets: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """The attacked accuracy: the fraction of images in :attr:`correct`."""
        return self.correct.float().mean().item() if len(self.correct) else 0.0

    @property
    def seconds(self) -> float:
        return sum(s["seconds"] for s in self.steps)

    @property
    def cached(self) -> bool:
        return all(s["cached"] for s in self.steps)


def shard_slices(n: int, shards: int) -> list[slice]:
    """``shards`` contiguous, nearly equal parts of ``range(n)``."""
    if not 1 <= shards <= max(n, 1):
        raise ValueError(f"shards must lie in [1, {n}] (the image count), got {shards}")
    bounds = [round(i * n / shards) for i in range(shards + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _check(attacks, x, y, survivors):
    if not torch.is_tensor(x) or x.ndim < 2 or not torch.is_tensor(y) or y.shape != (len(x),):
        raise ValueError(f"x must be a batch (N, ...) and y its N labels, got {tuple(getattr(x, 'shape', ()))} "
                         f"and {tuple(getattr(y, 'shape', ()))}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains non-finite values (NaN or inf)")
    if survivors is not None and tuple(survivors.shape) != (len(x),):
        raise ValueError(f"survivors must be a bool mask of shape ({len(x)},), got {tuple(survivors.shape)}")
    attacks = list(attacks)
    if not attacks or not all(isinstance(a, Attack) for a in attacks):
        raise ValueError("attacks must be a non-empty list of runner.Attack")
    seen = set()
    for a in attacks:
        if a.name in seen:
            raise ValueError(f"attack names must be unique, {a.name!r} appears twice")
        if isinstance(a.on, tuple) and not set(a.on) <= seen:
            raise ValueError(f"attack {a.name!r}: on names {sorted(set(a.on) - seen)}, "
                             "not earlier attacks of the suite")
        seen.add(a.name)
    return attacks


def run(model: Callable, x: torch.Tensor, y: torch.Tensor, attacks: Sequence[Attack], *,
        question: dict | None = None, label: str = "", use_cache: bool = True, survivors: torch.Tensor | None = None,
        batch_size: int | None = 500, shards: int = 1, only_shard: int | None = None, jobs: int = 1,
        progress: bool = False) -> Run:
    """Run the suite ``attacks`` on (x, y) (see the module docstring) and return the per-image :class:`Run`.

    ``question``: the model's content address and the suite's parameters, which with each attack's name and
    images key its cached outcome (None: nothing is cached).  ``survivors``: attack only the images it marks
    (those an earlier evaluation left correct), so :attr:`Run.correct` is the worst case over both.
    ``batch_size``: the judging forward passes.  ``shards`` / ``only_shard``: contiguous parts, each run on its
    own; with ``only_shard`` the masks hold that part alone (False elsewhere) and ``acc`` is over it.  ``jobs``:
    worker processes that attack the shards side by side (CPU; the outcomes travel through the cache)."""
    attacks = _check(attacks, x, y, survivors)
    if jobs > 1 and shards > 1 and only_shard is None:
        _fill_in_workers(model, x, y, attacks, dict(question=question, label=label, use_cache=use_cache,
                                                    survivors=survivors, batch_size=batch_size, shards=shards), jobs)
    if shards != 1 or only_shard is not None:
        return _sharded(model, x, y, attacks, question, label, use_cache, survivors, batch_size, shards, only_shard,
                        progress)
    dev = x.device
    clean = (predict(model, x, batch_size) == y).cpu()
    correct = clean.clone() if survivors is None else clean & survivors.cpu()
    out = Run(clean=clean, correct=correct)
    for a in progress_bar(attacks, progress=progress, desc="attacks", leave=False):
        pool = _pool(a, out, clean, correct)
        idx = pool.nonzero().flatten()
        if len(idx):
            xs, ys = x[idx.to(dev)], y[idx.to(dev)]

            def compute(a=a, xs=xs, ys=ys):
                adv = a.fn(xs, ys)
                if adv.shape != xs.shape:
                    raise ValueError(f"attack {a.name!r} returned shape {tuple(adv.shape)}, expected {tuple(xs.shape)}")
                return (predict(model, adv, batch_size) == ys).cpu()
            what = f"{label}: {a.name} on {len(idx)} images"
            if question is None:
                ok, secs, hit = _timed(compute)
            else:
                entry = key({**question, "attack": a.name, "images": images_hash(xs, ys)})
                ok, secs, hit = cached_values(entry, compute, use_cache, what=what, n=len(idx))
        else:
            ok, secs, hit = torch.zeros(0, dtype=torch.bool), 0.0, False
        mask = torch.zeros_like(clean)
        mask[idx] = ok
        out.masks[a.name] = mask
        if a.subset is not None:
            pos = torch.as_tensor(a.subset, dtype=torch.long)
            out.subsets[a.name] = {"positions": pos, "before": correct[pos].clone(),
                                   "after": (correct & ~pool | mask)[pos]}
        else:
            correct &= mask  # every image still counted as correct was in the pool (correct ⊆ pool)
        out.steps.append({"attack": a.name, "n": len(idx), "acc": correct.float().mean().item(),
                          "seconds": round(secs, 1), "cached": hit})
        log.info("%s: %s on %d images%s", label, a.name, len(idx), " (cached)" if hit else f" {secs:.0f} s")
    out.correct = correct
    return out


def _pool(a: Attack, out: Run, clean, correct) -> torch.Tensor:
    """The images attack ``a`` runs on (see the module docstring)."""
    if a.on == "all":
        pool = torch.ones_like(clean)
    elif a.on == "survivors":
        pool = correct.clone()
    else:
        pool = clean.clone()
        for n in a.on:
            pool &= out.masks[n]
    if a.subset is not None:
        sub = torch.zeros_like(pool)
        sub[torch.as_tensor(a.subset, dtype=torch.long)] = True
        pool &= sub
    return pool


def _timed(compute):
    t0 = time.perf_counter()
    value = compute()
    return value, time.perf_counter() - t0, False


def _sharded(model, x, y, attacks, question, label, use_cache, survivors, batch_size, shards, only_shard, progress):
    """:func:`run` on each contiguous part (or ``only_shard`` alone), the parts' results put side by side."""
    parts = shard_slices(len(y), shards)
    if only_shard is not None:
        if not 0 <= only_shard < shards:
            raise ValueError(f"only_shard must lie in [0, {shards}), got {only_shard}")
        parts = [parts[only_shard]]
    n = len(y)
    out = Run(clean=torch.zeros(n, dtype=torch.bool), correct=torch.zeros(n, dtype=torch.bool))
    covered = torch.zeros(n, dtype=torch.bool)
    steps: dict[str, dict] = {}
    subsets: dict[str, list] = {}
    for sl in parts:
        covered[sl] = True
        local = [a if a.subset is None else _local_subset(a, sl) for a in attacks]
        r = run(model, x[sl], y[sl], local, question=question, label=label, use_cache=use_cache,
                survivors=None if survivors is None else survivors[sl], batch_size=batch_size, progress=progress)
        out.clean[sl], out.correct[sl] = r.clean, r.correct
        for name, m in r.masks.items():
            out.masks.setdefault(name, torch.zeros(n, dtype=torch.bool))[sl] = m
        for s in r.steps:
            d = steps.setdefault(s["attack"], {"attack": s["attack"], "n": 0, "seconds": 0.0, "cached": True})
            d.update(n=d["n"] + s["n"], seconds=round(d["seconds"] + s["seconds"], 1),
                     cached=d["cached"] and s["cached"])
        for name, sub in r.subsets.items():
            subsets.setdefault(name, []).append({**sub, "positions": sub["positions"] + sl.start})
    worst = out.clean & covered if survivors is None else out.clean & covered & survivors.cpu()
    for a in attacks:  # the worst case so far, over the covered images
        if a.subset is None:
            worst &= out.masks[a.name]
        out.steps.append({**steps[a.name], "acc": int(worst.sum()) / max(int(covered.sum()), 1)})
    out.subsets = {name: {k: torch.cat([p[k] for p in ps]) for k in ("positions", "before", "after")}
                   for name, ps in subsets.items()}
    return out


_FORKED: dict = {}  # the job the forked workers inherit (closures cannot be pickled; fork copies them)


def _fill_in_workers(model, x, y, attacks, kw: dict, jobs: int) -> None:
    """Attack every shard in ``jobs`` forked worker processes (one thread each), writing the outcomes into the
    cache; merge the workers' cache counters into this process's (their entries are not verified again here)."""
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if kw["question"] is None or not kw["use_cache"]:
        raise ValueError("jobs > 1 passes the shards' outcomes through the attack cache: it needs a question and "
                         "use_cache=True")
    if x.device.type != "cpu":
        raise ValueError(f"jobs > 1 forks CPU worker processes; on {x.device.type} use jobs=1")
    _FORKED["job"] = (model, x, y, attacks, kw)
    try:
        with multiprocessing.get_context("fork").Pool(min(jobs, kw["shards"])) as pool:
            done = pool.map(_fill_shard, range(kw["shards"]), chunksize=1)
    finally:
        _FORKED.clear()
    for st in done:
        attack_cache.computed_elsewhere(st["computed_keys"])
    log.info("%s: %d shards attacked in %d worker processes, %d answers computed", kw["label"], kw["shards"],
             min(jobs, kw["shards"]), sum(st["computed"] for st in done))


def _fill_shard(i: int) -> dict:
    """In a forked worker: attack shard ``i`` of the inherited job; return what it computed."""
    torch.set_num_threads(1)
    model, x, y, attacks, kw = _FORKED["job"]
    before = len(attack_cache.stats["computed_keys"])
    with attack_cache.not_verifying():  # the parent verifies what it reads back
        run(model, x, y, attacks, only_shard=i, **kw)
    keys = attack_cache.stats["computed_keys"][before:]
    return {"computed": len(keys), "computed_keys": keys}


def _local_subset(a: Attack, sl: slice) -> Attack:
    """``a`` with its subset's positions that fall in the part ``sl``, counted from the part's start."""
    pos = torch.as_tensor(a.subset, dtype=torch.long)
    return Attack(a.name, a.fn, a.on, pos[(pos >= sl.start) & (pos < sl.stop)] - sl.start)
