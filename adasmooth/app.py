"""The α explorer as a read-only web app: notebook 06 served by Voilà (no code shown).

``python -m adasmooth app`` writes notebook 06 with a profile's parameters into a scratch folder and
serves it with Voilà on 127.0.0.1.  The app starts on the shipped models (it never trains:
``train_missing = False``) and shows the attacked-accuracy grid the profile's run recorded
(``results/<profile>/06_alpha_explorer.json``, checked against the parameters and the models'
sha256) instead of recomputing the attacks; h^α's clean accuracy is recomputed live as the slider
moves.  Its own results JSON and figure go to the scratch folder: the project is not written.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

NOTEBOOK = "06"


def prepare(folder, *, profile: str = "default", grid_from=None) -> Path:
    """Notebook 06 with ``profile``'s parameters, ``grid_from`` (default: the profile's recorded
    results) and ``train_missing = False`` injected (papermill, not executed), written into ``folder``."""
    import papermill

    from . import pipeline

    folder = Path(folder)
    p = pipeline.plan(profile, only=NOTEBOOK, out_root=folder / "results", fig_dir=folder / "figures")
    src, params = p.notebooks[0]
    grid = Path(grid_from) if grid_from else pipeline.PROJECT / "results" / p.profile.name / "06_alpha_explorer.json"
    if not grid.is_file():
        raise FileNotFoundError(f"grid_from: {grid} does not exist; record the grid first with "
                                f"python -m adasmooth reproduce --profile {p.profile.name} --only 06")
    params = dict(params, grid_from=str(grid.resolve()), train_missing=False, progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / src.name
    papermill.execute_notebook(str(src), str(out), parameters=params, prepare_only=True, kernel_name="python3",
                               progress_bar=False, cwd=str(folder))
    return out


def command(notebook, *, ip: str = "127.0.0.1", port: int = 8866) -> list[str]:
    """The Voilà command line that serves ``notebook`` (code cells stripped, no browser opened)."""
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in 1..65535, got {port!r}")
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}", f"--Voila.ip={ip}",
            "--strip_sources=True", "--theme=light"]


def serve(*, profile: str = "default", ip: str = "127.0.0.1", port: int = 8866, folder=None, grid_from=None) -> int:
    """Prepare notebook 06 (:func:`prepare`) and serve it until interrupted; returns Voilà's exit code."""
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="adasmooth-app-"))
    nb = prepare(folder, profile=profile, grid_from=grid_from)
    cmd = command(nb, ip=ip, port=port)
    print(f"the α explorer: http://{ip}:{port}/  (Voilà; Ctrl-C stops it; scratch folder {folder})", flush=True)
    try:
        return subprocess.call(cmd, cwd=str(folder))
    except KeyboardInterrupt:
        return 0
