"""Atomic, hash-checked checkpoints: a ``state_dict`` file plus a JSON metadata file.

Layout for a checkpoint ``stem``: ``stem.pt`` (weights, ``torch.save``) and ``stem.json``
(metadata including the weights' sha256).  The JSON is written last, so it marks a complete
checkpoint; a weights file whose hash does not match its JSON is rejected, never used.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial, corrupt or does not match what was asked for."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> str:
    """``torch.save`` ``obj`` atomically; return the sha256 of the bytes written."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path_for(stem: str | os.PathLike, suffix: str) -> Path:
    """``stem`` + ``suffix`` (appended: ``Path.with_suffix`` would cut a stem such as
    ``fmnist-gauss-0.12-<hash>`` at its dot and make different checkpoints collide)."""
    stem = Path(stem)
    return stem.parent / (stem.name + suffix)


def save(stem: str | os.PathLike, state_dict: dict, metadata: dict) -> dict:
    """Save ``state_dict`` to ``stem.pt`` and ``metadata`` (+ ``sha256``) to ``stem.json``."""
    stem = Path(stem)
    digest = atomic_torch_save(path_for(stem, ".pt"), state_dict)
    meta = dict(metadata, sha256=digest)
    atomic_write_json(path_for(stem, ".json"), meta)
    return meta


def read_metadata(stem: str | os.PathLike) -> dict:
    """Return the metadata of a checkpoint; raise ``CheckpointError`` if it is absent or unreadable."""
    meta_path = path_for(stem, ".json")
    if not meta_path.exists():
        raise CheckpointError(f"checkpoint metadata {meta_path} not found")
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata {meta_path} is unreadable: {e}") from e


def load(stem: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Load ``(state_dict, metadata)`` after checking the weights' sha256 against the metadata.

    Loading uses ``torch.load(weights_only=True)``.
    """
    stem = Path(stem)
    meta = read_metadata(stem)
    pt = path_for(stem, ".pt")
    if not pt.exists():
        raise CheckpointError(f"checkpoint weights {pt} not found (metadata exists: partial checkpoint)")
    digest = sha256_file(pt)
    if digest != meta.get("sha256"):
        raise CheckpointError(
            f"checkpoint {pt} fails its sha256 check (file {digest[:12]}..., metadata "
            f"{str(meta.get('sha256'))[:12]}...): it is partial or was modified; delete it and retrain"
        )
    try:
        state = torch.load(pt, map_location=map_location, weights_only=True)
    except Exception as e:  # pragma: no cover - hash matched, so this is a torch incompatibility
        raise CheckpointError(f"checkpoint {pt} could not be loaded: {e}") from e
    return state, meta


def remove(stem: str | os.PathLike) -> None:
    """Delete checkpoint ``stem`` (its metadata first, so a half-deleted one reads as absent)."""
    for suffix in (".json", ".pt"):
        path_for(stem, suffix).unlink(missing_ok=True)


def resume(stem: str | os.PathLike | None, config: dict, modules: dict, map_location="cpu") -> dict | None:
    """Resume a training run: when ``stem`` holds a training state saved for ``config``, load
    ``modules[key].load_state_dict(state[key])`` for each key and return the state's metadata;
    otherwise (none, another configuration, or unusable: logged) return None."""
    if stem is None or not path_for(stem, ".json").exists():
        return None
    try:
        state, meta = load(stem, map_location=map_location)
    except CheckpointError as e:
        log.warning("ignoring unusable training state: %s", e)
        return None
    if meta.get("config") != config:
        return None
    for key, module in modules.items():
        module.load_state_dict(state[key])
    return meta


@contextlib.contextmanager
def exclusive(stem: str | os.PathLike):
    """Hold an exclusive lock on ``<stem>.lock`` (an advisory ``flock``; none where ``fcntl`` is missing):
    two processes about to train the same checkpoint take turns, and the second finds it made.  The lock
    file is removed when released, so the guarded work must check again, under the lock, that it is still
    to be done (a process that opened the old file holds a lock nobody else asks for)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    p = path_for(stem, ".lock")
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            p.unlink(missing_ok=True)
            fcntl.flock(f, fcntl.LOCK_UN)


def config_hash(config: dict) -> str:
    """A short stable hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _json_default(o):
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
