"""``reproduce`` itself (:func:`run`): validate (:func:`~adasmooth.pipeline.params.plan`), train the missing zoo
models, run the selected notebooks (:mod:`~adasmooth.pipeline.scheduler`) and write the summary
(:mod:`~adasmooth.pipeline.summary`)."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .. import profiles, resolve, results, shipped, zoo
from ..runtime import cpu_cores
from . import params as _params, runlock
from .execute import Outcome, _kept_result
from .params import Plan, fingerprint, is_current, model_specs, plan, select
from .progress import Heartbeat
from .scheduler import _notebook_jobs, _run_serial, _run_side_by_side, _trained_seconds
from .summary import update_readme, write_summary

log = logging.getLogger(__name__)


def _zoo_names(specs) -> list[str]:
    return list(dict.fromkeys(s for s in specs if resolve.kind(s) == "zoo"))


def _zoo_rows(names: list[str], trained: dict, *, overrides, root, wall: float | None, also=()) -> list[dict]:
    """One timing row per zoo model in ``names`` (``trained``: name -> seconds for those this run trained,
    None for one that failed to train), a wall-time row when any was trained, and a "cached" row for
    each cached model only ``also`` names."""
    def status(n):
        return "cached" if n not in trained else "failed" if trained[n] is None else "trained"

    rows = [{"model": n, "status": status(n), "seconds": round(trained.get(n) or 0.0, 1)} for n in names]
    if trained and wall is not None:
        rows.append({"model": "(all, side by side)", "status": "wall time", "seconds": round(wall, 1)})
    rows += [{"model": n, "status": "cached", "seconds": 0.0} for n in _zoo_names(also)
             if n not in names and zoo.is_cached(n, overrides or None, root)]
    return rows


def prepare_zoo(specs: list[str], *, overrides: dict | None, root, device=None, progress=False,
                also: list[str] = ()) -> list[dict]:
    """Train the zoo models among ``specs`` that are not cached; return one timing row per zoo model,
    plus a "cached" row for each cached zoo model that only ``also`` names (never trained here)."""
    names = _zoo_names(specs)
    zoo.discard_corrupt(names, overrides=overrides or None, root=root)  # retrained (a shipped one: an error)
    missing = [n for n in names if not zoo.is_cached(n, overrides or None, root)]
    if missing:
        log.info("training zoo models %s", missing)
    t0 = time.perf_counter()
    zoo.train_many(names, overrides=overrides or None, root=root, device=device, progress=progress)
    wall = time.perf_counter() - t0
    return _zoo_rows(names, {n: _trained_seconds(n, overrides, root) for n in missing}, overrides=overrides,
                     root=root, wall=wall, also=also)


def run(profile: str | profiles.Profile, *, only=None, force: bool = False, device: str | None = None,
        progress: bool = False, out_root=None, fig_dir=None, zoo_root=None, nb_dir=None,
        jobs: int | None = None, retrain: bool = False, params: dict | None = None, verify_fraction: float = 0.1,
        verify_seed: int = 0) -> list[Outcome]:
    """Validate (:func:`plan`), train missing zoo models, run the selected notebooks and write the
    summary; return the selected notebooks' outcomes (in notebook order).  On a CPU ``jobs`` notebooks
    (default: one per core) run side by side, each kernel with cores // jobs threads.  The summary also
    lists the notebooks left out by ``only`` that have a recorded result, current or not (``--only 02``
    rewrites 02's section and keeps the others' and the verdict table); the wall time it quotes for the
    main job comes only from a whole run (every notebook ran and completed).

    One run at a time per results folder (:mod:`.runlock`): a second one stops at once naming the first's
    pid; a results or figures folder that cannot be written is one ``RuntimeError`` line naming it.

    Shipped checkpoints (``shipped``) are verified first and never trained: a missing or modified one
    stops the run with how to restore it.  With ``retrain`` every model is trained into a fresh cache
    ``results/<profile>-retrain/zoo`` (results and figures beside it) and ``retrain_comparison.md``
    compares each retrained model with the shipped one.

    Every kernel recomputes a seeded ``verify_fraction`` of the cached attack answers it reads (at least the
    first) and fails on one that its recomputation contradicts (:mod:`adasmooth.attack_cache`); a line at
    each notebook's start and end and every 30 s shows the progress (:mod:`.progress`)."""
    prof = profiles.get(profile) if isinstance(profile, str) else profile
    if retrain:
        out_root = Path(out_root) if out_root else _params.PROJECT / "results" / f"{prof.name}-retrain"
        zoo_root = Path(zoo_root) if zoo_root else out_root / "zoo"
        fig_dir = fig_dir or out_root / "figures"
    every = plan(profile, device=device, out_root=out_root, fig_dir=fig_dir, zoo_root=zoo_root, nb_dir=nb_dir,
                 params=params, params_only=only)
    chosen = {p.stem for p in select([src for src, _ in every.notebooks], only)}
    todo = [(src, params) for src, params in every.notebooks if src.stem in chosen]
    jobs = _notebook_jobs(jobs, device, len(todo))  # checked before any training
    if not retrain:
        shipped.check(every.zoo_root)  # a missing or modified shipped file: RuntimeError with the fix
    if not 0 <= verify_fraction <= 1:
        raise ValueError(f"verify_fraction must lie in [0, 1], got {verify_fraction}")
    for folder, what in ((every.out_root, "results folder"), (every.fig_dir, "figures folder")):
        runlock.writable(folder, what)
    with runlock.hold(every.out_root, _command(every, chosen, retrain)):
        return _run_held(every, todo, chosen, jobs=jobs, force=force, device=device, progress=progress,
                         retrain=retrain, verify_fraction=verify_fraction, verify_seed=verify_seed)


def _command(every: Plan, chosen: set, retrain: bool) -> str:
    """This run as a command line, for the message a second run into the same folder gets."""
    only = "" if len(chosen) == len(every.notebooks) else " --only " + ",".join(sorted(chosen))
    return f"reproduce --profile {every.profile.name}{only}" + (" --retrain" if retrain else "")


def _run_held(every: Plan, todo: list, chosen: set, *, jobs: int, force: bool, device, progress, retrain: bool,
              verify_fraction: float, verify_seed: int) -> list[Outcome]:
    """:func:`run` once the folders are checked and the results folder's lock is held."""
    from .. import attack_cache, shipped

    t0 = time.perf_counter()
    specs = [s for src, params in todo for s in model_specs(src, params)]
    if retrain and set(specs) & set(shipped.base_models()):  # the shipped zoo: every base model, used or not
        specs += [n for n in shipped.base_models() if n not in specs]
    left_out = [s for src, params in every.notebooks if src.stem not in chosen for s in model_specs(src, params)]
    # retraining trains the mixing networks inside notebooks 04/05/06/08 (hours on a CPU): no cell limit then
    timeout = None if retrain else every.profile.execution_timeout
    kw = dict(force=force, timeout=timeout, progress=progress, profile=every.profile.name)
    claims = tempfile.mkdtemp(prefix="adasmooth-verify-claims-")  # a sampled entry read by two notebooks: checked once
    env = {attack_cache.VERIFY_FRACTION_ENV: str(verify_fraction), attack_cache.VERIFY_SEED_ENV: str(verify_seed),
           attack_cache.VERIFY_CLAIMS_ENV: claims}
    try:
        with _environment(env), Heartbeat():
            done, zoo_rows = _train_and_run(every, todo, specs, kw, jobs=jobs, device=device, progress=progress,
                                            also=left_out)
    finally:
        shutil.rmtree(claims, ignore_errors=True)
    outcomes, listed = _listed(every, chosen, done)
    ship = shipped.manifest(every.zoo_root)
    _name_model_sources(zoo_rows, ship)
    wall = time.perf_counter() - t0
    write_summary(every.out_root / "summary.md", every.profile, listed, zoo_rows, wall, shipped_files=ship,
                  partial=_partial(every, outcomes))
    if retrain:
        shipped.write_comparison(every.out_root / "retrain_comparison.md", retrained_root=every.zoo_root,
                                 note=_retrain_note(every, wall, jobs, outcomes, zoo_rows))
    update_readme(every.profile.name, every.out_root)
    return outcomes


def _partial(every: Plan, outcomes: list[Outcome]) -> str:
    """Why this run's wall time is not the main job's ("" for a whole run: every notebook ran and completed)."""
    if len(outcomes) < len(every.notebooks):
        return "only " + ", ".join(o.name for o in outcomes)
    why = [f"{o.name} {o.status}" for o in outcomes if o.status != "ran"]
    return ", ".join(why)


@contextlib.contextmanager
def _environment(values: dict):
    """Set environment variables (inherited by the workers and kernels) for the duration."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _retrain_note(every: Plan, wall: float, jobs: int, outcomes: list[Outcome], zoo_rows: list[dict]) -> str:
    """How a ``--retrain`` run made its models: the command, its wall time and where the time went."""
    spent = ", ".join(f"{o.name} {o.seconds:.0f} s" for o in outcomes if o.seconds is not None)
    trained = [r for r in zoo_rows if r["status"].startswith("trained")]
    zoo_part = (f"{len(trained)} base models trained ({sum(r['seconds'] for r in trained):.0f} s of training in "
                "all, side by side with the notebooks that did not need them); " if trained else "")
    return (f"Made on {time.strftime('%Y-%m-%d')} by `python -m adasmooth reproduce --profile {every.profile.name} "
            f"--retrain` (`make reproduce-from-scratch`): every model trained into a fresh cache, then the notebooks "
            f"({jobs} side by side on {cpu_cores()} CPU cores; the mixing networks train inside the notebooks that "
            f"use them). Wall time {wall:.0f} s; {zoo_part}notebooks (their training included): {spent}.")


def _train_and_run(every: Plan, todo: list, specs: list[str], kw: dict, *, jobs: int, device, progress,
                   also: list[str]) -> tuple[dict[str, Outcome], list[dict]]:
    """Train the zoo models of ``specs`` that are missing and run ``todo`` (``[(src, params)]``): first the one,
    then the other, notebook after notebook, when ``jobs == 1``; else in one pool of ``jobs`` workers, each
    notebook starting once its models are cached.  Returns ({stem: Outcome}, the zoo timing rows)."""
    runs = [(src, params, every.out_root / src.name) for src, params in todo]
    overrides, root = every.profile.zoo_overrides, every.zoo_root
    if jobs == 1:
        zoo_rows = prepare_zoo(specs, overrides=overrides, root=root, device=device, progress=progress, also=also)
        return _run_serial(runs, kw), zoo_rows
    # the zoo models train in the same worker pool, each notebook starting once its models are cached
    names = _zoo_names(specs)
    for n in names:
        zoo.recipe(n)  # an unknown name fails here, before any work
    zoo.discard_corrupt(names, overrides=overrides or None, root=root)  # retrained (a shipped one: an error)
    zoo_todo = [n for n in names if not zoo.is_cached(n, overrides or None, root)]
    needs = {src.stem: _zoo_names(model_specs(src, params)) for src, params in todo}
    done, trained, wall = _run_side_by_side(runs, kw, jobs=jobs, zoo_todo=zoo_todo, zoo_needs=needs,
                                            overrides=overrides, root=root)
    return done, _zoo_rows(names, trained, overrides=overrides, root=root, wall=wall, also=also)


def _listed(every: Plan, chosen: set, done: dict) -> tuple[list[Outcome], list[Outcome]]:
    """The selected notebooks' outcomes, and those plus the recorded results of the notebooks left out by
    ``only`` ("current", or "recorded" when no longer current: the summary keeps their sections), both in
    notebook order."""
    outcomes, listed = [], []
    for src, params in every.notebooks:
        if src.stem in chosen:
            outcomes.append(done[src.stem])
            listed.append(done[src.stem])
            continue
        res = results.path(params["out_dir"], src.stem)
        doc, _ = _kept_result(res)
        if doc:
            status = "current" if is_current(res, fingerprint(src, params)) else "recorded"
            listed.append(Outcome(src.stem, status, float(doc["pipeline"].get("seconds") or 0.0),
                                  every.out_root / src.name, res, doc=doc))
    return outcomes, listed


def _name_model_sources(zoo_rows: list[dict], ship: dict) -> None:
    """Say where each model came from: trained in this run, or a shipped checkpoint."""
    for r in zoo_rows:
        if r["status"] == "trained":
            r["status"] = "trained in this run"
        elif r["status"] == "cached" and any(e.get("name") == r["model"] for e in ship.values()):
            r["status"] = "shipped checkpoint"
