"""The content-addressed cache of attack results (``data/attack-cache``).

An attack's outcome is a function of its inputs: the models' weights (and a mixer's head), the attack
and every parameter of it, and the images.  :func:`key` hashes exactly that description, so a rerun,
or another notebook asking the same question, reads the answer instead of recomputing it, and any
change of weights, parameters or images misses.  An entry is a JSON file named by its key; it holds
the result and the seconds the computation took (so a reader can say what a cached number cost).
Entries are written atomically; an unreadable one is ignored (recomputed and rewritten).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time

import numpy as np
import torch
import torch.nn as nn

from . import checkpoint
from .runtime import data_root

log = logging.getLogger(__name__)


def cache_dir():
    """``<data>/attack-cache``: shipped with the repository for the default profile's questions."""
    return data_root() / "attack-cache"


def fingerprint(*modules: nn.Module, extra=None) -> str:
    """sha256 of the modules' weights and buffers (and ``extra``): the content address of a mixer."""
    h = hashlib.sha256()
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def images_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of the images and their labels."""
    h = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def key(description: dict) -> str:
    """The entry name of a question: 32 hex digits of the sha256 of its JSON description."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def pack(mask: torch.Tensor) -> str:
    """A bool mask as hex (8 images a byte); :func:`unpack` inverts it given the length."""
    return np.packbits(mask.detach().cpu().numpy().astype(bool)).tobytes().hex()


def unpack(text: str, n: int) -> torch.Tensor:
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n]
    if len(bits) != n:
        raise ValueError(f"packed mask holds {len(bits)} values, expected {n}")
    return torch.from_numpy(bits.astype(bool))


def _read(path):
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        log.warning("ignoring unreadable attack-cache entry %s", path)
        return None


def cached_values(name: str, compute, use_cache: bool, dtype=torch.bool):
    """``(values, seconds, hit)``: the per-image tensor stored under ``name``, or ``compute()`` stored there."""
    path = cache_dir() / f"{name}.json"
    doc = _read(path) if use_cache else None
    if doc is not None and "correct" in doc:
        return torch.tensor(doc["correct"], dtype=dtype), doc["seconds"], True
    t0 = time.perf_counter()
    values = compute()
    seconds = time.perf_counter() - t0
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write_json(path, {"correct": values.cpu().tolist(), "seconds": round(seconds, 2)})
    return values.cpu(), seconds, False


def cached_doc(description: dict, compute, use_cache: bool) -> tuple[dict, float, bool]:
    """``(result, seconds, hit)``: the JSON-ready ``result`` of the question ``description`` (a dict
    that names everything the answer depends on), read from the cache or ``compute()``-d and stored."""
    path = cache_dir() / f"{key(description)}.json"
    doc = _read(path) if use_cache else None
    if doc is not None and "result" in doc:
        return doc["result"], doc["seconds"], True
    t0 = time.perf_counter()
    result = compute()
    seconds = time.perf_counter() - t0
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write_json(path, {"question": description, "result": result, "seconds": round(seconds, 2)})
    return result, seconds, False
