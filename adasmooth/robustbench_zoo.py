"""RobustBench's model zoo as g or h: the model spec ``robustbench:<dataset>/<threat>/<name>``.

``load("robustbench:cifar10/Linf/Wong2020Fast")`` builds the model through the real ``robustbench`` package
(``robustbench.load_model``, the optional extra ``pip install -e '.[robustbench]'``): the architecture of
its model zoo with the weights of ``<model dir>/<dataset>/<threat>/<name>.pt`` (robustbench's own layout;
an ensemble has ``<name>.pt_m0.pt``, ``<name>.pt_m1.pt``, ...).  The model keeps RobustBench's input
normalization inside it, so it maps images in [0, 1] to logits like every adasmooth model.  The model
dir is ``$ADASMOOTH_ROBUSTBENCH_DIR``, else ``<data root>/robustbench`` (:func:`adasmooth.runtime.data_root`).

Nothing is downloaded here: a missing weights file raises ``FileNotFoundError`` naming it and the
command that fetches it (with internet) into the same place.

Compatibility aliases, set only when missing (:func:`import_robustbench`): robustbench 1.1.1 imports
``autoattack`` (the PyPI package ``pyautoattack`` installs the same code as the module ``pyautoattack``) and
``pkg_resources`` (gone from setuptools >= 81; robustbench uses only ``resource_filename``).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import os
import re
import sys
import types
from pathlib import Path

from . import checkpoint
from .runtime import data_root, get_device

log = logging.getLogger(__name__)

PREFIX = "robustbench:"
SPEC = re.compile(r"^robustbench:(?P<dataset>[^/\s]+)/(?P<threat>[^/\s]+)/(?P<name>[^/\s]+)$")
# robustbench's dataset -> adasmooth's dataset of the same images (None: not in adasmooth.data)
DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": None}
THREATS = ("Linf", "L2", "corruptions")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}


def is_spec(spec) -> bool:
    """Whether ``spec`` starts with ``robustbench:`` (then :func:`parse` says whether it is well formed)."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse(spec: str) -> dict:
    """``{"dataset", "threat", "name"}`` of ``robustbench:<dataset>/<threat>/<name>``; ``ValueError`` naming the
    allowed datasets and threat models otherwise (the name is checked against the zoo by :func:`load`)."""
    m = SPEC.match(spec) if isinstance(spec, str) else None
    if not m:
        raise ValueError(f"model spec {spec!r} must read 'robustbench:<dataset>/<threat>/<name>', "
                         "e.g. 'robustbench:cifar10/Linf/Wong2020Fast'")
    if m["dataset"] not in DATASETS:
        raise ValueError(f"model spec {spec!r}: dataset must be one of {list(DATASETS)}, got {m['dataset']!r}")
    if m["threat"] not in THREATS:
        raise ValueError(f"model spec {spec!r}: threat model must be one of {list(THREATS)}, got {m['threat']!r}")
    return {"dataset": m["dataset"], "threat": m["threat"], "name": m["name"]}


def model_dir() -> Path:
    """Where RobustBench weights are looked for: ``$ADASMOOTH_ROBUSTBENCH_DIR``, else ``<data root>/robustbench``."""
    env = os.environ.get("ADASMOOTH_ROBUSTBENCH_DIR")
    if env:
        return Path(env)
    return Path(data_root()) / "robustbench"


def import_robustbench():
    """``import robustbench`` with the two aliases of the module docstring; ``ImportError`` naming the extra."""
    if "autoattack" not in sys.modules and importlib.util.find_spec("autoattack") is None:
        try:
            import pyautoattack
            import pyautoattack.state
        except ImportError as e:
            raise ImportError("robustbench needs pyautoattack: pip install -e '.[robustbench]'") from e
        sys.modules["autoattack"] = pyautoattack  # same code, the name robustbench imports
        sys.modules["autoattack.state"] = pyautoattack.state
    shim = None
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")  # only what robustbench.loaders calls

        def resource_filename(package: str, path: str) -> str:
            return str(Path(importlib.import_module(package).__file__).parent / path)
        shim.resource_filename = resource_filename
        sys.modules["pkg_resources"] = shim
    try:
        import robustbench
        import robustbench.loaders  # noqa: F401  (holds the shim from here on)
    except ImportError as e:
        raise ImportError(f"a 'robustbench:' model spec needs the robustbench package ({e}); install it with "
                          "pip install -e '.[robustbench]'") from e
    finally:
        # the shim is robustbench's alone: others that look for pkg_resources (pytest, setuptools) must not find it
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return robustbench


def _entry(parts: dict) -> dict:
    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    zoo = model_dicts[BenchmarkDataset(parts["dataset"])][ThreatModel(parts["threat"])]
    if parts["name"] not in zoo:
        close = difflib.get_close_matches(parts["name"], list(zoo), n=5)
        raise ValueError(f"RobustBench has no model {parts['name']!r} for {parts['dataset']}/{parts['threat']} "
                         f"({len(zoo)} models there{'; close: ' + ', '.join(close) if close else ''})")
    return zoo[parts["name"]]


def weights_files(spec: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The files ``robustbench.load_model`` reads for ``spec`` under ``root`` (default :func:`model_dir`):
    ``<root>/<dataset>/<threat>/<name>.pt``, or one ``<name>.pt_m<i>.pt`` per member of an ensemble."""
    parts = parse(spec)
    path = Path(root if root is not None else model_dir()) / parts["dataset"] / parts["threat"] / f"{parts['name']}.pt"
    ids = _entry(parts)["gdrive_id"]
    if isinstance(ids, list):
        return [Path(f"{path}_m{i}.pt") for i in range(len(ids))]
    return [path]


def fetch_command(spec: str, root: str | os.PathLike | None = None) -> str:
    """The command that downloads ``spec``'s weights (needs internet) into robustbench's layout under ``root``."""
    p = parse(spec)
    root = Path(root if root is not None else model_dir()).resolve()
    return (f"python -c \"from adasmooth.robustbench_zoo import import_robustbench; import_robustbench(); "
            f"from robustbench import load_model; load_model('{p['name']}', model_dir='{root}', "
            f"dataset='{p['dataset']}', threat_model='{p['threat']}')\"")


def _is_timm(parts: dict) -> bool:
    import timm

    name = parts["name"].lower().replace("-", "_")
    return timm.is_model(f"{name}_{parts['dataset'].lower()}_{parts['threat'].lower()}")


def load(spec: str, root: str | os.PathLike | None = None, device=None):
    """``(model, record)``: the eval-mode RobustBench model of ``spec`` (weights under ``root``, default
    :func:`model_dir`) and its input record ``{"spec", "kind": "robustbench", "dataset", "threat", "name", "file",
    "sha256", "files"}``.  The model gets ``num_classes`` and ``in_channels`` (3) attributes."""
    parts = parse(spec)
    root = Path(root if root is not None else model_dir())
    _entry(parts)  # ValueError for a name RobustBench does not know
    from robustbench import load_model

    record = {"spec": spec, "kind": "robustbench", **parts, "file": None, "sha256": None, "files": {}}
    if _is_timm(parts):  # robustbench loads these through timm's hub cache, not model_dir
        try:
            model = load_model(parts["name"], model_dir=str(root), dataset=parts["dataset"],
                               threat_model=parts["threat"])
        except Exception as e:
            raise FileNotFoundError(f"model spec {spec!r}: robustbench loads {parts['name']} through timm's "
                                    f"Hugging Face cache and could not ({type(e).__name__}: {e}); with internet: "
                                    f"{fetch_command(spec, root)}") from e
    else:
        files = weights_files(spec, root)
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"model spec {spec!r}: robustbench's weights {', '.join(map(str, missing))} not "
                                    f"found (no download here); with internet, fetch them with: "
                                    f"{fetch_command(spec, root)}   (or set ADASMOOTH_ROBUSTBENCH_DIR to a folder "
                                    "holding <dataset>/<threat>/<name>.pt)")
        model = load_model(parts["name"], model_dir=str(root), dataset=parts["dataset"], threat_model=parts["threat"])
        record["files"] = {str(f.resolve()): checkpoint.sha256_file(f) for f in files}
        record["file"] = str(files[0].resolve())
        record["sha256"] = record["files"][record["file"]]
    for attr, value in (("num_classes", NUM_CLASSES[parts["dataset"]]), ("in_channels", 3)):
        if not hasattr(model, attr):
            setattr(model, attr, value)
    log.info("loaded %s from %s", spec, record["file"] or "timm's hub cache")
    return model.to(get_device(device)).eval(), record


def files_unchanged(record: dict) -> bool:
    """Whether every weights file of a ``robustbench`` input record still exists with the same sha256."""
    files = record.get("files") or {}
    return bool(files) and all(Path(f).is_file() and checkpoint.sha256_file(f) == s for f, s in files.items())
