"""Running the notebooks: one after the other in this process, or side by side in a pool of worker processes
that also trains the zoo models they need (:func:`schedule`: critical-path list scheduling).

A submodule named ``scheduler`` (not ``schedule``): the package re-exports the function :func:`schedule`."""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

from .. import results, runtime, zoo
from ..runtime import get_device
from . import interrupt
from . import params as _params
from .execute import Outcome, run_notebook

log = logging.getLogger(__name__)


def _notebook_jobs(jobs: int | None, device: str | None, n: int) -> int:
    """Notebooks run side by side: ``jobs``, by default one per CPU core on a CPU and 1 on a GPU."""
    if jobs is None:
        jobs = runtime.cpu_cores() if get_device(device).type == "cpu" else 1
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    return max(1, min(jobs, n))


def _last_seconds(src: Path, params: dict, profile: str = "") -> float:
    """The notebook's run time recorded by its last successful run in ``out_dir``, else in the project's
    committed ``results/<profile>/`` (0 when unknown)."""
    for folder in (params["out_dir"], _params.PROJECT / "results" / profile if profile else None):
        try:
            return float(results.read(results.path(folder, src.stem))["pipeline"]["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0.0


def _notebook_worker(src, params, executed, kw, threads):
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the kernel papermill starts
    os.environ["MKL_NUM_THREADS"] = str(threads)
    return run_notebook(src, params, executed, estimate=_last_seconds(src, params, kw.get("profile", "")), **kw)


def _report(o: Outcome) -> None:
    kept = f" (showing the result of {o.kept})" if o.kept else ""
    print(f"{o.name:22s} {o.status:8s} {o.seconds:7.1f} s" + (f"  {o.error[:1000]}" if o.error else "") + kept,
          flush=True)


def _run_serial(todo: list, kw: dict) -> dict[str, Outcome]:
    """Run ``[(src, params, executed)]`` one after the other in this process."""
    out = {}
    for src, params, executed in todo:
        out[src.stem] = o = run_notebook(src, params, executed,
                                         estimate=_last_seconds(src, params, kw.get("profile", "")), **kw)
        _report(o)
    return out


def zoo_estimate(name: str) -> float:
    """Rough one-thread CPU seconds to train and evaluate zoo recipe ``name``: 50 s per unit of
    ``zoo.training_cost`` (on 2 CPU cores: standard 156 s for 5 units, ℓ∞-AT 800 s for 16, ℓ2-AT 604 s for 12,
    TRADES 740 s for 15).  Used only to order the work."""
    return 50.0 * zoo.training_cost(name)


def _trained_seconds(name: str, overrides, root) -> float:
    m = zoo.metadata(name, overrides or None, root)["metrics"]
    return m["train_seconds"] + m["eval_seconds"]


def schedule(tasks: dict, needs: dict, estimate: dict, jobs: int, executor, on_done=None) -> dict:
    """Run ``tasks`` (key -> (fn, args)) on ``executor``, at most ``jobs`` at a time, a task only once the
    tasks in ``needs[key]`` have succeeded.  Among the ready tasks the one heading the longest chain
    of estimated seconds (its own ``estimate`` plus the longest chain waiting on it) starts first
    (critical-path list scheduling; ties: the first listed).  Returns key -> ``("ok", result)``,
    ``("error", exception)`` or ``("skipped", [the failed or skipped tasks it needed])``;
    ``on_done(key, outcome)`` is called as each task finishes."""
    waiting_on = {k: set(needs.get(k, ())) for k in tasks}
    unknown = {d for ds in waiting_on.values() for d in ds} - set(tasks)
    if unknown:
        raise ValueError(f"needs names tasks that do not exist: {sorted(map(str, unknown))}")
    level = _chain_levels(tasks, waiting_on, estimate)
    done: dict = {}
    pending = list(tasks)
    running = {}
    while pending or running:
        _skip_failed_needs(pending, waiting_on, done)
        ready = [k for k in pending if all(d in done for d in waiting_on[k])]
        while ready and len(running) < jobs:
            k = max(ready, key=lambda t: level[t])
            ready.remove(k)
            pending.remove(k)
            fn, args = tasks[k]
            running[executor.submit(fn, *args)] = k
        if not running:
            break
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in finished:
            k = running.pop(f)
            err = f.exception()
            done[k] = ("error", err) if err is not None else ("ok", f.result())
            if on_done is not None:
                on_done(k, done[k])
    return done


def _chain_levels(tasks: dict, waiting_on: dict, estimate: dict) -> dict:
    """Each task's longest chain of estimated seconds: its own ``estimate`` plus the longest chain of the tasks
    waiting on it (``ValueError`` on a cycle)."""
    level: dict = {}

    def chain(k, seen=()):
        if k in seen:
            raise ValueError(f"needs holds a cycle through {k!r}")
        if k not in level:
            level[k] = estimate.get(k, 0.0) + max((chain(d, (*seen, k)) for d in tasks if k in waiting_on[d]),
                                                  default=0.0)
        return level[k]

    for k in tasks:
        chain(k)
    return level


def _skip_failed_needs(pending: list, waiting_on: dict, done: dict) -> None:
    """Move each pending task whose need failed (or was skipped) to ``done`` as skipped, transitively."""
    while True:
        bad = {k: [d for d in waiting_on[k] if d in done and done[d][0] != "ok"] for k in pending}
        bad = {k: v for k, v in bad.items() if v}
        if not bad:
            break
        for k, v in bad.items():
            pending.remove(k)
            done[k] = ("skipped", v)


def _run_side_by_side(todo: list, kw: dict, *, jobs: int, zoo_todo: list[str], zoo_needs: dict, overrides,
                      root) -> tuple[dict[str, Outcome], dict[str, float], float | None]:
    """Train ``zoo_todo`` and run ``[(src, params, executed)]`` in ``jobs`` worker processes (each with
    cores // jobs threads; a kernel inherits them): a notebook starts once the zoo models it names
    (``zoo_needs[stem]``) are cached, and the work on the longest remaining chain goes first (notebook
    estimates: their last run time).  A zoo model that fails to train fails the notebooks that need it.
    Returns ({stem: Outcome}, {zoo name: seconds, None if it failed}, seconds until the last zoo model
    was done)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, runtime.cpu_cores() // jobs)
    tasks, needs, est = _side_by_side_tasks(todo, kw, zoo_todo=zoo_todo, zoo_needs=zoo_needs, overrides=overrides,
                                            root=root, threads=threads)
    log.info("%d zoo models and %d notebooks in %d processes x %d threads", len(zoo_todo), len(todo), jobs, threads)
    t0 = time.perf_counter()
    zoo_done = {}

    def on_done(key, outcome):
        if key[0] == "zoo":
            zoo_done[key[1]] = time.perf_counter() - t0
        elif outcome[0] == "ok":
            _report(outcome[1])

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=interrupt.in_worker) as pool:
        try:
            res = schedule(tasks, needs, est, jobs, pool, on_done)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the workers stop their notebooks and clean up
            interrupt.stop_workers(e, pool)
            raise
    out, trained = _side_by_side_outcomes(res, todo, overrides=overrides, root=root)
    return out, trained, max(zoo_done.values()) if zoo_done else None


def _side_by_side_tasks(todo: list, kw: dict, *, zoo_todo: list[str], zoo_needs: dict, overrides, root,
                        threads: int) -> tuple[dict, dict, dict]:
    """:func:`schedule`'s tasks, needs and estimates: ``("zoo", name)`` trains a zoo model,
    ``("notebook", stem)`` runs a notebook once the zoo models it names are trained."""
    prof = kw.get("profile", "")
    tasks, needs, est = {}, {}, {}
    for name in zoo_todo:
        tasks[("zoo", name)] = (interrupt.task, (zoo.train_in_worker, name, overrides or None, root, threads))
        est[("zoo", name)] = zoo_estimate(name)
    for src, params, executed in todo:
        key = ("notebook", src.stem)
        tasks[key] = (interrupt.task, (_notebook_worker, src, params, executed, kw, threads))
        needs[key] = {("zoo", n) for n in zoo_needs.get(src.stem, ()) if n in zoo_todo}
        est[key] = _last_seconds(src, params, prof)
    return tasks, needs, est


def _side_by_side_outcomes(res: dict, todo: list, *, overrides, root) -> tuple[dict[str, Outcome], dict]:
    """From :func:`schedule`'s results: each notebook's :class:`Outcome` (a failed task or one skipped for a
    zoo model that failed to train: a failed outcome) and each zoo model's seconds (None if it failed)."""
    out, trained = {}, {}
    for (kind, name), (status, value) in res.items():
        if kind == "zoo":
            trained[name] = _trained_seconds(name, overrides, root) if status == "ok" else None
            if status != "ok":
                log.error("zoo model %s failed to train: %r", name, value)
            continue
        src, params, executed = next(t for t in todo if t[0].stem == name)
        if status == "ok":
            out[name] = value
            continue
        if status == "skipped":
            err = "zoo model(s) " + ", ".join(d[1] for d in value) + " failed to train: " + "; ".join(
                repr(res[d][1]) for d in value)
        else:
            err = f"{type(value).__name__}: {value}"
        out[name] = o = Outcome(name, "failed", 0.0, executed, results.path(params["out_dir"], name), error=err[-2000:])
        _report(o)
    return out, trained
