"""One ``reproduce`` at a time per results folder: :func:`hold` takes an exclusive ``flock`` on
``<folder>/.reproduce.lock`` for the whole run; a second run into the same folder does not wait, it stops at
once with :class:`Busy` naming the run in progress and its pid.  The lock file records who holds it (pid,
command, start) and is removed when released."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

NAME = ".reproduce.lock"


class Busy(RuntimeError):
    """Another run holds the results folder's lock."""


def writable(folder: str | os.PathLike, what: str) -> None:
    """Create ``folder`` if missing and check that a file can be written there; else ``RuntimeError``, one
    line naming the folder (``what``: e.g. "results folder")."""
    import tempfile

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise RuntimeError(f"cannot write to the {what} {folder} ({e.strerror or e}): make it writable "
                           "or run from a checkout you can write to") from None


@contextlib.contextmanager
def hold(folder: str | os.PathLike, command: str):
    """Hold ``folder``'s run lock for the duration (``command``: what this run is, for the message another run
    gets); :class:`Busy` at once when another process holds it.  No lock where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path = Path(folder) / NAME
    f = _acquire(path, fcntl)
    try:
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # still ours: removed before the lock is let go
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _acquire(path: Path, fcntl):
    """The open, locked lock file at ``path``; :class:`Busy` when another process holds it."""
    while True:
        f = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(f)
            f.close()
            raise Busy(_busy_message(path.parent, holder)) from None
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                return f
        except FileNotFoundError:
            pass
        f.close()  # the holder removed the file between our open and our lock: take the new one


def _holder(f) -> dict:
    """What the holder recorded in the lock file ({} while it has not yet written it)."""
    f.seek(0)
    try:
        doc = json.loads(f.read() or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _busy_message(folder: Path, holder: dict) -> str:
    what = f"of `{holder['command']}` " if holder.get("command") else ""
    since = f", started {holder['started']}" if holder.get("started") else ""
    return (f"another run {what}(pid {holder.get('pid', 'unknown')}{since}) is in progress in {folder}; "
            "not waiting for it: this run stops without touching that folder; run it again once the other has finished")
