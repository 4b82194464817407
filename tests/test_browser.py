"""One real-browser test: JupyterLab on 127.0.0.1, driven by Playwright with Debian's Chromium, opens
07_alpha_explorer (a copy with smoke parameters), runs it, moves the α slider and sees the readout change.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and the Python ``playwright`` package; the
browser is never downloaded (no ``playwright install``)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from adasmooth import pipeline

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path, g_model, h_model, zoo_cache):
    """A JupyterLab server over a folder holding 07_alpha_explorer with smoke parameters (tiny models)."""
    import papermill

    root = tmp_path / "lab"
    root.mkdir()
    p = pipeline.plan("smoke", only="07", out_root=tmp_path / "out", zoo_root=zoo_cache)
    src, params = p.notebooks[0]
    params = dict(params, n_eval=50, steps=1, alphas=[0.0, 0.5, 1.0], alpha=0.5, train_missing=False)
    papermill.execute_notebook(str(src), str(root / src.name), parameters=params, prepare_only=True,
                               kernel_name="python3", progress_bar=False)
    port = _free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--allow-root", "--IdentityProvider.token=",
                             "--ServerApp.ip=127.0.0.1", "--no-browser", f"--port={port}",
                             f"--ServerApp.root_dir={root}"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url, src.name, tmp_path / "lab.log"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started (its own session)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_explorer_slider_moves_the_readout_in_jupyterlab(lab):
    playwright = pytest.importorskip("playwright.sync_api")
    url, name, log = lab
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/{name}")
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            select = page.locator(".jp-Dialog button", has_text="Select")  # "Select Kernel" dialog, if any
            try:
                select.first.click(timeout=5_000)
            except Exception:
                pass
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            readout = page.locator(".widget-html", has_text="clean accuracy").first
            readout.wait_for(timeout=240_000)
            before = readout.inner_text()
            assert "α = 0.50" in before
            handle = page.locator(".widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(20):
                handle.press("ArrowRight")
            page.wait_for_function(
                "before => [...document.querySelectorAll('.widget-html')].some("
                "e => e.innerText.includes('clean accuracy') && e.innerText !== before)", arg=before,
                timeout=60_000)
            after = readout.inner_text()
            assert after != before and "α = 0.50" not in after and "α = 0." in after
            assert "attacked accuracy" in after
            assert page.locator("img.widget-image").count() >= 1  # the curve + confusion figure
        except Exception:
            shutil.copy(log, Path(log).with_suffix(".kept.log"))
            raise
        finally:
            browser.close()


@pytest.fixture
def voila_app(tmp_path):
    """``python -m adasmooth app`` (Voilà, notebook 07 on the shipped models and the recorded default grid)."""
    port = _free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    log_path = tmp_path / "app.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "adasmooth", "app", f"--port={port}"], stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the app did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/", log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_app_serves_the_explorer_without_code_and_the_slider_works(voila_app):
    playwright = pytest.importorskip("playwright.sync_api")
    url, log = voila_app
    assert "http://127.0.0.1:" in Path(log).read_text()  # it prints its URL, bound to this machine
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=240_000)
            readout = page.locator(".widget-html", has_text="clean accuracy").first
            readout.wait_for(timeout=240_000)
            before = readout.inner_text()
            assert "α = 0.50" in before
            assert "check_notebook" not in page.content()  # no code cells shown
            handle = page.locator(".widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(20):
                handle.press("ArrowRight")
            page.wait_for_function(
                "before => [...document.querySelectorAll('.widget-html')].some("
                "e => e.innerText.includes('clean accuracy') && e.innerText !== before)", arg=before,
                timeout=60_000)
            after = readout.inner_text()
            assert after != before and "α = 0.50" not in after and "attacked accuracy" in after
            page.locator(".widget-toggle-button", has_text="no SoftMax").first.click()  # the mixing-option choice
            page.wait_for_function(
                "after => [...document.querySelectorAll('.widget-html')].some("
                "e => e.innerText.includes('clean accuracy') && e.innerText !== after)", arg=after,
                timeout=60_000)
        except Exception:
            shutil.copy(log, Path(log).with_suffix(".kept.log"))
            raise
        finally:
            browser.close()
