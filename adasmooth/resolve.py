"""Bring your own g and h: a model parameter is a zoo name or a ``package.module:factory`` path.

``model("fmnist-standard")`` loads (or trains) the zoo model; ``model("mypkg.nets:make_g")``
imports ``mypkg.nets`` and calls ``make_g()``, which must return a ``torch.nn.Module`` mapping
images in [0, 1] of shape (N, C, H, W) to logits.  Each call also returns an *input record*
``{"spec", "kind", "file", "sha256"}`` naming the file the model's numbers depend on (the zoo
checkpoint, or the factory's source file), so that results can be recomputed when it changes.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import re
from pathlib import Path

import torch

from . import checkpoint, zoo
from .runtime import get_device

log = logging.getLogger(__name__)

_IMPORT_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def kind(spec: str) -> str:
    """``"zoo"`` for a zoo name, ``"import"`` for ``package.module:factory``; ``ValueError`` otherwise."""
    if not isinstance(spec, str):
        raise ValueError(f"a model spec must be a str (zoo name or 'package.module:factory'), got {spec!r}")
    if spec in zoo.RECIPES:
        return "zoo"
    if _IMPORT_SPEC.match(spec):
        return "import"
    raise ValueError(f"model spec {spec!r} is neither a zoo name ({', '.join(zoo.names())}) "
                     "nor an import path 'package.module:factory'")


def model(spec: str, *, zoo_overrides: dict | None = None, zoo_root=None, device=None,
          train_if_missing: bool = False, progress: bool = False) -> tuple[torch.nn.Module, dict]:
    """Return ``(model, input_record)`` for ``spec``, the model in eval mode on ``device``.

    ``zoo_overrides`` / ``zoo_root`` select a zoo variant and cache (tests use tiny variants);
    a missing zoo checkpoint is trained only when ``train_if_missing``."""
    device = get_device(device)
    if kind(spec) == "zoo":
        m = zoo.get(spec, train_if_missing=train_if_missing, overrides=zoo_overrides or None, root=zoo_root,
                    device=device, progress=progress)
        meta = zoo.metadata(spec, overrides=zoo_overrides or None, root=zoo_root)
        pt = checkpoint.path_for(zoo.stem(spec, zoo_overrides or None, zoo_root), ".pt")
        return m, {"spec": spec, "kind": "zoo", "file": str(Path(pt).resolve()), "sha256": meta["sha256"]}
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
           "sha256": checkpoint.sha256_file(src) if src else None}
    return m.to(device).eval(), rec


def is_unchanged(record: dict) -> bool:
    """Whether the file of an input record still exists with the same sha256."""
    f = record.get("file")
    if not f or not Path(f).exists():
        return False
    return checkpoint.sha256_file(f) == record.get("sha256")
