"""Progress a person can read while ``reproduce`` runs: a line when each notebook starts and ends, and every
``EVERY`` seconds one line per running notebook (its current attack-cache question, entries read / computed /
recomputed to verify, elapsed time and an estimate of the time left from its last run).

Each kernel reports through :mod:`adasmooth.attack_cache` into ``$ADASMOOTH_PROGRESS_FILE``; :func:`started`
points that variable at ``<folder>/<notebook>.json`` for the kernel about to start, and :class:`Heartbeat`
reads the folder.  Plain lines: they read the same on a terminal, in CI and in a log."""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

from ..attack_cache import PROGRESS_ENV

DIR_ENV = "ADASMOOTH_PROGRESS_DIR"
EVERY = 30.0


def started(stem: str, estimate: float | None = None) -> None:
    """Announce notebook ``stem`` and point its kernel's progress file into ``$ADASMOOTH_PROGRESS_DIR``."""
    folder = os.environ.get(DIR_ENV)
    if folder:
        path = Path(folder) / f"{stem}.json"
        path.write_text(json.dumps({"notebook": stem, "start": time.time(), "estimate": estimate}))
        os.environ[PROGRESS_ENV] = str(Path(folder) / f"{stem}.kernel.json")
    est = f" (last run {estimate:.0f} s)" if estimate else ""
    print(f"[{time.strftime('%H:%M:%S')}] {stem}: started{est}", flush=True)


def finished(stem: str, status: str, seconds: float) -> None:
    folder = os.environ.get(DIR_ENV)
    if folder:
        for suffix in (".json", ".kernel.json"):
            (Path(folder) / f"{stem}{suffix}").unlink(missing_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {stem}: {status} after {seconds:.0f} s", flush=True)


def line(folder: Path, stem: str, now: float | None = None) -> str | None:
    """The progress line of the running notebook ``stem`` (None when it is not running)."""
    now = now or time.time()
    try:
        start = json.loads((folder / f"{stem}.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        k = json.loads((folder / f"{stem}.kernel.json").read_text())
    except (OSError, ValueError):
        k = {}
    elapsed = now - start["start"]
    left = ""
    if start.get("estimate"):
        rest = start["estimate"] - elapsed
        left = f", about {rest:.0f} s left" if rest > 0 else ", past its last run's time"
    work = "; no attack-cache question yet"
    if k:
        work = (f"; cache: {k.get('read', 0)} read, {k.get('computed', 0)} computed, {k.get('verified', 0)} "
                f"recomputed to verify; now: {k.get('what') or k.get('entry', '')}")
    return f"[{time.strftime('%H:%M:%S')}] {stem}: running {elapsed:.0f} s{left}{work}"


class Heartbeat:
    """A thread that prints :func:`line` for every running notebook each ``every`` seconds (context manager:
    sets ``$ADASMOOTH_PROGRESS_DIR`` to a fresh folder, restores the environment and removes it after)."""

    def __init__(self, every: float = EVERY):
        self.every = every
        self._stop = threading.Event()

    def __enter__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="adasmooth-progress-")
        self._old = os.environ.get(DIR_ENV)
        os.environ[DIR_ENV] = self._dir.name
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        folder = Path(self._dir.name)
        while not self._stop.wait(self.every):
            for f in sorted(folder.glob("*.json")):
                if not f.name.endswith(".kernel.json"):
                    text = line(folder, f.stem)
                    if text:
                        print(text, flush=True)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self._old is None:
            os.environ.pop(DIR_ENV, None)
        else:
            os.environ[DIR_ENV] = self._old
        self._dir.cleanup()
