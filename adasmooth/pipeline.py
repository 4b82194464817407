"""One-command reproduction: run the numbered notebooks through papermill with a profile's parameters.

``python -m adasmooth reproduce --profile smoke|default|paper [--only 02,04] [--force]`` does, in order:

1. validate every selected notebook's parameters against the ones its ``parameters`` cell declares
   (``papermill.inspect_notebook``): an unknown name, an ill-typed value or a value outside the
   parameter's domain (``domains``) is an error before any kernel starts or any model is trained
   (papermill itself only warns);
2. train the zoo models the profile names that are not cached yet (timed, outside the kernels);
3. run each notebook (``papermill.execute_notebook``, cwd = the notebooks folder), unless its results are
   current: same parameters, same notebook code, same input files (the sha256 of every zoo checkpoint or
   model module it recorded).  Executed copies and results JSON go to ``results/<profile>/``; a failed
   notebook leaves its executed copy there for inspection.  On a CPU, steps 2 and 3 share one pool of
   worker processes (one per core): a notebook starts as soon as the zoo models it names are cached,
   and the work heading the longest chain goes first (:func:`schedule`);
4. write ``results/<profile>/summary.md`` with every table, figure and timing.

Parameter types come from the ``# type: ...`` comment of each parameter line (``int``, ``float``, ``str``,
``bool``, ``list``, ``dict``, ``None``, ``model`` = zoo name, ``package.module:factory`` or
``path/to/file.py:factory``, ``models`` =
list of those, ``zoo`` = zoo name only; alternatives joined by ``|``), else from the type of the literal default.
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path

from . import checkpoint, profiles, resolve, results, runtime, zoo
from .runtime import get_device
from .results import _cell, markdown_table

log = logging.getLogger(__name__)

PROJECT = Path(__file__).resolve().parent.parent
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


# ---------------------------------------------------------------- notebooks and their parameters

def notebook_dir() -> Path:
    """The folder of the numbered notebooks (a source checkout's ``notebooks/``)."""
    d = PROJECT / "notebooks"
    if not d.is_dir():
        raise FileNotFoundError(f"{d} not found: `reproduce` runs from a source checkout of adasmooth")
    return d


def discover(nb_dir: str | os.PathLike | None = None) -> list[Path]:
    """The numbered notebooks ``NN_name.ipynb`` of ``nb_dir``, in order."""
    return sorted(Path(nb_dir or notebook_dir()).glob("[0-9][0-9]_*.ipynb"))


def select(paths: list[Path], only: str | list | None) -> list[Path]:
    """Keep the notebooks whose number (``"02"``) or stem is listed in ``only`` (comma-separated)."""
    if not only:
        return list(paths)
    wanted = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
    if not wanted:
        raise ValueError(f"--only names no notebook (got {only!r}); give comma-separated numbers or names, "
                         f"e.g. 02,04; known: {', '.join(p.stem for p in paths)}")
    keys = {p.stem: p for p in paths} | {p.stem[:2]: p for p in paths}
    unknown = [w for w in wanted if w not in keys and w.zfill(2) not in keys]
    if unknown:
        raise ValueError(f"--only: unknown notebook(s) {unknown}; known: {', '.join(p.stem for p in paths)}")
    chosen = {keys.get(w, keys.get(w.zfill(2))) for w in wanted}
    return [p for p in paths if p in chosen]


def declared_parameters(src: str | os.PathLike) -> dict[str, dict]:
    """``{name: {"types": [...], "default": value}}`` from the notebook's ``parameters`` cell."""
    import papermill

    decl = papermill.inspect_notebook(str(src))
    if not decl:
        raise ValueError(f"{src} has no cell tagged 'parameters'")
    missed = sorted(_assigned_names(src) - set(decl))
    if missed:  # papermill skips lines it cannot parse (e.g. a second '=' in the help comment)
        raise ValueError(f"{src}: papermill cannot parse the parameter line(s) of {missed}")
    out = {}
    for name, p in decl.items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            default = p["default"]
        t = p["inferred_type_name"]
        types = t.split("|") if t and t != "None" else [_type_name(default)]
        unknown = [x for x in types if x not in _CHECKS]
        if unknown:
            raise ValueError(f"{src}: parameter {name!r} declares unknown type(s) {unknown}; "
                             f"allowed: {', '.join(_CHECKS)}")
        out[name] = {"types": types, "default": default, "help": p.get("help", "")}
    return out


def _assigned_names(src) -> set[str]:
    import nbformat

    nb = nbformat.read(str(src), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {t.id for node in ast.parse(cell.source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}


def check_parameters(src: str | os.PathLike, params: dict) -> None:
    """Raise ``ValueError`` naming every unknown, ill-typed or out-of-domain (``domains``) parameter of
    ``params`` for notebook ``src``; the domains are checked on the values the notebook will run with
    (its defaults where ``params`` sets none)."""
    from . import domains

    decl = declared_parameters(src)
    problems = []
    unknown = sorted(set(params) - set(decl))
    if unknown:
        problems.append(f"unknown parameter(s) {unknown} (declared: {', '.join(decl)})")
    for name, value in params.items():
        if name in decl and not any(_CHECKS[t](value) for t in decl[name]["types"]):
            want = " or ".join(_DESCRIBE.get(t, t) for t in decl[name]["types"])
            problems.append(f"parameter {name!r} must be {want}, got {value!r}")
    if not problems:
        values = {n: d["default"] for n, d in decl.items()} | params
        problems += domains.problems(Path(src).stem, values, list(decl))
    if problems:
        raise ValueError(f"{Path(src).name}: " + "; ".join(problems))


def _type_name(v) -> str:
    if v is None:
        return "None"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(v), "?")


def _is_model(v) -> bool:
    try:
        resolve.kind(v)
        return True
    except ValueError:
        return False


_CHECKS = {
    "None": lambda v: v is None,
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
    "model": _is_model,
    "models": lambda v: isinstance(v, list) and all(_is_model(x) for x in v),
    "zoo": lambda v: isinstance(v, str) and v in zoo.RECIPES,
}


_DESCRIBE = {"model": "a zoo name, 'package.module:factory' or 'path/to/file.py:factory'",
             "models": "a list of model specs",
             "zoo": "a zoo name (python -m adasmooth zoo list)",
             "float": "a number", "list": "a list", "dict": "a dict", "None": "None"}


def model_specs(src: str | os.PathLike, params: dict) -> list[str]:
    """The model specs (values of ``model``/``models`` parameters) notebook ``src`` will use with ``params``."""
    out = []
    for name, d in declared_parameters(src).items():
        v = params.get(name, d["default"])
        if ("model" in d["types"] or "zoo" in d["types"]) and isinstance(v, str):
            out.append(v)
        elif "models" in d["types"] and isinstance(v, list):
            out.extend(v)
    return out


# ---------------------------------------------------------------- currency

def fingerprint(src: str | os.PathLike, params: dict) -> str:
    """sha256 of the parameters and the notebook's code cells (outputs and metadata ignored)."""
    import nbformat

    nb = nbformat.read(str(src), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    blob = json.dumps({"params": params, "code": code}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def is_current(results_file: str | os.PathLike, fp: str) -> bool:
    """Whether ``results_file`` was written by a successful run with fingerprint ``fp`` whose input
    files (zoo checkpoints, model modules) are unchanged."""
    try:
        doc = results.read(results_file)
    except (OSError, ValueError):
        return False
    if doc.get("pipeline", {}).get("fingerprint") != fp:
        return False
    return all(resolve.is_unchanged(rec) for rec in doc.get("inputs", []))


# ---------------------------------------------------------------- running

def run_notebook(src: str | os.PathLike, params: dict, executed: str | os.PathLike, *, force: bool = False,
                 timeout: float | None = None, progress: bool = False, profile: str = "") -> Outcome:
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
    stage = res.parent / f".staging-{src.stem}"
    fig_dir = Path(params["fig_dir"]) if params.get("fig_dir") else None
    fig_stage = fig_dir / f".staging-{src.stem}-figures" if fig_dir is not None else None
    stages = [d for d in (stage, fig_stage) if d is not None]
    for d in stages:  # leftovers of an interrupted run
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    staged = dict(params, out_dir=str(stage.resolve()))
    if fig_stage is not None:
        staged["fig_dir"] = str(fig_stage.resolve())
    t0 = time.perf_counter()
    try:
        try:
            papermill.execute_notebook(str(src), str(new), parameters=staged, kernel_name=KERNEL,
                                       cwd=str(src.parent), execution_timeout=timeout, progress_bar=progress,
                                       extra_arguments=KERNEL_QUIET)
        except BaseException as e:  # PapermillExecutionError, timeouts, dead kernels, Ctrl-C: keep the last result
            o = _failed(src.stem, time.perf_counter() - t0, executed, new, res, _failure_line(e))
            if not isinstance(e, Exception):
                raise
            return o
        seconds = time.perf_counter() - t0
        staged_res = results.path(stage, src.stem)
        try:
            doc = results.read(staged_res)
        except (OSError, ValueError) as e:
            why = "the notebook wrote no results file" if isinstance(e, FileNotFoundError) else _failure_line(e)
            return _failed(src.stem, seconds, executed, new, res, f"{why} ({res.name})")
        doc["figures"] = _swap_figures(doc, staged_res, [(fig_stage, fig_dir), (stage, res.parent)], res)
        os.replace(new, executed)
        executed.with_name(executed.stem + ".failed.ipynb").unlink(missing_ok=True)  # no stale failure
        doc["pipeline"] = {"fingerprint": fp, "seconds": round(seconds, 1), "profile": profile,
                           "finished": time.strftime("%Y-%m-%d %H:%M"),
                           "executed": os.path.relpath(executed.resolve(), res.parent.resolve())}
        checkpoint.atomic_write_json(res, doc)  # last: the results JSON marks the run as done
    finally:
        for d in stages:
            shutil.rmtree(d, ignore_errors=True)
        new.unlink(missing_ok=True)
    return Outcome(src.stem, "ran", seconds, executed, res, doc=doc)


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


def _trained_seconds(name: str, overrides, root) -> float:
    m = zoo.metadata(name, overrides or None, root)["metrics"]
    return m["train_seconds"] + m["eval_seconds"]


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


@dataclass
class Plan:
    """A validated run: the profile, the output folders and each notebook's parameters."""

    profile: profiles.Profile
    out_root: Path
    fig_dir: Path
    zoo_root: Path | None
    notebooks: list  # [(source path, parameters)]


def plan(profile: str | profiles.Profile, *, only=None, device: str | None = None, out_root=None, fig_dir=None,
         zoo_root=None, nb_dir=None, params: dict | None = None, params_only=None) -> Plan:
    """Resolve the folders and every selected notebook's parameters, and validate them all (``ValueError``
    on an unknown, ill-typed or out-of-domain parameter) without starting a kernel.

    ``params`` (``reproduce -p NAME=VALUE``) set NAME on every notebook among ``params_only`` (default: the
    selected ones) that declares it; a NAME that none of them declares is an error.

    Defaults: ``out_root = results/<profile>``; figures under ``figures/`` for the default profile and
    ``<out_root>/figures`` otherwise; the zoo in ``<data_root>/zoo`` (the smoke profile keeps its tiny
    models in ``<out_root>/zoo``)."""
    prof = profiles.get(profile) if isinstance(profile, str) else profile
    out_root = Path(out_root) if out_root else PROJECT / "results" / prof.name
    fig_dir = Path(fig_dir) if fig_dir else (PROJECT / "figures" if prof.figures_in_project else out_root / "figures")
    if zoo_root is None and prof.private_zoo:
        zoo_root = out_root / "zoo"
    zoo_root = Path(zoo_root).resolve() if zoo_root else None
    paths = select(discover(nb_dir), only)
    if not paths:
        raise ValueError(f"no notebooks found in {nb_dir or notebook_dir()}")
    unknown = sorted(set(prof.notebooks) - {p.stem for p in discover(nb_dir)})
    if unknown:
        raise ValueError(f"profile {prof.name!r} sets parameters of unknown notebook(s) {unknown}")
    extra = dict(params or {})
    owned = sorted(set(extra) & {"out_dir", "fig_dir", "zoo_root", "device"})
    if owned:
        raise ValueError(f"-p {owned[0]}: the pipeline sets {', '.join(owned)} itself (use --device for the device; "
                         "out_dir, fig_dir and zoo_root follow the profile)")
    targets = {p.stem for p in (select(paths, params_only) if params_only else paths)}
    decls = {src: declared_parameters(src) for src in paths}
    unused = [n for n in extra if not any(n in decls[src] for src in paths if src.stem in targets)]
    if unused:
        raise ValueError(f"-p {unused[0]}: no selected notebook declares the parameter {unused[0]!r} "
                         f"(selected: {', '.join(sorted(targets))})")
    todo = []
    for src in paths:
        nb_params = prof.params(src.stem, out_dir=str(out_root.resolve()), fig_dir=str(fig_dir.resolve()),
                                zoo_root=str(zoo_root) if zoo_root else None, device=device, declared=decls[src])
        if src.stem in targets:
            nb_params.update({k: v for k, v in extra.items() if k in decls[src]})
        check_parameters(src, nb_params)
        todo.append((src, nb_params))
    return Plan(prof, out_root, fig_dir, zoo_root, todo)


def parse_param(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` of ``reproduce -p``: VALUE as JSON, else as a Python literal, else as a string; a
    relative ``path/to/file.py:factory`` is made absolute (the kernels run in the notebooks folder)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ValueError(f"-p takes NAME=VALUE (e.g. -p n_eval=200 or -p 'alphas=[0.0, 0.5, 1.0]'), got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
    if isinstance(value, str):
        value = resolve.absolute_file_spec(value)
    elif isinstance(value, list):
        value = [resolve.absolute_file_spec(v) if isinstance(v, str) else v for v in value]
    return name, value


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
    for folder in (params["out_dir"], PROJECT / "results" / profile if profile else None):
        try:
            return float(results.read(results.path(folder, src.stem))["pipeline"]["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0.0


def _notebook_worker(src, params, executed, kw, threads):
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the kernel papermill starts
    os.environ["MKL_NUM_THREADS"] = str(threads)
    return run_notebook(src, params, executed, **kw)


def _report(o: Outcome) -> None:
    kept = f" (showing the result of {o.kept})" if o.kept else ""
    print(f"{o.name:22s} {o.status:8s} {o.seconds:7.1f} s" + (f"  {o.error[:1000]}" if o.error else "") + kept,
          flush=True)


def _run_serial(todo: list, kw: dict) -> dict[str, Outcome]:
    """Run ``[(src, params, executed)]`` one after the other in this process."""
    out = {}
    for src, params, executed in todo:
        out[src.stem] = o = run_notebook(src, params, executed, **kw)
        _report(o)
    return out


def zoo_estimate(name: str) -> float:
    """Rough one-thread CPU seconds to train and evaluate zoo recipe ``name``: 50 s per unit of
    ``zoo.training_cost`` (on 2 CPU cores: standard 156 s for 5 units, ℓ∞-AT 800 s for 16, ℓ2-AT 604 s for 12,
    TRADES 740 s for 15).  Used only to order the work."""
    return 50.0 * zoo.training_cost(name)


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
    done: dict = {}
    pending = list(tasks)
    running = {}
    while pending or running:
        while True:  # a task whose need failed (or was skipped) is skipped, transitively
            bad = {k: [d for d in waiting_on[k] if d in done and done[d][0] != "ok"] for k in pending}
            bad = {k: v for k, v in bad.items() if v}
            if not bad:
                break
            for k, v in bad.items():
                pending.remove(k)
                done[k] = ("skipped", v)
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
    prof = kw.get("profile", "")
    tasks, needs, est = {}, {}, {}
    for name in zoo_todo:
        tasks[("zoo", name)] = (zoo.train_in_worker, (name, overrides or None, root, threads))
        est[("zoo", name)] = zoo_estimate(name)
    for src, params, executed in todo:
        key = ("notebook", src.stem)
        tasks[key] = (_notebook_worker, (src, params, executed, kw, threads))
        needs[key] = {("zoo", n) for n in zoo_needs.get(src.stem, ()) if n in zoo_todo}
        est[key] = _last_seconds(src, params, prof)
    log.info("%d zoo models and %d notebooks in %d processes x %d threads", len(zoo_todo), len(todo), jobs, threads)
    t0 = time.perf_counter()
    zoo_done = {}

    def on_done(key, outcome):
        if key[0] == "zoo":
            zoo_done[key[1]] = time.perf_counter() - t0
        elif outcome[0] == "ok":
            _report(outcome[1])

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        res = schedule(tasks, needs, est, jobs, pool, on_done)
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
    return out, trained, max(zoo_done.values()) if zoo_done else None


def run(profile: str | profiles.Profile, *, only=None, force: bool = False, device: str | None = None,
        progress: bool = False, out_root=None, fig_dir=None, zoo_root=None, nb_dir=None,
        jobs: int | None = None, retrain: bool = False, params: dict | None = None) -> list[Outcome]:
    """Validate (:func:`plan`), train missing zoo models, run the selected notebooks and write the
    summary; return the selected notebooks' outcomes (in notebook order).  On a CPU ``jobs`` notebooks
    (default: one per core) run side by side, each kernel with cores // jobs threads.  The summary also
    lists the notebooks left out by ``only`` whose results are current (``--only 02`` does not drop
    the others from ``summary.md``).

    Shipped checkpoints (``shipped``) are verified first and never trained: a missing or modified one
    stops the run with how to restore it.  With ``retrain`` every model is trained into a fresh cache
    ``results/<profile>-retrain/zoo`` (results and figures beside it) and ``retrain_comparison.md``
    compares each retrained model with the shipped one."""
    from . import shipped

    prof = profiles.get(profile) if isinstance(profile, str) else profile
    if retrain:
        out_root = Path(out_root) if out_root else PROJECT / "results" / f"{prof.name}-retrain"
        zoo_root = Path(zoo_root) if zoo_root else out_root / "zoo"
        fig_dir = fig_dir or out_root / "figures"
    every = plan(profile, device=device, out_root=out_root, fig_dir=fig_dir, zoo_root=zoo_root, nb_dir=nb_dir,
                 params=params, params_only=only)
    chosen = {p.stem for p in select([src for src, _ in every.notebooks], only)}
    todo = [(src, params) for src, params in every.notebooks if src.stem in chosen]
    jobs = _notebook_jobs(jobs, device, len(todo))  # checked before any training
    if not retrain:
        shipped.check(every.zoo_root)  # a missing or modified shipped file: RuntimeError with the fix
    t0 = time.perf_counter()
    specs = [s for src, params in todo for s in model_specs(src, params)]
    left_out = [s for src, params in every.notebooks if src.stem not in chosen for s in model_specs(src, params)]
    kw = dict(force=force, timeout=every.profile.execution_timeout, progress=progress, profile=every.profile.name)
    runs = [(src, params, every.out_root / src.name) for src, params in todo]
    overrides, root = every.profile.zoo_overrides, every.zoo_root
    if jobs == 1:
        zoo_rows = prepare_zoo(specs, overrides=overrides, root=root, device=device, progress=progress, also=left_out)
        done = _run_serial(runs, kw)
    else:  # the zoo models train in the same worker pool, each notebook starting once its models are cached
        names = _zoo_names(specs)
        for n in names:
            zoo.recipe(n)  # an unknown name fails here, before any work
        zoo.discard_corrupt(names, overrides=overrides or None, root=root)  # retrained (a shipped one: an error)
        zoo_todo = [n for n in names if not zoo.is_cached(n, overrides or None, root)]
        needs = {src.stem: _zoo_names(model_specs(src, params)) for src, params in todo}
        done, trained, wall = _run_side_by_side(runs, kw, jobs=jobs, zoo_todo=zoo_todo, zoo_needs=needs,
                                                overrides=overrides, root=root)
        zoo_rows = _zoo_rows(names, trained, overrides=overrides, root=root, wall=wall, also=left_out)
    outcomes, listed = [], []
    for src, params in every.notebooks:
        executed = every.out_root / src.name
        if src.stem not in chosen:
            res = results.path(params["out_dir"], src.stem)
            if is_current(res, fingerprint(src, params)):
                doc = results.read(res)
                listed.append(Outcome(src.stem, "current", doc["pipeline"]["seconds"], executed, res, doc=doc))
            continue
        outcomes.append(done[src.stem])
        listed.append(done[src.stem])
    ship = shipped.manifest(every.zoo_root)
    for r in zoo_rows:  # say where each model came from
        if r["status"] == "trained":
            r["status"] = "trained in this run"
        elif r["status"] == "cached" and any(e.get("name") == r["model"] for e in ship.values()):
            r["status"] = "shipped checkpoint"
    write_summary(every.out_root / "summary.md", every.profile, listed, zoo_rows, time.perf_counter() - t0,
                  shipped_files=ship)
    update_readme(every.profile.name, every.out_root)
    if retrain:
        shipped.write_comparison(every.out_root / "retrain_comparison.md", retrained_root=every.zoo_root)
    return outcomes


# ---------------------------------------------------------------- summary



def write_summary(path: str | os.PathLike, prof: profiles.Profile, outcomes: list[Outcome], zoo_rows: list[dict],
                  total_seconds: float, shipped_files: dict | None = None) -> Path:
    """``summary.md``: timings, then each notebook's tables and figures (links relative to ``path``)."""
    import platform

    import torch

    path = Path(path)
    here = path.parent.resolve()
    # a failed notebook shows its last good result (a worker that died never reached run_notebook's bookkeeping)
    shown = {id(o): (o.doc, o.kept) if o.status != "failed" or o.doc else _kept_result(Path(o.results))
             for o in outcomes}
    lines = [f"# Reproduction summary: profile `{prof.name}`", "",
             f"{prof.description}", "",
             *_verdict_lines({o.name: shown[id(o)][0] for o in outcomes}),
             f"torch {torch.__version__}, Python {platform.python_version()}, "
             f"{torch.get_num_threads()} CPU threads, CUDA {'available' if torch.cuda.is_available() else 'not available'}."
             f" Wall time of this run: {total_seconds:.0f} s; the notebooks' own times (as last run) add up to "
             f"{sum(o.seconds for o in outcomes):.0f} s.", "",
             "## Timing", "", "| notebook | status | seconds | executed copy |", "|---|---|---|---|"]
    for o in outcomes:
        status = f"{o.status}, showing the result of {shown[id(o)][1]}" if o.status == "failed" and shown[id(o)][0] \
            else o.status
        lines.append(f"| {o.name} | {status} | {o.seconds:.1f} | "
                     f"[{o.executed.name}]({os.path.relpath(o.executed.resolve(), here)}) |")
    if zoo_rows:
        lines += ["", "Zoo models used (trained by this run when missing):", "",
                  "| model | status | seconds |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['status']} | {r['seconds']:.1f} |" for r in zoo_rows]
    if shipped_files:
        nets = sorted(e["stem"] for e in shipped_files.values() if e["kind"] == "mixing-network")
        heads = sorted(f for f, e in shipped_files.items() if e["kind"] == "learned-mixer-head")
        lines += ["", f"Shipped checkpoints verified (sha256) before the run: {len(shipped_files)} files in data/zoo, "
                  f"among them {len(nets)} mixing networks and the learned mixers' heads "
                  f"{', '.join(h.removesuffix('.json') for h in heads) or '–'}; a mixing network a notebook needs is "
                  "read from there and trained only when missing (the notebook's executed copy logs it)."]
    for o in outcomes:
        lines += ["", f"## {o.name}", ""]
        doc, kept = shown[id(o)]
        if o.status == "failed":
            error = o.error[:1000].replace("`", "'")
            if not doc:
                lines += [f"**Failed** (executed copy kept for inspection): `{error}`"]
                continue
            lines += [f"**Failed, showing the result of {kept}** (its last successful run; the failed run's "
                      f"executed copy is kept for inspection): `{error}`", ""]
        if doc.get("metrics"):
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_cell(v)} |" for k, v in doc["metrics"].items() if not isinstance(v, dict)]
            lines.append("")
        for tab in doc.get("tables", []) + _derived_tables(o.name, doc):
            lines += [f"**{tab['title']}**", "", markdown_table(tab), ""]
        for f in results.figure_paths(doc, o.results):
            lines += [f"![{f.stem}]({os.path.relpath(f, here)})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_bytes(path, ("\n".join(lines).rstrip() + "\n").encode())
    return path


def _verdict_lines(docs: dict) -> list[str]:
    """The verdict table that opens ``summary.md`` (:mod:`adasmooth.verdicts`: the paper's claims beside ours),
    when a listed notebook carries one of the claims; [] otherwise.  An error here leaves a note, never
    a summary unwritten."""
    from . import verdicts

    if not verdicts.has_claims(docs):
        return []
    head = ["## Verdicts: the paper's claims beside ours", ""]
    try:
        rows = verdicts.rows({k: v for k, v in docs.items() if v})
    except Exception as e:  # noqa: BLE001 - the rest of the summary matters more
        log.exception("verdict table")
        return head + [f"Verdict table not written: `{_failure_line(e)}`", ""]
    c = verdicts.counts(rows)
    return head + [verdicts.SETTING_NOTE + " " + verdicts.RULE_NOTE, "",
                   f"{c['reproduced']} reproduced, {c['not reproduced']} not reproduced, "
                   f"{c['inconclusive']} inconclusive.", "", markdown_table(verdicts.table(rows)), ""]


def _derived_tables(name: str, doc: dict) -> list[dict]:
    """Tables the summary derives from a notebook's recorded data (today: Fig. SM1's crossing radius and
    largest certified radii, from notebook 03's curves), unless the notebook already lists them."""
    from . import verdicts

    if name != verdicts.SM1 or not doc or verdicts.SM1_TABLE_TITLE in {t.get("title") for t in doc.get("tables", [])}:
        return []
    try:
        tab = verdicts.sm1_table(doc)
    except Exception:  # noqa: BLE001
        log.exception("Fig. SM1 table")
        return []
    return [{"title": verdicts.SM1_TABLE_TITLE, **tab}] if tab else []


def _last_run(text: str) -> dict:
    """What a previous ``summary.md`` says of its run: the environment line, each notebook's status, the zoo rows
    and the wall time (for :func:`rewrite_summary`)."""
    import re

    lines = text.splitlines()
    env = next((ln for ln in lines if ln.startswith("torch ")), None)
    wall = re.search(r"Wall time of this run: ([0-9.]+) s", env or "")

    def rows_after(marker: str) -> list[list[str]]:
        i = next((j for j, ln in enumerate(lines) if ln.startswith(marker)), None)
        if i is None:
            return []
        i = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("|")), len(lines))
        out = []
        for ln in lines[i + 2:]:  # skip the header and the |---| line
            if not ln.startswith("|"):
                break
            out.append([c.strip() for c in ln.strip().strip("|").split("|")])
        return out

    status = {r[0]: r[1] for r in rows_after("## Timing") if len(r) >= 2}
    zoo_rows = [{"model": r[0], "status": r[1], "seconds": float(r[2])} for r in rows_after("Zoo models used")
                if len(r) == 3]
    return {"env": env, "wall": float(wall.group(1)) if wall else None, "status": status, "zoo_rows": zoo_rows,
            "shipped": "Shipped checkpoints verified" in text}


def rewrite_summary(profile: str | profiles.Profile, *, out_root=None, nb_dir=None, zoo_root=None) -> Path:
    """Rewrite ``results/<profile>/summary.md`` from the results JSON already there, running no notebook and
    training nothing (seconds: it only reads JSON).  The notebooks listed are those with a recorded result;
    the timing and zoo tables, the wall time and the environment line are kept from the previous summary
    (they describe the last run), and a line says when and how the summary was rewritten."""
    from . import shipped

    prof = profiles.get(profile) if isinstance(profile, str) else profile
    out_root = Path(out_root) if out_root else PROJECT / "results" / prof.name
    path = out_root / "summary.md"
    last = _last_run(path.read_text(encoding="utf-8") if path.exists() else "")
    outcomes = []
    for src in discover(nb_dir):
        res = results.path(out_root, src.stem)
        doc, _ = _kept_result(res)
        if doc:
            outcomes.append(Outcome(src.stem, last["status"].get(src.stem, "recorded"),
                                    float(doc["pipeline"].get("seconds") or 0.0), out_root / src.name, res, doc=doc))
    if zoo_root is None and prof.private_zoo:
        zoo_root = out_root / "zoo"
    ship = shipped.manifest(zoo_root) if last["shipped"] else None
    write_summary(path, prof, outcomes, last["zoo_rows"], last["wall"] or 0.0, shipped_files=ship)
    note = (f"Rewritten from the recorded results JSON on {time.strftime('%Y-%m-%d %H:%M')} "
            "(`adasmooth.pipeline.rewrite_summary`): no notebook ran; the timing and zoo tables describe the last run.")
    text = path.read_text(encoding="utf-8").splitlines()
    i = next(j for j, ln in enumerate(text) if ln.startswith("torch "))
    text[i:i + 1] = [last["env"] or text[i], "", note]
    checkpoint.atomic_write_bytes(path, ("\n".join(text).rstrip() + "\n").encode())
    return path


def update_readme(profile: str, out_root) -> bool:
    """Rewrite README.md's generated results blocks (:mod:`adasmooth.readme`) when ``out_root`` is the project's
    ``results/default`` (the results the README quotes); True when README.md changed.  An error here leaves the
    README as it was (``tests/test_readme.py`` then says it disagrees), never a run unfinished."""
    from . import readme

    if profile != "default" or Path(out_root).resolve() != (PROJECT / "results" / "default").resolve():
        return False
    try:
        return readme.update(folder=out_root, profile=profile)
    except Exception:  # noqa: BLE001
        log.exception("README results blocks")
        return False


def main(args) -> int:
    """Entry point of ``python -m adasmooth reproduce``; returns the exit status (1 when a notebook failed)."""
    extra = dict(parse_param(t) for t in getattr(args, "param", None) or [])
    outcomes = run(args.profile, only=args.only, force=args.force, device=args.device, progress=args.progress,
                   jobs=args.jobs, retrain=getattr(args, "retrain", False), params=extra)
    failed = [o.name + (f" (showing the result of {o.kept})" if o.kept else "") for o in outcomes
              if o.status == "failed"]
    out = outcomes[0].results.parent if outcomes else ""
    print(f"summary: {out}/summary.md" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
