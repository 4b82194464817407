"""The content-addressed cache of attack results (``data/attack-cache``).

An attack's outcome is a function of its inputs: the models' weights (and a mixer's head), the attack
and every parameter of it, and the images.  :func:`key` hashes exactly that description, so a rerun,
or another notebook asking the same question, reads the answer instead of recomputing it, and any
change of weights, parameters or images misses.  An entry is a JSON file named by its key; it holds
the result and the seconds the computation took (so a reader can say what a cached number cost).
Entries are written atomically; an unreadable one is ignored (recomputed and rewritten).

Three guards make a replay trustworthy on any machine:

- *Keys machines share.*  A model whose knob was set by a calibration (the head's shift, α_min, a constant
  α) is keyed by what the calibration read (:func:`calibrated`: the uncalibrated weights, the target, the
  images, the method and its tolerance), never by the float it returned, whose last digits differ between
  CPUs.
- *Code version.*  Every entry records :data:`CODE_VERSION`, the version of the attack code that made it;
  an entry of another version is recomputed.  Bump it with any change that alters an attack's outcome.
- *Verification.*  Under :func:`verifying` (``reproduce`` sets it for every notebook through
  ``ADASMOOTH_VERIFY_FRACTION`` / ``ADASMOOTH_VERIFY_SEED``) a seeded sample of the entries read (the
  fraction, and at least the first read of each process) is recomputed and compared per image; more than
  :func:`tolerance` differing images raise :class:`CacheMismatch` naming the entry.  An entry whose answer can
  be recomputed for some of its images alone (``cached_values(partial=)``: the noise votes, whose generator
  is walked without the forward passes) is verified on every read, on a seeded sample of the fraction of its
  images (at least :data:`SAMPLE_MIN`), so that a costly entry's check costs that fraction of it.  Notebooks that
  read the same entries pick the same sample (it depends on the seed and the entry only); with
  ``$ADASMOOTH_VERIFY_CLAIMS`` (a folder ``reproduce`` makes per run) the first process to reach a sampled entry
  claims it and the others skip its check (:func:`_claimed_elsewhere`).  :data:`stats` counts
  what a process read, verified and computed (written into each notebook's results).

Under :func:`checking` nothing is computed: a miss raises :class:`CacheMiss` (``cache check``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn

from . import checkpoint
from .runtime import data_root

log = logging.getLogger(__name__)

CODE_VERSION = 1
VERIFY_FRACTION_ENV, VERIFY_SEED_ENV = "ADASMOOTH_VERIFY_FRACTION", "ADASMOOTH_VERIFY_SEED"
VERIFY_CLAIMS_ENV = "ADASMOOTH_VERIFY_CLAIMS"  # a run's folder of claimed entries: each sampled entry checked once
PROGRESS_ENV = "ADASMOOTH_PROGRESS_FILE"
stats = {"read": 0, "verified": 0, "identical": 0, "differing_images": 0, "computed": 0, "computed_keys": [],
         "verified_keys": [], "sampled": 0, "verified_elsewhere": 0}
SAMPLE_MIN = 2  # images an entry verified on a sample of its images recomputes at the least
_state = {"check": False, "questions": [], "fraction": None, "seed": 0, "keys": None, "fresh": set()}


class CacheMiss(LookupError):
    """Raised under :func:`checking` for a question the cache cannot answer (its key)."""


class CacheMismatch(RuntimeError):
    """A cached answer that its recomputation contradicts (more than :func:`tolerance` images differ)."""


def tolerance(n: int) -> int:
    """How many of an entry's ``n`` images may differ when it is recomputed on another CPU (floating-point
    sums differ, so an image at the margin may flip): 1 % of them, rounded down."""
    return n // 100


@contextlib.contextmanager
def checking():
    """Within it, a question the cache cannot answer raises :class:`CacheMiss` instead of being computed;
    yields the list of the questions asked (their keys, hits included)."""
    old = _state["check"], _state["questions"]
    _state["check"], _state["questions"] = True, []
    try:
        yield _state["questions"]
    finally:
        _state["check"], _state["questions"] = old


@contextlib.contextmanager
def verifying(fraction: float, seed: int = 0, keys=None):
    """Within it, recompute a seeded ``fraction`` of the entries read (and the first one) and compare; with
    ``keys``, exactly the entries of those names instead."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"verify fraction must lie in [0, 1], got {fraction}")
    old = _state["fraction"], _state["seed"], _state["keys"]
    _state["fraction"], _state["seed"] = float(fraction), int(seed)
    _state["keys"] = set(keys) if keys else None
    try:
        yield stats
    finally:
        _state["fraction"], _state["seed"], _state["keys"] = old


@contextlib.contextmanager
def not_verifying():
    """Within it, nothing read is recomputed to verify it (a worker process whose reads its parent verifies)."""
    old = _state["keys"]
    _state["keys"] = set()
    try:
        yield
    finally:
        _state["keys"] = old


def _verify_settings() -> tuple[float | None, int]:
    if _state["fraction"] is not None:
        return _state["fraction"], _state["seed"]
    env = os.environ.get(VERIFY_FRACTION_ENV)
    return (float(env) if env else None), int(os.environ.get(VERIFY_SEED_ENV, "0"))


def _selected(name: str) -> bool:
    """Whether the entry ``name`` is recomputed: the first read of the process, then a seeded sample."""
    if _state["keys"] is not None:
        return name in _state["keys"]
    fraction, seed = _verify_settings()
    if fraction is None:
        return False
    if stats["verified"] == 0:
        return True
    u = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:15], 16) / 16 ** 15
    return u < fraction


def _image_sample(name: str, n: int):
    """The seeded bool mask of the images of a partially recomputable entry that verification recomputes
    (the fraction of its ``n`` images, at least :data:`SAMPLE_MIN`); None when a sample is not what is asked
    (no verification, or named entries, which are recomputed whole)."""
    fraction, seed = _verify_settings()
    if _state["keys"] is not None or fraction is None or n == 0:
        return None
    k = min(n, max(SAMPLE_MIN, math.ceil(fraction * n)))
    g = torch.Generator().manual_seed(int(hashlib.sha256(f"{seed}:{name}:images".encode()).hexdigest()[:15], 16))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=g)[:k]] = True
    return mask


def _claimed_elsewhere(name: str) -> bool:
    """Whether another process of this run already claimed the check of entry ``name`` (the claim is a file
    created exclusively in ``$ADASMOOTH_VERIFY_CLAIMS``; without that folder every process checks its sample)."""
    folder = os.environ.get(VERIFY_CLAIMS_ENV)
    if not folder or _state["keys"] is not None:
        return False
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return False
    except FileExistsError:
        return True
    except OSError:  # no usable folder: check here
        return False


def computed_elsewhere(keys) -> None:
    """Count the entries ``keys`` that a worker process of this one computed in this run as computed here (so the
    summary lists them), and do not recompute them to verify them when they are read back here."""
    keys = list(keys)
    stats["computed"] += len(keys)
    stats["computed_keys"] += keys
    _state["fresh"].update(keys)


def report() -> dict:
    """This process's counters (:data:`stats`), the code version and the verification settings."""
    fraction, seed = _verify_settings()
    return {**stats, "code_version": CODE_VERSION, "verify_fraction": fraction, "verify_seed": seed}


def _report(name: str, what: str) -> None:
    """Write this process's counters and the current question to ``$ADASMOOTH_PROGRESS_FILE`` (if set), for
    the pipeline's progress lines."""
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    try:
        checkpoint.atomic_write_json(path, {"entry": name, "what": what, "time": time.time(),
                                            **{k: v for k, v in stats.items() if not k.endswith("_keys")}})
    except OSError:  # progress is best effort
        pass


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
    """The ``n``-image bool mask that :func:`pack` wrote; ``ValueError`` unless ``text`` holds exactly its bytes."""
    raw = bytes.fromhex(text)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"packed mask holds {8 * len(raw)} values, expected {n}")
    return torch.from_numpy(np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:n].astype(bool))


def _unreadable(path, why: str = "") -> None:
    """Log an entry that cannot be used (its file named); the caller treats it as a miss, recomputed and rewritten."""
    log.warning("ignoring unreadable attack-cache entry %s%s: recomputed", path, f" ({why})" if why else "")


def _read(path):
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        _unreadable(path)
        return None
    if not isinstance(doc, dict) or doc.get("code_version") != CODE_VERSION:
        log.info("attack-cache entry %s was made by attack code version %s, not %s: recomputed", path.name,
                 doc.get("code_version") if isinstance(doc, dict) else None, CODE_VERSION)
        return None
    return doc


def differing(a: torch.Tensor, b: torch.Tensor, n: int) -> int:
    """How many of ``n`` images two answers to the same question disagree on: per-image tensors (one row per image)
    compared image by image (bool masks exactly, counts and values to 1e-4); all ``n`` when the shapes differ."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        return n
    if a.dtype == torch.bool:
        return int((a != b).sum())
    differs = (a.double() - b.double()).abs() > 1e-4
    return int(differs.reshape(len(differs), -1).any(1).sum()) if differs.ndim > 1 else int(differs.sum())


def _answer(name: str, path, stored, compute, n_of, what: str, partial=None):
    """The answer to the entry ``name``: ``(value, seconds, hit)``.  ``stored`` is the cached value (None: a
    miss); under verification a selected hit is recomputed and compared (with ``partial``, a callable of a bool
    image mask returning the answer's rows for those images, on a seeded sample of its images)."""
    if stored is not None:
        stats["read"] += 1
        _report(name, what)
        sample = _image_sample(name, n_of(stored[0])) if partial is not None else None
        checked = name not in _state["fresh"] and (sample is not None or _selected(name))
        if checked and _claimed_elsewhere(name):
            stats["verified_elsewhere"] += 1
        elif checked:
            old, fresh = (stored[0], compute()) if sample is None else (stored[0][sample], partial(sample)[sample])
            n = n_of(fresh)
            diff = differing(old, fresh, n)
            stats["verified"] += 1
            stats["sampled"] += sample is not None
            stats["verified_keys"].append(name)
            stats["differing_images"] += diff
            if diff > tolerance(n):
                part = "" if sample is None else f" (a seeded sample of {n} of its {len(sample)} images)"
                raise CacheMismatch(f"attack-cache entry {path} ({what}): its recomputation{part} differs on {diff} "
                                    f"of {n} images (tolerance {tolerance(n)}); the stored answer is stale or was "
                                    "altered: delete the entry to recompute it")
            stats["identical"] += diff == 0
        return stored[0], stored[1], True
    if _state["check"]:
        raise CacheMiss(name)
    t0 = time.perf_counter()
    value = compute()
    seconds = time.perf_counter() - t0
    stats["computed"] += 1
    stats["computed_keys"].append(name)
    _report(name, what)
    return value, seconds, False


def cached_values(name: str, compute, use_cache: bool, dtype=torch.bool, what: str = "", partial=None,
                  n: int | None = None):
    """``(values, seconds, hit)``: the per-image tensor stored under ``name``, or ``compute()`` stored there.
    ``partial(mask)``: the same tensor computed for the images of a bool mask alone (their rows exact, the
    others arbitrary), which lets verification recompute a sample of the images (module docstring).  ``n``: the
    number of images the answer must hold (a stored answer of another length is unreadable: logged, recomputed)."""
    path = cache_dir() / f"{name}.json"
    if _state["check"]:
        _state["questions"].append(name)
    doc = _read(path) if use_cache else None

    def decode(v):
        t = torch.tensor(v, dtype=dtype)
        if n is not None and len(t) != n:
            raise ValueError(f"the stored answer holds {len(t)} values, expected {n}")
        return t
    stored = _stored(path, doc, "correct", decode)
    values, seconds, hit = _answer(name, path, stored, lambda: compute().cpu(), len, what,
                                   partial and (lambda mask: partial(mask).cpu()))
    if use_cache and not hit:
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write_json(path, {"correct": values.cpu().tolist(), "seconds": round(seconds, 2),
                                            "what": what, "code_version": CODE_VERSION})
    return values.cpu(), seconds, hit


def _stored(path, doc, field: str, decode):
    """``(decode(doc[field]), doc["seconds"])`` of a read entry, None without one; an entry whose value ``decode``
    refuses, or without its seconds, is unreadable: logged naming its file, and a miss."""
    if doc is None or field not in doc:
        return None
    try:
        if not isinstance(doc.get("seconds"), (int, float)):
            raise ValueError(f"seconds must be a number, got {doc.get('seconds')!r}")
        return decode(doc[field]), doc["seconds"]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        _unreadable(path, f"{type(e).__name__}: {e}")
        return None


def calibrated(identity: str, **calibration) -> str:
    """The content address of a model whose knob a calibration set: the uncalibrated model's ``identity`` and
    what the calibration read (``knob``, ``target``, ``images`` hash, ``method``, ``tol``, ...), not the value it
    returned, so that every machine of a kind asks the same question."""
    return hashlib.sha256(json.dumps({"identity": identity, "calibrated": calibration}, sort_keys=True,
                                     default=str).encode()).hexdigest()
