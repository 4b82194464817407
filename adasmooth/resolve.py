"""Model specs: turning a notebook's model parameter (a string) into a model and a record of the files
behind it, so that you can bring your own g and h.

A spec is a zoo name, a ``package.module:factory`` path, a ``path/to/file.py:factory`` path or a RobustBench
model ``robustbench:<dataset>/<threat>/<name>`` (:mod:`adasmooth.robustbench_zoo`).  Holds
:func:`kind` (which of the four a spec is), :func:`model` (the model and its input record),
:func:`is_unchanged` (whether a record's files still hash the same), :func:`absolute_file_spec`,
:func:`side_files` and :func:`declared_files`.

``model("fmnist-standard")`` loads (or trains) the zoo model; ``model("mypkg.nets:make_g")``
imports ``mypkg.nets`` (``model("nets/mine.py:make_g")`` loads that file) and calls ``make_g()``, which
must return a ``torch.nn.Module`` mapping images in [0, 1] of shape (N, C, H, W) to logits.  Each call
also returns an *input record* ``{"spec", "kind", "file", "sha256"}`` naming the file the model's numbers
depend on (the zoo checkpoint, or the factory's source file), so that results can be recomputed when it
changes.  A factory's record also holds ``"files"``: the sha256 of the files it reads (:func:`side_files`), so a
changed, added or removed one makes the results stale.  Those are the files its module declares, as a literal
list of paths or glob patterns relative to the module's folder::

    ADASMOOTH_FILES = ["weights.pt", "nets/*.npz"]

or, without that list, the weights-like files (``WEIGHT_SUFFIXES``) named after the module (``mine.pt``,
``mine.npz`` beside ``mine.py``) and every file under a folder named after it (``mine/``).  Nothing else in the
folder is hashed (a factory in /tmp does not depend on the kernels' connection files there).
A RobustBench record holds its ``"dataset"``, ``"threat"`` and ``"name"`` and the sha256 of its weights file(s).
"""
from __future__ import annotations

import ast
import glob
import importlib
import inspect
import logging
import os
import re
from pathlib import Path

import torch

from . import checkpoint, robustbench_zoo, zoo
from .runtime import get_device

log = logging.getLogger(__name__)

_IMPORT_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_FILE_SPEC = re.compile(r"^(?P<path>.+\.py):(?P<fn>[A-Za-z_]\w*)$")
# weights-like files named after a factory's module (mine.pt beside mine.py): hashed into its input record
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".npz", ".npy", ".json")


def kind(spec: str) -> str:
    """``"zoo"`` for a zoo name, ``"import"`` for ``package.module:factory``, ``"file"`` for
    ``path/to/file.py:factory``, ``"robustbench"`` for ``robustbench:<dataset>/<threat>/<name>``; ``ValueError``
    otherwise."""
    if not isinstance(spec, str):
        raise ValueError(f"a model spec must be a str (zoo name or 'package.module:factory'), got {spec!r}")
    if spec in zoo.RECIPES:
        return "zoo"
    if robustbench_zoo.is_spec(spec):
        robustbench_zoo.parse(spec)  # ValueError naming the allowed datasets and threat models
        return "robustbench"
    file_spec = _FILE_SPEC.match(spec)
    if _IMPORT_SPEC.match(spec) and not (file_spec and Path(file_spec["path"]).is_file()):
        return "import"  # 'mine.py:make' is the file mine.py where it exists, else module 'mine.py'
    if file_spec:
        return "file"
    raise ValueError(f"model spec {spec!r} is neither a zoo name ({', '.join(zoo.names())}), "
                     "an import path 'package.module:factory', a file path 'path/to/file.py:factory' nor a "
                     "RobustBench model 'robustbench:<dataset>/<threat>/<name>'")


def absolute_file_spec(spec: str) -> str:
    """``spec`` with a relative ``path/to/file.py`` made absolute (against the current folder); other
    strings unchanged."""
    m = _FILE_SPEC.match(spec)
    if not m or Path(m["path"]).is_absolute():
        return spec
    return f"{Path(m['path']).resolve()}:{m['fn']}"


def _import_file(spec: str):
    import importlib.util
    import sys

    m = _FILE_SPEC.match(spec)
    path = Path(m["path"]).resolve()
    if not path.is_file():
        raise ValueError(f"model spec {spec!r}: file {path} not found")
    name = f"_adasmooth_byo_{path.stem}_{checkpoint.config_hash(str(path))[:8]}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = mod
    try:
        mod_spec.loader.exec_module(mod)
    except Exception:
        del sys.modules[name]
        raise
    return mod, m["fn"]


def declared_files(src: str | Path) -> list[str] | None:
    """The module-level ``ADASMOOTH_FILES = [...]`` of the Python file ``src`` (a literal list of str: paths or
    glob patterns relative to its folder), None when it declares none; ``ValueError`` when it is not such a list."""
    src = Path(src)
    try:
        tree = ast.parse(src.read_bytes(), filename=str(src))
    except (OSError, SyntaxError, ValueError):
        return None  # unreadable: its own sha256 decides
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == "ADASMOOTH_FILES" for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, SyntaxError, TypeError):
                value = None
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{src}: ADASMOOTH_FILES must be a literal list of paths or glob patterns "
                                 f"(str, relative to {src.parent}), e.g. ADASMOOTH_FILES = ['weights.pt']")
            return list(value)
    return None


def side_files(src: str | Path) -> dict[str, str | None]:
    """``{path: sha256}`` of the files the factory module ``src`` reads: those its ``ADASMOOTH_FILES`` declares
    (:func:`declared_files`; a declared plain path that is missing maps to None), else the weights-like files
    (``WEIGHT_SUFFIXES``) named ``<stem>.<suffix>`` beside it and every file under a folder ``<stem>/`` beside it
    (none for a module directly in site-packages); never the rest of its folder."""
    src = Path(src).resolve()
    folder = src.parent
    patterns = declared_files(src)
    files: set[Path] = set()
    missing: set[Path] = set()
    if patterns is not None:
        for pat in patterns:
            full = Path(os.path.normpath(folder / pat))
            if any(c in pat for c in "*?["):
                files.update(Path(f) for f in glob.glob(str(full), recursive=True) if Path(f).is_file())
            else:
                (files if full.is_file() else missing).add(full)
    elif folder.name not in ("site-packages", "dist-packages"):
        files = {f for f in folder.glob(f"{glob.escape(src.stem)}.*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES}
        own = folder / src.stem
        if own.is_dir():
            files.update(f for f in own.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    files.discard(src)
    out = {str(f): checkpoint.sha256_file(f) for f in files} | {str(f): None for f in missing}
    return dict(sorted(out.items()))


def model(spec: str, *, zoo_overrides: dict | None = None, zoo_root=None, device=None,
          train_if_missing: bool = False, progress: bool = False,
          robustbench_dir=None) -> tuple[torch.nn.Module, dict]:
    """Return ``(model, input_record)`` for ``spec``, the model in eval mode on ``device``.

    ``zoo_overrides`` / ``zoo_root`` select a zoo variant and cache (tests use tiny variants);
    a missing zoo checkpoint is trained only when ``train_if_missing``.  A RobustBench model's weights
    are read from ``robustbench_dir`` (default :func:`adasmooth.robustbench_zoo.model_dir`), never downloaded."""
    device = get_device(device)
    if kind(spec) == "robustbench":
        return robustbench_zoo.load(spec, root=robustbench_dir, device=device)
    if kind(spec) == "zoo":
        m = zoo.get(spec, train_if_missing=train_if_missing, overrides=zoo_overrides or None, root=zoo_root,
                    device=device, progress=progress)
        meta = zoo.metadata(spec, overrides=zoo_overrides or None, root=zoo_root)
        pt = checkpoint.path_for(zoo.stem(spec, zoo_overrides or None, zoo_root), ".pt")
        return m, {"spec": spec, "kind": "zoo", "file": str(Path(pt).resolve()), "sha256": meta["sha256"]}
    if kind(spec) == "file":
        mod, fn_name = _import_file(spec)
        mod_name = mod.__file__
    else:
        mod_name, fn_name = spec.split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise ValueError(f"model spec {spec!r}: cannot import {mod_name!r} ({e})") from e
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"model spec {spec!r}: {mod_name} has no callable {fn_name!r}")
    m = fn()
    if not isinstance(m, torch.nn.Module):
        raise ValueError(f"model spec {spec!r}: {fn_name}() returned {type(m).__name__}, expected a torch.nn.Module")
    src = inspect.getsourcefile(mod)
    rec = {"spec": spec, "kind": "import", "file": str(Path(src).resolve()) if src else None,
           "sha256": checkpoint.sha256_file(src) if src else None, "files": side_files(src) if src else {}}
    return m.to(device).eval(), rec


def is_unchanged(record: dict) -> bool:
    """Whether the file of an input record still exists with the same sha256 and, for a factory, the files it
    reads (:func:`side_files`) are the same (same names, same sha256; a record without them is stale)."""
    f = record.get("file")
    if not f or not Path(f).exists():
        return False
    if checkpoint.sha256_file(f) != record.get("sha256"):
        return False
    if record.get("kind") == "import":
        try:
            return record.get("files") == side_files(f)
        except ValueError:  # an ADASMOOTH_FILES that is not a literal list: model() names it
            return False
    if record.get("kind") == "robustbench":
        return robustbench_zoo.files_unchanged(record)
    return True
