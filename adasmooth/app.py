"""The α explorer as a read-only web app: notebook 07 served by Voilà (no code shown).

``python -m adasmooth app`` writes notebook 07 with a profile's parameters into a scratch folder and
serves it with Voilà on 127.0.0.1.  The app starts on the shipped models (it never trains:
``train_missing = False``) and shows the attacked-accuracy grid the profile's run recorded
(``results/<profile>/07_alpha_explorer.json``, checked against the parameters and the models'
sha256) instead of recomputing the attacks; h^α's clean accuracy is recomputed live as the slider
moves.  Its own results JSON and figure go to the scratch folder: the project is not written.

The grid file is checked before anything is served (:func:`check_grid`).  A non-loopback ``ip`` (one other
machines can reach) is refused unless ``allow_remote`` (``--allow-remote``); the app is then served with a
Voilà token (``$JUPYTER_TOKEN``, else a random one) printed in its URL (:func:`check_address`).
"""
from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from . import explorer, parameters, pipeline
from .experiments.alpha_explorer import grid_params

log = logging.getLogger(__name__)

NOTEBOOK = "07"


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` (an address or ``localhost``) only listens on this machine; any other host name: False."""
    if ip == "localhost":
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def check_address(ip: str, allow_remote: bool = False) -> bool:
    """Whether serving on ``ip`` needs a token (True for a non-loopback address); ``ValueError`` when it is
    non-loopback and not ``allow_remote``."""
    if is_loopback(ip):
        return False
    if not allow_remote:
        raise ValueError(f"--ip {ip!r} is not a loopback address, so other machines could reach the app: pass "
                         f"--allow-remote to serve it there behind a Voilà token (printed in the URL; "
                         f"$JUPYTER_TOKEN sets it), or use --ip 127.0.0.1")
    return True


def check_grid(path, expected: dict | None = None) -> list[dict]:
    """The recorded grid in ``path`` (:func:`adasmooth.explorer.recorded_grid`: a notebook-07 results JSON,
    checked against the ``expected`` parameters); one-line ``FileNotFoundError`` / ``ValueError`` otherwise."""
    return explorer.recorded_grid(path, **(expected or {}))


def _expected_params(src, params: dict) -> dict:
    """The parameters notebook 07 checks a recorded grid against, for its declared defaults and ``params``."""
    return grid_params(parameters.bind(src.stem, dict(parameters.defaults(src.stem), **params)))


def prepare(folder, *, profile: str = "default", grid_from=None) -> Path:
    """Notebook 07 with ``profile``'s parameters, ``grid_from`` (default: the profile's recorded
    results; checked by :func:`check_grid`) and ``train_missing = False`` injected (papermill, not executed),
    written into ``folder``."""
    import papermill

    folder = Path(folder)
    p = pipeline.plan(profile, only=NOTEBOOK, out_root=folder / "results", fig_dir=folder / "figures")
    src, params = p.notebooks[0]
    grid = Path(grid_from) if grid_from else pipeline.PROJECT / "results" / p.profile.name / "07_alpha_explorer.json"
    if not grid.exists():
        raise FileNotFoundError(f"grid_from: {grid} does not exist; record the grid first with "
                                f"python -m adasmooth reproduce --profile {p.profile.name} --only 07")
    check_grid(grid, _expected_params(src, params))  # before serving: the page would show a traceback
    params = dict(params, grid_from=str(grid.resolve()), train_missing=False, progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / src.name
    papermill.execute_notebook(str(src), str(out), parameters=params, prepare_only=True, kernel_name="python3",
                               progress_bar=False, cwd=str(folder))
    return out


def command(notebook, *, ip: str = "127.0.0.1", port: int = 8866, token: bool = False) -> list[str]:
    """The Voilà command line that serves ``notebook`` (code cells stripped, no browser opened); ``token``:
    Voilà asks for the token in ``$JUPYTER_TOKEN`` (else it makes one)."""
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in 1..65535, got {port!r}")
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}", f"--Voila.ip={ip}",
            "--strip_sources=True", "--theme=light"] + (["--Voila.auto_token=True"] if token else [])


def serve(*, profile: str = "default", ip: str = "127.0.0.1", port: int = 8866, folder=None, grid_from=None,
          allow_remote: bool = False) -> int:
    """Check the address (:func:`check_address`), prepare notebook 07 (:func:`prepare`) and serve it until
    interrupted; returns Voilà's exit code."""
    remote = check_address(ip, allow_remote)
    command("x.ipynb", ip=ip, port=port)  # the port checked before the scratch folder is made
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="adasmooth-app-"))
    nb = prepare(folder, profile=profile, grid_from=grid_from)
    cmd = command(nb, ip=ip, port=port, token=remote)
    env = dict(os.environ)
    query = ""
    if remote:
        env["JUPYTER_TOKEN"] = env.get("JUPYTER_TOKEN") or secrets.token_urlsafe(24)
        query = f"?token={env['JUPYTER_TOKEN']}"
        log.warning("serving on %s, reachable from other machines: only with the token in the URL", ip)
    host = socket.gethostname() if ip in ("", "0.0.0.0", "::") else f"[{ip}]" if ":" in ip else ip
    print(f"the α explorer: http://{host}:{port}/{query}  (Voilà; Ctrl-C stops it; scratch folder {folder})",
          flush=True)
    try:
        return subprocess.call(cmd, cwd=str(folder), env=env)
    except KeyboardInterrupt:
        return 0
