"""Device, seeding and progress helpers shared by every module.

All code is device-agnostic: ``device=None`` means CUDA when present, CPU otherwise.
"""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger(__name__)

__version__ = "0.1.0"  # the package version, recorded in every checkpoint and results file


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a ``torch.device``; ``None`` picks CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed``."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


def set_deterministic(enabled: bool = True) -> None:
    """Ask torch for deterministic kernels (same seed => same numbers on the same machine)."""
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = not enabled
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def progress_bar(iterable=None, *, progress: bool, **kw):
    """``tqdm.auto`` behind an explicit flag (tqdm in kernels ignores TQDM_DISABLE)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress, **kw)


def batches(n: int, batch_size: int):
    """Yield ``slice`` objects covering ``range(n)`` in chunks of ``batch_size``."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def project_root():
    """The folder that holds the ``adasmooth`` package (a source checkout's root)."""
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def data_root() -> "os.PathLike":
    """Where datasets and the model cache live: ``$ADASMOOTH_DATA``, else ``<project>/data`` for a
    source checkout, else ``~/.cache/adasmooth``."""
    from pathlib import Path

    env = os.environ.get("ADASMOOTH_DATA")
    if env:
        return Path(env)
    project = Path(__file__).resolve().parent.parent
    if (project / "pyproject.toml").exists():
        return project / "data"
    return Path.home() / ".cache" / "adasmooth"
