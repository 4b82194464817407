"""The notebooks and their parameters: discovery, the ``# type:`` comments of each ``parameters`` cell,
validation, fingerprints (is a result current?) and the validated :class:`Plan` of a run.

Parameter types come from the ``# type: ...`` comment of each parameter line (``int``, ``float``, ``str``,
``bool``, ``list``, ``dict``, ``None``, ``model`` = zoo name, ``package.module:factory``,
``path/to/file.py:factory`` or ``robustbench:<dataset>/<threat>/<name>``, ``models`` =
list of those, ``zoo`` = zoo name only; alternatives joined by ``|``), else from the type of the literal default.

:data:`PROJECT` and :func:`discover` are looked up here at call time by every module of the package (one place
to patch them).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import parameters, profiles, resolve, results, zoo

PROJECT = Path(__file__).resolve().parent.parent.parent


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
    """Raise ``ValueError`` naming every unknown, ill-typed or out-of-domain (``parameters.check``) parameter of
    ``params`` for notebook ``src``; the domains are checked on the values the notebook will run with
    (its defaults where ``params`` sets none)."""
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
        problems += parameters.problems(Path(src).stem, values, list(decl))
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


_DESCRIBE = {"model": "a zoo name, 'package.module:factory', 'path/to/file.py:factory' or "
                      "'robustbench:<dataset>/<threat>/<name>'",
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
