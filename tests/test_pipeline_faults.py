"""``reproduce`` under faults: two runs into one results folder (a lock: the second stops naming the first's pid),
partial and failed runs (summary.md keeps the other notebooks' sections and the verdict table, and the main
job's wall time comes only from a whole run), SIGTERM (handled like Ctrl-C: a message, exit 143, the kernel
stopped, no staging left) and a read-only results folder (one line naming it).

The command line runs in real subprocesses (:data:`DRIVER`: ``python -m adasmooth reproduce``'s ``main`` with
its ``run`` pointed at a test profile, tiny notebooks and a results folder in tmp); papermill is replaced by a
stub (:func:`_stub`) except in the SIGTERM test, which stops a real kernel."""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from adasmooth import pipeline, profiles, readme, results

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import _notebook  # noqa: E402  (the tiny-notebook builder)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = 'out_dir = "."  # type: str\nfig_dir = "."  # type: str\n'
PROFILE = profiles.Profile("test", "faults", common={}, notebooks={})

DRIVER = '''
import json, shutil, sys, time
from pathlib import Path
cfg = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
from adasmooth import profiles, results
from adasmooth.pipeline import cli, reproduce
if cfg.get("stub"):  # papermill replaced: write a result, after the "go" file appears when asked to wait
    import papermill
    def stub(src, dst, parameters, **kw):
        if cfg.get("started"):
            Path(cfg["started"]).write_text("x")
        while cfg.get("go") and not Path(cfg["go"]).exists():
            time.sleep(0.05)
        results.write(parameters["out_dir"], Path(src).stem, params={}, metrics={"by": cfg["by"]})
        shutil.copy(src, dst)
    papermill.execute_notebook = stub
profile = profiles.Profile("test", "faults", common={}, notebooks={})
cli.run = lambda _, **kw: reproduce.run(profile, out_root=cfg["out"], nb_dir=cfg["nb"], **kw)
if __name__ == "__main__":  # not in the side-by-side pool's workers, which import this file
    from adasmooth.__main__ import main
    sys.exit(main(["reproduce", "--force", "--jobs", str(cfg.get("jobs", 1)), "--no-progress"]))
'''


def _driver(tmp_path, env=None, preexec_fn=None, **cfg) -> subprocess.Popen:
    """``reproduce`` in a subprocess (see :data:`DRIVER`); ``cfg``: out, nb, and stub/started/go/by."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    cfg = {k: str(v) if isinstance(v, Path) else v for k, v in cfg.items()}
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {path.name}: {proc.communicate()}")
        assert time.monotonic() - t0 < seconds, f"{path.name} not written in {seconds} s"
        time.sleep(0.1)


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith(".staging-") or p.name.endswith(".new.ipynb") or p.name == ".reproduce.lock")


def _stub(runs: dict, fail=()):
    """A papermill stand-in: writes ``<stem>.json`` (its table says which run of the notebook this is)."""
    def execute_notebook(src, dst, parameters, **kw):
        stem = Path(src).stem
        if stem in fail:
            raise RuntimeError("asked to fail")
        runs[stem] = runs.get(stem, 0) + 1
        results.write(parameters["out_dir"], stem, params={}, metrics={"run": runs[stem]},
                      tables={"T": results.table(["notebook", "run"], [[stem, f"run {runs[stem]}"]])})
        shutil.copy(src, dst)
    return execute_notebook


# ---------------------------------------------------------------- 2. two runs at once

def test_a_second_run_into_the_same_results_folder_stops_naming_the_first(tmp_path, monkeypatch):
    nb, out = tmp_path / "notebooks", tmp_path / "out"
    nb.mkdir()
    _notebook(nb / "06_explorer.ipynb", params=PARAMS, body="pass\n")
    started, go = tmp_path / "started", tmp_path / "go"
    first = _driver(tmp_path, out=out, nb=nb, stub=True, started=started, go=go, by="first")
    try:
        _wait_for(started, first)
        second = _driver(tmp_path, out=out, nb=nb, stub=True, by="second")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert f"another run of `reproduce --profile test` (pid {first.pid}, started " in err
        assert f"is in progress in {out};" in err and "not waiting for it" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert (out / ".staging-06_explorer").is_dir()  # the first run's staging: untouched
        go.write_text("go")
        _, err = first.communicate(timeout=120)
    finally:
        go.write_text("go")
        first.kill() if first.poll() is None else None
    assert first.returncode == 0, err
    assert results.read(out / "06_explorer.json")["metrics"] == {"by": "first"}
    assert _leftovers(out) == []  # the lock file is gone with the run
    runs = {}  # and the folder is free again
    monkeypatch.setattr("papermill.execute_notebook", _stub(runs))
    assert [o.status for o in pipeline.run(PROFILE, out_root=out, nb_dir=nb, force=True, jobs=1)] == ["ran"]


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    from adasmooth.pipeline import runlock

    with pytest.raises(ValueError, match="inside"):
        with runlock.hold(tmp_path, "reproduce --profile test"):
            assert json.loads((tmp_path / runlock.NAME).read_text())["pid"] == os.getpid()
            raise ValueError("inside")
    assert not (tmp_path / runlock.NAME).exists()
    with runlock.hold(tmp_path, "again"):
        pass


# ---------------------------------------------------------------- 3. partial and failed runs

def _wall_line(summary: Path) -> str:
    return next(ln for ln in summary.read_text().splitlines() if ln.startswith("torch "))


def test_a_partial_or_failed_run_keeps_the_other_sections_and_the_whole_runs_wall_time(tmp_path, monkeypatch):
    nb, out = tmp_path / "notebooks", tmp_path / "out"
    nb.mkdir()
    for stem in ("00_first", "06_sigmoid_scale"):  # 05 carries a claim: the verdict table opens the summary
        _notebook(nb / f"{stem}.ipynb", params=PARAMS, body="pass\n")
    runs = {}
    monkeypatch.setattr("papermill.execute_notebook", _stub(runs))
    assert [o.status for o in pipeline.run(PROFILE, out_root=out, nb_dir=nb, jobs=1)] == ["ran", "ran"]
    summary = out / "summary.md"
    assert "Wall time of this run: " in _wall_line(summary)
    text = summary.read_text()  # as if the whole run had taken 1234 s
    summary.write_text(text.replace(_wall_line(summary), _wall_line(summary).split(" Wall time")[0]
                                    + " Wall time of this run: 1234 s; the notebooks' x."))
    _notebook(nb / "06_sigmoid_scale.ipynb", params=PARAMS, body="pass  # changed: no longer current\n")

    assert [o.status for o in pipeline.run(PROFILE, out_root=out, nb_dir=nb, only="00", force=True, jobs=1)] == ["ran"]
    text = summary.read_text()
    assert "## Verdicts" in text and "| 06_sigmoid_scale | recorded |" in text
    assert "| 00_first | run 2 |" in text and "| 06_sigmoid_scale | run 1 |" in text  # its section: kept
    assert "Wall time of the last whole run: 1234 s (this run, only 00_first: " in _wall_line(summary)
    assert pipeline._last_run(text)["wall"] == 1234
    assert "**1234 s of wall time" in readme.render(out, profile="default")["run"]  # the README's Last run

    monkeypatch.setattr("papermill.execute_notebook", _stub(runs, fail={"00_first"}))  # a failed whole run
    assert [o.status for o in pipeline.run(PROFILE, out_root=out, nb_dir=nb, force=True, jobs=1)] == ["failed", "ran"]
    text = summary.read_text()
    assert "Wall time of the last whole run: 1234 s (this run, 00_first failed: " in _wall_line(summary)
    assert "## Verdicts" in text and "| 00_first | run 2 |" in text and "| 06_sigmoid_scale | run 2 |" in text
    assert "**1234 s of wall time" in readme.render(out, profile="default")["run"]

    monkeypatch.setattr("papermill.execute_notebook", _stub(runs))  # a whole run: its own wall time
    assert [o.status for o in pipeline.run(PROFILE, out_root=out, nb_dir=nb, force=True, jobs=1)] == ["ran", "ran"]
    assert "Wall time of this run: " in _wall_line(summary) and pipeline._last_run(summary.read_text())["wall"] < 1234


# ---------------------------------------------------------------- 4. SIGTERM

def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is ``folder`` (a kernel runs in its notebook's folder)."""
    out = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(p / "cwd")) == folder:
                out.append(int(p.name))
        except OSError:
            continue
    return out


def _connection_files(pids: list[int]) -> list[Path]:
    """The kernel connection files (``-f FILE``) on the command lines of ``pids``."""
    files = []
    for pid in pids:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        files += [Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "-f"]
    return files


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
@pytest.mark.parametrize("jobs", [1, 2], ids=["one-after-the-other", "side-by-side"])
def test_sigterm_stops_the_run_like_ctrl_c(tmp_path, monkeypatch, jobs):
    nb, out = tmp_path / "notebooks", tmp_path / "out"
    nb.mkdir()
    stems = ["00_slow", "01_slow"]
    srcs = [_notebook(nb / f"{s}.ipynb", params=PARAMS, body="pass\n") for s in stems]
    monkeypatch.setattr("papermill.execute_notebook", _stub({}))  # a last good result to keep
    assert [o.status for o in pipeline.run(PROFILE, out_root=out, nb_dir=nb, jobs=1)] == ["ran", "ran"]
    good = {p: p.read_bytes() for s in stems for p in (out / f"{s}.json", out / f"{s}.ipynb")}
    for src in srcs:
        _notebook(src, params=PARAMS, body=f"import pathlib, time\n"
                                           f"pathlib.Path({str(tmp_path / src.stem)!r}).write_text('x')\n"
                                           "time.sleep(120)\n")
    proc = _driver(tmp_path, out=out, nb=nb, jobs=jobs)  # real kernels
    try:
        for s in stems[:jobs]:
            _wait_for(tmp_path / s, proc, seconds=180)
        connections = _connection_files(_processes_in(nb))
        assert len(connections) == jobs and all(c.exists() for c in connections), connections
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:  # whatever happened: nothing of this test left running
        proc.kill() if proc.poll() is None else None
        t0 = time.monotonic()
        while _processes_in(nb) and time.monotonic() - t0 < 10:
            time.sleep(0.2)
        stray = _processes_in(nb)
        for pid in stray:
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "reproduce stopped by SIGTERM" in err and "Traceback" not in err, err
    assert _leftovers(out) == []  # staging folders, figures staging, .new.ipynb, lock file
    assert not [c for c in connections if c.exists()]  # the kernels' connection files
    assert {p: p.read_bytes() for p in good} == good  # the last good results
    assert sorted(p.name for p in out.glob("*.failed.ipynb")) == [f"{s}.failed.ipynb" for s in stems[:jobs]]
    assert stray == []  # the workers and kernels stopped


# ---------------------------------------------------------------- 5. a read-only results folder

def _no_permission_override():
    """A ``preexec_fn`` that makes root obey file permissions (drops CAP_DAC_OVERRIDE from the bounding set,
    so the program it runs has none); None for another user."""
    if os.geteuid() != 0:
        return None

    def drop():
        if ctypes.CDLL(None, use_errno=True).prctl(24, 1, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_DAC_OVERRIDE
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    return drop


def test_a_read_only_results_folder_is_one_line_naming_it(tmp_path):
    nb, out = tmp_path / "notebooks", tmp_path / "results" / "smoke"
    nb.mkdir()
    out.mkdir(parents=True)
    _notebook(nb / "00_first.ipynb", params=PARAMS, body="pass\n")
    out.chmod(0o555)
    try:
        preexec = _no_permission_override()
        probe = subprocess.run(["touch", str(out / "probe")], preexec_fn=preexec, capture_output=True)
        if probe.returncode == 0:
            pytest.skip("this process cannot be made to obey file permissions here")
        mpl = Path(tempfile.mkdtemp(dir=tmp_path))
        proc = _driver(tmp_path, env={"MPLCONFIGDIR": str(mpl)}, preexec_fn=preexec, out=out, nb=nb, stub=True,
                       by="ro")
        _, err = proc.communicate(timeout=120)
    finally:
        out.chmod(0o755)
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [f"error: cannot write to the results folder {out} (Permission denied): "
                                        "make it writable or run from a checkout you can write to"], err
    assert sorted(p.name for p in out.iterdir()) == []
