"""Shipped checkpoints: the manifest of the trained models committed under ``data/zoo``, and their checks.

``data/zoo/SHIPPED.json`` lists every shipped file (zoo models, mixing networks, learned mixers' heads)
with its sha256 and, for weights, the clean accuracy recorded on the first 1,000 test images (the test
suite recomputes it).  ``python -m adasmooth zoo ship`` writes it from the cache's current content;
``verify`` compares every file of a cache with its metadata and the manifest.  The main job never trains
a shipped model: a missing or modified shipped file is an error that says how to restore or retrain it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from . import checkpoint, data, runtime, zoo
from .adaptive import AdaptiveMixedClassifier
from .mixing_net import for_models
from .runtime import batches

log = logging.getLogger(__name__)

MANIFEST = zoo.SHIPPED_MANIFEST
CHECK_N = 1000  # the first test images on which each shipped model's clean accuracy is recorded


def manifest_path(root=None) -> Path:
    return zoo.cache_dir(root) / MANIFEST


def manifest(root=None) -> dict:
    """``{file name: {"sha256", "kind", ...}}`` of the shipped files ({} when nothing is shipped)."""
    return zoo.shipped_files(root)


def base_models(root=None) -> list[str]:
    """The zoo names of the shipped base models (g, h and the smoothing bases), in manifest order."""
    return list(dict.fromkeys(e["name"] for e in manifest(root).values() if e.get("kind") == "zoo"))


def restore_hint(path: Path) -> str:
    return (f"restore it with: git checkout -- {_rel(path)}   (or retrain every model: "
            f"python -m adasmooth reproduce --retrain)")


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(runtime.project_root()))
    except ValueError:
        return str(path)


def _status(path: Path, want: str | None) -> str:
    if not path.exists():
        return "missing"
    if want is not None and checkpoint.sha256_file(path) != want:
        return "corrupt"
    return "ok"


def verify(root=None) -> list[dict]:
    """One row per checkpoint in the cache and per shipped file: ``{"file", "kind", "shipped", "status"}``
    with status ``ok``, ``corrupt`` (hash differs from its metadata or the manifest), ``missing`` or
    ``partial`` (metadata without weights)."""
    folder = zoo.cache_dir(root)
    ship = manifest(root)
    rows, seen = [], set()
    for f, entry in sorted(ship.items()):
        seen.add(f)
        rows.append({"file": f, "kind": entry["kind"], "shipped": True, "status": _status(folder / f, entry["sha256"])})
    for meta_file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if meta_file.name == MANIFEST or ".train-state" in meta_file.name:
            continue
        try:
            meta = json.loads(meta_file.read_text())
        except ValueError:
            rows.append({"file": meta_file.name, "kind": "?", "shipped": meta_file.name in ship, "status": "corrupt"})
            continue
        if "sha256" not in meta:  # a learned mixer's head: checked through the manifest only
            continue
        pt = meta_file.with_suffix(".pt")
        if pt.name in seen:
            continue
        status = "partial" if not pt.exists() else _status(pt, meta["sha256"])
        rows.append({"file": pt.name, "kind": meta.get("config", {}).get("kind", "zoo"), "shipped": False,
                     "status": status})
    return rows


def check(root=None) -> None:
    """Raise ``RuntimeError`` naming every shipped file that is missing or modified, with how to fix it."""
    folder = zoo.cache_dir(root)
    bad = [r for r in verify(root) if r["shipped"] and r["status"] != "ok"]
    if bad:
        lines = [f"shipped checkpoint {_rel(folder / r['file'])} is {r['status']}; {restore_hint(folder / r['file'])}"
                 for r in bad]
        raise RuntimeError("\n".join(lines))


@torch.no_grad()
def clean_accuracy(model, dataset: str, n: int = CHECK_N) -> float:
    """Clean accuracy on the first ``n`` test images."""
    x, y = data.load(dataset, "test")
    x, y = x[:n], y[:n]
    dev = next(model.parameters()).device
    hits = sum((model(x[sl].to(dev)).argmax(1).cpu() == y[sl]).sum().item() for sl in batches(len(x), 500))
    return hits / len(x)


def _mixnet_model(meta: dict, root=None):
    ident = meta["config"]
    g = _zoo_model(ident["g"]["name"], f"{ident['g']['name']}-{ident['g']['config_hash']}", root)
    h = _zoo_model(ident["h"]["name"], f"{ident['h']['name']}-{ident['h']['config_hash']}", root)
    cfg = ident["mixing"]
    net = for_models(g, h, width=cfg["width"], blocks=cfg["blocks"], bn_momentum=cfg["bn_momentum"])
    state, _ = checkpoint.load(zoo.cache_dir(root) / meta["name"])
    net.load_state_dict(state, strict=True)
    return AdaptiveMixedClassifier(g, h, net).eval(), zoo.recipe(ident["g"]["name"]).dataset


def _zoo_model(name: str, stem: str, root=None):
    state, _ = checkpoint.load(zoo.cache_dir(root) / stem)  # sha256 checked
    model = zoo.build(name)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_for_check(entry: dict, root=None):
    """(model, dataset) of a shipped weights entry, loaded with its hash checked."""
    if entry["kind"] == "zoo":
        return _zoo_model(entry["name"], entry["stem"], root), zoo.recipe(entry["name"]).dataset
    meta = checkpoint.read_metadata(zoo.cache_dir(root) / entry["stem"])
    return _mixnet_model(meta, root)


def ship(root=None, training_threads: int = 1) -> dict:
    """Write the manifest from the cache's current checkpoints and learned-mixer heads; return it.
    ``training_threads``: the torch threads each model was trained with (recorded for retraining)."""
    folder = zoo.cache_dir(root)
    files = {}
    for meta_file in sorted(folder.glob("*.json")):
        if meta_file.name == MANIFEST or ".train-state" in meta_file.name:
            continue
        meta = json.loads(meta_file.read_text())
        if "sha256" not in meta:  # a learned mixer's head
            files[meta_file.name] = {"kind": "learned-mixer-head", "sha256": checkpoint.sha256_file(meta_file)}
            continue
        kind = "mixing-network" if meta.get("config", {}).get("kind") == "mixing-network" else "zoo"
        entry = {"kind": kind, "stem": meta_file.stem, "sha256": meta["sha256"],
                 "name": meta["name"] if kind == "zoo" else meta_file.stem}
        checkpoint.load(folder / meta_file.stem)  # refuses a corrupt file before it is shipped
        model, dataset = load_for_check(entry, root)
        entry["clean_first_1000"] = clean_accuracy(model, dataset)
        files[meta_file.stem + ".pt"] = entry
        files[meta_file.name] = {"kind": kind + "-metadata", "sha256": checkpoint.sha256_file(meta_file)}
    doc = {"note": "written by `python -m adasmooth zoo ship`; every file here is committed (data/zoo)",
           "training_threads": training_threads, "torch": torch.__version__, "files": files}
    checkpoint.atomic_write_json(manifest_path(root), doc)
    return files


def _model_key(meta: dict) -> str:
    """What a checkpoint is a model *of*, independent of its weights (and of its base models' weights)."""
    cfg = meta.get("config", {})
    if cfg.get("kind") == "mixing-network":
        return f"mixnet {cfg['g']['name']} + {cfg['h']['name']} {checkpoint.config_hash(cfg['mixing'])}"
    return f"zoo {meta.get('name')} {meta.get('config_hash')}"


def _checkpoints(root) -> dict:
    out = {}
    folder = zoo.cache_dir(root)
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if f.name == MANIFEST or ".train-state" in f.name:
            continue
        meta = json.loads(f.read_text())
        if "sha256" in meta:
            out[_model_key(meta)] = meta
    return out


def _identical(a, b) -> str:
    if b is None:
        return "not retrained"
    if a is None:
        return "not shipped"
    return "yes" if a["sha256"] == b["sha256"] else "no"


def write_comparison(path, *, retrained_root, shipped_root=None, note: str | None = None) -> Path:
    """``retrain_comparison.md``: each shipped model beside its retrained version (hash, recorded metrics);
    ``note``: how the retrained models were made (a line under the title)."""
    import platform

    ship, new = _checkpoints(shipped_root), _checkpoints(retrained_root)
    lines = ["# Retrained vs shipped checkpoints", "",
             f"torch {torch.__version__}, Python {platform.python_version()}; models train with one torch thread "
             "each.  Identical weights are expected on the same machine kind and thread count; otherwise metrics "
             "agree within a few tenths of a point.", "", *([note, ""] if note else []),
             "| model | shipped sha256 | retrained sha256 | identical | shipped metrics | retrained metrics |",
             "|---|---|---|---|---|---|"]
    for key in sorted(set(ship) | set(new)):
        a, b = ship.get(key), new.get(key)

        def metrics(m):
            if m is None:
                return "–"
            mt = m.get("metrics") or {k: m[k] for k in ("final_loss", "train_seconds") if k in m}
            return ", ".join(f"{k} {v:.4g}" for k, v in mt.items() if isinstance(v, float))
        lines.append(f"| {key} | {a['sha256'][:12] if a else '–'} | {b['sha256'][:12] if b else '–'} | "
                     f"{_identical(a, b)} | {metrics(a)} | {metrics(b)} |")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path
