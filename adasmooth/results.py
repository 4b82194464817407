"""A notebook's results file: one JSON per notebook, written atomically, read back by the pipeline.

Layout of ``<out_dir>/<name>.json``::

    {"name": ..., "params": {...}, "inputs": [{"spec", "kind", "file", "sha256"}, ...],
     "metrics": {...}, "tables": [{"title", "columns": [...], "rows": [[...], ...]}, ...],
     "figures": [paths relative to the JSON's folder], "data": {...raw numbers...}, "versions": {...}}

``inputs`` are the files the numbers depend on (zoo checkpoints, user model modules); the
pipeline reruns a notebook when one of them changes (see :mod:`adasmooth.pipeline`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
from pathlib import Path

from . import attack_cache, checkpoint
from .runtime import __version__, project_root
from .tables import INTERVAL, NORMS, _cell, caption, markdown_table, table  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


def path(out_dir: str | os.PathLike, name: str) -> Path:
    """Where the results of notebook ``name`` live under ``out_dir``."""
    return Path(out_dir) / f"{name}.json"


# where notebooks run by hand write (``out_dir``/``fig_dir`` None), whatever the caller's folder
INTERACTIVE = Path(__file__).resolve().parent.parent / "results" / "interactive"


def output_dir(folder: str | os.PathLike | None, figures: bool = False) -> Path:
    """``folder``, or for None the project's ``results/interactive`` (``.../figures`` when ``figures``)."""
    if folder is None:
        return INTERACTIVE / "figures" if figures else INTERACTIVE
    return Path(folder)


_CAPTION_GID = "adasmooth-caption"


def add_caption(fig, text: str, fontsize: float = 8) -> None:
    """Write ``text`` under the figure (wrapped to its width), replacing the caption an earlier call wrote (a figure
    saved again); :func:`save_figure`'s tight bounding box keeps it."""
    import textwrap

    for t in [t for t in fig.texts if t.get_gid() == _CAPTION_GID]:
        t.remove()
    width = max(40, int(fig.get_figwidth() * 130 / fontsize))
    fig.text(0.5, 0.0, "\n".join(textwrap.wrap(text, width)), ha="center", va="top", fontsize=fontsize,
             gid=_CAPTION_GID)


def save_figure(fig, fig_dir: str | os.PathLike | None, name: str, dpi: int = 130, caption: str | None = None) -> Path:
    """Save a matplotlib figure as ``<fig_dir>/<name>.png`` atomically; return its path
    (``fig_dir`` None: the project's ``results/interactive/figures``).  ``caption`` (e.g. :func:`caption`)
    is written under the figure first (:func:`add_caption`)."""
    import io

    if caption:
        add_caption(fig, caption)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    p = output_dir(fig_dir, figures=True) / f"{name}.png"
    checkpoint.atomic_write_bytes(p, buf.getvalue())
    return p


def write(out_dir: str | os.PathLike | None, name: str, *, params: dict, metrics: dict, tables: dict | None = None,
          figures: list | None = None, inputs: list | None = None, data: dict | None = None) -> Path:
    """Write the results JSON of notebook ``name`` atomically and return its path.

    ``metrics`` are scalars shown in the summary, ``tables`` map titles to :func:`table` results (kept
    in order), ``data`` holds
    raw numbers (curves, grids) kept for later use.  Non-finite floats are stored as ``null``.
    ``out_dir`` None: the project's ``results/interactive``."""
    import torch

    out = output_dir(out_dir)
    for t, tab in (tables or {}).items():
        if set(tab) != {"columns", "rows"}:
            raise ValueError(f"tables[{t!r}] must be made by results.table(columns, rows)")
    doc = {
        "name": name,
        "params": params,
        "inputs": [_relative_file(r) for r in inputs or []],
        "metrics": metrics,
        "tables": [{"title": t, **tab} for t, tab in (tables or {}).items()],  # a list keeps the order
        "figures": [os.path.relpath(Path(f).resolve(), out.resolve()) for f in (figures or [])],
        "data": data or {},
        "versions": {"adasmooth": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "attack_cache": attack_cache.report(),
    }
    p = path(out, name)
    checkpoint.atomic_write_json(p, _relative_paths(_finite(doc)))
    log.info("wrote %s", p)
    return p


def _relative_paths(obj):
    """Every string of ``obj`` that is an absolute path inside the project folder, made relative to it (no
    machine's paths in committed results)."""
    root = str(project_root().resolve()) + os.sep
    if isinstance(obj, dict):
        return {k: _relative_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative_paths(v) for v in obj]
    if isinstance(obj, str) and obj.startswith(root):
        return obj[len(root):]
    return obj


def _relative_file(record):
    """An input record with its ``file`` relative to the project folder when it lies inside it (no machine's
    paths in committed results)."""
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        return record
    f = Path(record["file"])
    try:
        return {**record, "file": f.resolve().relative_to(project_root().resolve()).as_posix()}
    except ValueError:
        return record


def read(p: str | os.PathLike) -> dict:
    """Read a results JSON; raise ``FileNotFoundError`` / ``ValueError`` when absent or unreadable."""
    p = Path(p)
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"results file {p} is not valid JSON: {e}") from e


def figure_paths(doc: dict, p: str | os.PathLike) -> list[Path]:
    """Absolute paths of the figures listed in the results JSON ``doc`` read from ``p``."""
    return [(Path(p).parent / f).resolve() for f in doc.get("figures", [])]


def _finite(o):
    """Replace NaN/inf by None and tensors/numpy scalars by Python numbers, recursively."""
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if hasattr(o, "tolist") and not isinstance(o, (str, bytes)):
        return _finite(o.tolist())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


def format_zoo_table(rows: list[dict]) -> str:
    """A markdown table of :func:`adasmooth.zoo.table` rows (``zoo list``): accuracies in percent."""
    cols = ["name", "cached", "clean", "robust", "noisy", "train_seconds", "floors_met"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{100 * v:.2f} %" if c in ("clean", "robust", "noisy") and v != "" else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
