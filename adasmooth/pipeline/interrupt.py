"""Stopping a run: SIGTERM is handled like Ctrl-C (SIGINT).

:func:`sigterm_raises` turns SIGTERM into :class:`Terminated`, a ``KeyboardInterrupt``, so that the cleanup
Ctrl-C gets (papermill stops the kernel, :func:`~adasmooth.pipeline.execute.run_notebook` keeps the last good
result and removes its staging folders) runs for both.  In the side-by-side pool each worker gets the same
handler (:func:`in_worker`) and the main process forwards SIGTERM to its workers (:func:`stop_workers`)."""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading

log = logging.getLogger(__name__)

EXIT_STATUS = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as a shell reports it
_state = {"busy": False, "stopping": False}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt`` so that the same cleanup runs."""


def signal_name(e: BaseException) -> str:
    """``"SIGTERM"`` for :class:`Terminated`, else ``"SIGINT"`` (a plain ``KeyboardInterrupt``)."""
    return "SIGTERM" if isinstance(e, Terminated) else "SIGINT"


def _raise_once(signum, frame):
    """Raise :class:`Terminated` at the first SIGTERM; ignore the next ones while the run unwinds."""
    if _state["stopping"]:
        return
    _state["stopping"] = True
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
    """For the duration, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_once)
    _state["stopping"] = False
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def in_worker() -> None:
    """A pool worker's initializer: SIGTERM and SIGINT stop its task as in the main process (once); an idle
    worker exits quietly."""
    signal.signal(signal.SIGTERM, _worker_signal)
    signal.signal(signal.SIGINT, _worker_signal)


def _worker_signal(signum, frame):
    if _state["stopping"]:
        return
    _state["stopping"] = True
    if not _state["busy"]:
        raise SystemExit(128 + signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def task(fn, *args):
    """Run a pool task, marked busy (a signal then stops the task rather than the idle worker)."""
    _state["busy"] = True
    try:
        return fn(*args)
    finally:
        _state["busy"] = False


def stop_workers(e: BaseException, pool) -> None:
    """After SIGTERM in the main process: cancel the pool's queued tasks and send SIGTERM to its workers (a
    Ctrl-C on a terminal already reached them), which stop their notebooks and clean up as the main process
    does."""
    pool.shutdown(wait=False, cancel_futures=True)
    if not isinstance(e, Terminated):
        return
    for p in multiprocessing.active_children():
        log.info("stopping worker %s", p.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
