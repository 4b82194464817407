"""Datasets as tensors: ``load(name, split) -> (x, y)`` with ``x`` in [0, 1], shape (N, C, H, W).

Resolution order for every dataset: files already under ``root`` (torchvision's layout, :func:`layout`; e.g.
``<root>/cifar-10-batches-py/`` for CIFAR-10);
for Fashion-MNIST, the files of Debian's ``dataset-fashion-mnist`` package (copied under
``root``); torchvision's download only when the caller passes ``download=True``.  The idx files of
MNIST and Fashion-MNIST are checked (header and length, :func:`check_files`) before they are read: a corrupt
one is recopied from Debian's package, removed for a download, or named with the command that restores it.
"""
from __future__ import annotations

import gzip
import logging
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# name -> (torchvision class name, channels, side, classes)
DATASETS = {
    "fashion-mnist": ("FashionMNIST", 1, 28, 10),
    "mnist": ("MNIST", 1, 28, 10),
    "cifar10": ("CIFAR10", 3, 32, 10),
    "cifar100": ("CIFAR100", 3, 32, 100),
}
SPLITS = ("train", "test", "fit", "val")
# "val": a fixed class-balanced slice of the training set (VAL_PER_CLASS images per class, drawn with
# VAL_SEED) that no shipped model trains on; "fit": the rest of the training set.  Calibration (shifts,
# α ranges, constant α) is chosen on "val", never on the test images.
VAL_PER_CLASS, VAL_SEED = 500, 20240
# the raw idx files of MNIST and Fashion-MNIST (torchvision's <root>/<class>/raw) -> their dimensions
IDX_FILES = {"train-images-idx3-ubyte": (60000, 28, 28), "train-labels-idx1-ubyte": (60000,),
             "t10k-images-idx3-ubyte": (10000, 28, 28), "t10k-labels-idx1-ubyte": (10000,)}

CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"],
}


class DataNotFoundError(FileNotFoundError):
    """The dataset is not on disk and downloading was not allowed."""


class DataCorruptError(DataNotFoundError):
    """A dataset file is on disk but cut short or malformed: ``corrupt: <path> (...); restore with: <command>``."""


def info(name: str) -> dict:
    """Shape facts of a dataset: ``{"channels", "side", "num_classes"}``."""
    _check_name(name)
    _, c, s, k = DATASETS[name]
    return {"channels": c, "side": s, "num_classes": k}


def fetch_command(name: str) -> str:
    """The exact shell command that puts ``name`` where :func:`load` finds it."""
    if name == "fashion-mnist":
        return "sudo apt-get install -y dataset-fashion-mnist   (or: python -m adasmooth data fetch fashion-mnist)"
    return f"python -m adasmooth data fetch {name}   (needs internet)"


def layout(name: str, root: str | Path) -> str:
    """Where torchvision's class for ``name`` reads its files under ``root`` (the folder and its files)."""
    import torchvision.datasets as tvd

    _check_name(name)
    cls = getattr(tvd, DATASETS[name][0])
    if hasattr(cls, "base_folder"):  # CIFAR-10/100: the extracted archive's folder
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return f"{Path(root).resolve() / cls.base_folder}/ ({', '.join(files)}; from {cls.url}, extracted)"
    files = [f for f, _ in getattr(cls, "resources", [])]
    return f"{Path(root).resolve() / cls.__name__ / 'raw'}/ ({', '.join(f.removesuffix('.gz') for f in files)})"


def load(name: str, split: str = "test", root: str | Path | None = None, download: bool = False):
    """Return ``(x, y)``: float32 images in [0, 1] of shape (N, C, H, W) and int64 labels.

    ``root`` defaults to :func:`adasmooth.runtime.data_root` (``<project>/data``).  ``split`` is
    ``train`` or ``test`` (the dataset's own), or ``fit`` / ``val``: the training set without / with only
    its held-out validation slice (:func:`validation_indices`).
    """
    _check_name(name)
    if root is None:
        from .runtime import data_root
        root = data_root()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    import torchvision.datasets as tvd

    if split in ("fit", "val"):
        x, y = load(name, "train", root=root, download=download)
        val = validation_indices(y)
        keep = val if split == "val" else _complement(val, len(y))
        return x[keep], y[keep]
    cls = getattr(tvd, DATASETS[name][0])
    for note in check_files(name, root, download=download):  # idx files: Debian's copied, corrupt ones repaired
        log.warning("%s", note)
    try:
        ds = cls(str(root), train=(split == "train"), download=False)
    except RuntimeError:
        if not download:
            raise DataNotFoundError(
                f"dataset {name!r} ({split}) not found under {root.resolve()}; fetch it with: {fetch_command(name)}, "
                f"or put a copy in torchvision's layout at {layout(name, root)}"
            ) from None
        log.info("downloading %s to %s", name, root)
        ds = cls(str(root), train=(split == "train"), download=True)
    data = ds.data
    data = torch.as_tensor(np.asarray(data))
    if data.ndim == 3:  # (N, H, W) grey
        data = data.unsqueeze(1)
    else:  # (N, H, W, C)
        data = data.permute(0, 3, 1, 2)
    x = data.contiguous().float().div_(255.0)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return x, y


def balanced_subset(y: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of a deterministic class-balanced subset: ``per_class`` items of every class.

    The paper evaluates on 200 images per class.  Indices come back sorted.
    """
    y = torch.as_tensor(y)
    if per_class <= 0:
        raise ValueError(f"per_class must be positive, got {per_class}")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        if len(idx) < per_class:
            raise ValueError(f"per_class={per_class} exceeds the {len(idx)} items of class {c}")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def validation_indices(y: torch.Tensor) -> torch.Tensor:
    """Sorted indices of the held-out validation slice of a training set (labels ``y``)."""
    return balanced_subset(y, VAL_PER_CLASS, seed=VAL_SEED)


def _complement(idx: torch.Tensor, n: int) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[idx] = False
    return mask.nonzero().flatten()


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"dataset name must be one of {sorted(DATASETS)}, got {name!r}")


def idx_problem(path: str | Path, dims: tuple[int, ...] | None = None) -> str | None:
    """What is wrong with the idx file ``path`` (None when nothing): its header's magic (unsigned bytes,
    ``len(dims)`` dimensions), its dimensions (``dims`` when given) and its length (header + items)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] == 0:
            return f"not an idx file of unsigned bytes (header {head.hex() or 'empty'}), got {size} bytes"
        got_dims = f.read(4 * head[3])
    if len(got_dims) < 4 * head[3]:
        return f"header cut short: {size} bytes"
    got = tuple(int.from_bytes(got_dims[4 * i:4 * i + 4], "big") for i in range(head[3]))
    if dims is not None and got != tuple(dims):
        return f"expected dimensions {tuple(dims)}, the header says {got}"
    expected = 4 + 4 * len(got) + int(np.prod(got, dtype=np.int64))
    if size != expected:
        return f"expected {expected} bytes, got {size}"
    return None


def check_files(name: str, root: str | Path | None = None, download: bool = False) -> list[str]:
    """Check the idx files of ``mnist`` / ``fashion-mnist`` under ``root`` (:func:`idx_problem`) and, for
    Fashion-MNIST, copy the missing ones from Debian's package; returns one note per repaired file.

    A corrupt copy is recopied from Debian's package when that is installed (whole), else removed when
    ``download`` (torchvision then downloads it again), else :class:`DataCorruptError` names the file and the
    command that restores it.  A corrupt Debian file raises :class:`DataCorruptError` with the reinstall command.
    """
    _check_name(name)
    if name not in ("mnist", "fashion-mnist"):
        return []
    if root is None:
        from .runtime import data_root
        root = data_root()
    raw = Path(root) / DATASETS[name][0] / "raw"
    debian = name == "fashion-mnist" and all((DEBIAN_FASHION_MNIST / f"{f}.gz").is_file() for f in IDX_FILES)
    notes = []
    for f, dims in IDX_FILES.items():
        dst = raw / f
        if not dst.exists():
            if debian:
                _copy_gz(DEBIAN_FASHION_MNIST / f"{f}.gz", dst, dims)
                log.info("copied %s.gz from %s into %s", f, DEBIAN_FASHION_MNIST, raw)
            continue
        problem = idx_problem(dst, dims)
        if problem is None:
            continue
        if debian:
            _copy_gz(DEBIAN_FASHION_MNIST / f"{f}.gz", dst, dims)  # replaces the corrupt copy atomically
            notes.append(f"corrupt: {dst} ({problem}); recopied from {DEBIAN_FASHION_MNIST / f}.gz")
        elif download:
            dst.unlink(missing_ok=True)
            notes.append(f"corrupt: {dst} ({problem}); removed, downloading it again")
        else:
            raise DataCorruptError(f"corrupt: {dst} ({problem}); restore with: {fetch_command(name)}")
    return notes


def _copy_gz(src: Path, dst: Path, dims: tuple[int, ...]) -> None:
    """Gunzip ``src`` into ``dst`` through a temporary file of its own (notebooks side by side may copy at
    once), checked (:func:`idx_problem`) before it replaces ``dst``; :class:`DataCorruptError` when ``src`` is."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as d, gzip.open(src, "rb") as s:
                shutil.copyfileobj(s, d)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            problem = f"cannot gunzip it: {e}"
        else:
            problem = idx_problem(tmp, dims)
            problem = problem and f"gunzipped: {problem}"
        if problem:
            raise DataCorruptError(f"corrupt: {src} ({problem}); restore with: "
                                   f"sudo apt-get install --reinstall -y dataset-fashion-mnist")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _install_debian_fashion_mnist(root: Path) -> None:
    """Copy Debian's gzipped Fashion-MNIST files, extracted and checked, into torchvision's raw folder
    (:func:`check_files`: a corrupt copy there is recopied)."""
    for note in check_files("fashion-mnist", root):
        log.warning("%s", note)
