"""One notebook through papermill: skipped when its results are current, else run in staging folders and moved
into place only when it completes; a failed run keeps the last good result (:class:`Outcome` says which)."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import checkpoint, results
from . import progress as progress_lines
from .params import check_parameters, fingerprint, is_current

log = logging.getLogger(__name__)

KERNEL = "python3"
# the kernel's own log (its stderr is ours): "Kernel is running over TCP without encryption" at every start and
# "KeyboardInterrupt caught in kernel" at shutdown are noise here; errors in the notebook reach us through papermill
KERNEL_QUIET = ["--IPKernelApp.log_level=CRITICAL"]


@dataclass
class Outcome:
    """What happened to one notebook: ``status`` is ``"ran"``, ``"current"`` (skipped) or ``"failed"``.

    A failed rerun keeps the last good result: then ``doc`` is that result and ``kept`` its date (else "");
    ``executed`` is the failed run's executed copy and ``error`` the exception's last line and that copy's path."""

    name: str
    status: str
    seconds: float
    executed: Path
    results: Path
    error: str = ""
    doc: dict = field(default_factory=dict, repr=False)
    kept: str = ""


def run_notebook(src: str | os.PathLike, params: dict, executed: str | os.PathLike, *, force: bool = False,
                 timeout: float | None = None, progress: bool = False, profile: str = "",
                 estimate: float | None = None) -> Outcome:
    """Run one notebook through papermill unless its results are current.

    ``params["out_dir"]`` is where the notebook writes ``<stem>.json``; the pipeline stamps that file
    with the fingerprint, the run time and the date after a successful run.

    Nothing is replaced before the run completes: the notebook writes into staging folders
    (``out_dir``/``fig_dir`` point at ``.staging-<stem>`` beside the real ones, papermill's executed copy
    goes to ``<stem>.new.ipynb``) and only a completed run moves its figures, executed copy and results
    JSON into place (``os.replace``, the JSON last).  A failed run keeps the last good result byte for byte
    and leaves its executed copy as ``<stem>.failed.ipynb`` (as ``executed`` itself when there is no
    previous result to keep)."""
    import papermill

    src, executed = Path(src), Path(executed)
    check_parameters(src, params)
    res = results.path(params.get("out_dir", "."), src.stem)
    fp = fingerprint(src, params)
    if not force and is_current(res, fp):
        doc = results.read(res)
        log.info("%s: current, skipped", src.stem)
        return Outcome(src.stem, "current", doc["pipeline"]["seconds"], executed, res, doc=doc)
    import shutil

    executed.parent.mkdir(parents=True, exist_ok=True)
    new = executed.with_name(executed.stem + ".new.ipynb")
    stage, fig_dir, fig_stage, staged = _stage(src.stem, params, res)
    progress_lines.started(src.stem, estimate)
    t0 = time.perf_counter()
    outcome = None
    try:
        try:
            papermill.execute_notebook(str(src), str(new), parameters=staged, kernel_name=KERNEL,
                                       cwd=str(src.parent), execution_timeout=timeout, progress_bar=progress,
                                       extra_arguments=KERNEL_QUIET)
        except BaseException as e:  # PapermillExecutionError, timeouts, dead kernels, Ctrl-C: keep the last result
            outcome = _failed(src.stem, time.perf_counter() - t0, executed, new, res, _failure_line(e))
            if not isinstance(e, Exception):
                raise
            return outcome
        seconds = time.perf_counter() - t0
        outcome = _complete(src.stem, seconds, executed, new, res, stage, [(fig_stage, fig_dir), (stage, res.parent)],
                            fp=fp, profile=profile)
        return outcome
    finally:
        progress_lines.finished(src.stem, outcome.status if outcome else "stopped", time.perf_counter() - t0)
        for d in (stage, fig_stage):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
        new.unlink(missing_ok=True)


def _stage(stem: str, params: dict, res: Path) -> tuple[Path, Path | None, Path | None, dict]:
    """The run's staging folders (emptied of an interrupted run's leftovers): ``.staging-<stem>`` beside
    ``res`` and ``.staging-<stem>-figures`` under ``fig_dir`` when the notebook has one; returns them, ``fig_dir``
    and ``params`` pointing ``out_dir``/``fig_dir`` at them."""
    import shutil

    stage = res.parent / f".staging-{stem}"
    fig_dir = Path(params["fig_dir"]) if params.get("fig_dir") else None
    fig_stage = fig_dir / f".staging-{stem}-figures" if fig_dir is not None else None
    stages = [d for d in (stage, fig_stage) if d is not None]
    for d in stages:  # leftovers of an interrupted run
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    staged = dict(params, out_dir=str(stage.resolve()))
    if fig_stage is not None:
        staged["fig_dir"] = str(fig_stage.resolve())
    return stage, fig_dir, fig_stage, staged


def _complete(name: str, seconds: float, executed: Path, new: Path, res: Path, stage: Path, moves: list, *,
              fp: str, profile: str) -> Outcome:
    """A completed papermill run: move its figures (``moves``: ``[(staging, final)]``), executed copy and
    results JSON into place, the JSON last and stamped with the fingerprint, the run time and the date; a
    run that wrote no readable results file fails (:func:`_failed`)."""
    staged_res = results.path(stage, name)
    try:
        doc = results.read(staged_res)
    except (OSError, ValueError) as e:
        why = "the notebook wrote no results file" if isinstance(e, FileNotFoundError) else _failure_line(e)
        return _failed(name, seconds, executed, new, res, f"{why} ({res.name})")
    doc["figures"] = _swap_figures(doc, staged_res, moves, res)
    os.replace(new, executed)
    executed.with_name(executed.stem + ".failed.ipynb").unlink(missing_ok=True)  # no stale failure
    doc["pipeline"] = {"fingerprint": fp, "seconds": round(seconds, 1), "profile": profile,
                       "finished": time.strftime("%Y-%m-%d %H:%M"),
                       "executed": os.path.relpath(executed.resolve(), res.parent.resolve())}
    checkpoint.atomic_write_json(res, doc)  # last: the results JSON marks the run as done
    return Outcome(name, "ran", seconds, executed, res, doc=doc)


def _failure_line(e: BaseException) -> str:
    """The exception's last line, ``Type: message`` (for an error inside the notebook: the notebook's own
    exception, not papermill's wrapper and traceback), on one line."""
    if getattr(e, "ename", None):  # papermill.PapermillExecutionError
        name, msg = e.ename, str(e.evalue)
    else:
        name = type(e).__name__
        msg = next((line for line in str(e).splitlines() if line.strip()), "")
    msg = " ".join(msg.split())
    return (f"{name}: {msg}" if msg else name)[:500]


def _kept_result(res: Path) -> tuple[dict, str]:
    """The last good (pipeline-stamped) result at ``res`` and its date, else ``({}, "")``."""
    try:
        doc = results.read(res)
    except (OSError, ValueError):
        return {}, ""
    if not isinstance(doc, dict) or not isinstance(doc.get("pipeline"), dict):
        return {}, ""
    date = doc["pipeline"].get("finished") or time.strftime("%Y-%m-%d %H:%M", time.localtime(res.stat().st_mtime))
    return doc, date


def _failed(name: str, seconds: float, executed: Path, new: Path, res: Path, error: str) -> Outcome:
    """A failed run: keep the last good result untouched and the run's executed copy (``new``) as
    ``<stem>.failed.ipynb``, or as ``executed`` when there is no previous result."""
    doc, date = _kept_result(res)
    failed_copy = executed.with_name(executed.stem + ".failed.ipynb")
    if not doc:
        failed_copy.unlink(missing_ok=True)
        failed_copy = executed
    if new.exists():
        os.replace(new, failed_copy)
        error += f"; executed copy: {failed_copy}"
    else:
        error += "; no executed copy"
    log.error("%s failed after %.1f s: %s%s", name, seconds, error,
              f" (keeping the result of {date})" if date else "")
    return Outcome(name, "failed", seconds, failed_copy, res, error=error, doc=doc, kept=date)


def _swap_figures(doc: dict, staged_res: Path, moves: list, res: Path) -> list[str]:
    """Move every file of each staging folder of ``moves`` (``[(staging, final)]``, but the staged results
    JSON) to the same place under ``final``; return ``doc``'s figure paths relative to ``res``'s folder."""
    moves = [(a.resolve(), Path(b).resolve()) for a, b in moves if a is not None]
    for staging, final in moves:
        for f in sorted(p for p in staging.rglob("*") if p.is_file() and p != staged_res.resolve()):
            target = final / f.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)

    def final_path(f: Path) -> Path:
        for staging, final in moves:
            if f.is_relative_to(staging):
                return final / f.relative_to(staging)
        return f

    return [os.path.relpath(final_path(f), res.parent.resolve()) for f in results.figure_paths(doc, staged_res)]
