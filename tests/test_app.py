"""The α explorer as a web app: the prepared notebook, the recorded grid it shows, the server command
(the real-browser check of the served app is in test_browser.py)."""
import json

import pytest

from adasmooth import app, explorer, pipeline

GRID = pipeline.PROJECT / "results" / "default" / "07_alpha_explorer.json"


def test_prepare_injects_the_recorded_grid_and_never_trains(tmp_path):
    nb = app.prepare(tmp_path)
    cells = json.loads(nb.read_text())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    src = "".join(injected["source"])
    assert f'grid_from = "{GRID.resolve()}"' in src and "train_missing = False" in src
    assert str(tmp_path / "results") in src  # its own outputs go to the scratch folder
    with pytest.raises(FileNotFoundError, match="grid_from: .*reproduce --profile default --only 07"):
        app.prepare(tmp_path / "other", grid_from=tmp_path / "missing.json")


def test_recorded_grid_is_checked_against_parameters_and_weights(tmp_path):
    doc = json.loads(GRID.read_text())
    rows = explorer.recorded_grid(GRID, inputs=doc["inputs"], **doc["params"])
    assert rows == doc["data"]["curve"] and {r["option"] for r in rows} == set(doc["params"]["options"])
    n = doc["params"]["n_eval"]
    with pytest.raises(ValueError, match=f"n_eval = {n} there, {n + 10} here"):
        explorer.recorded_grid(GRID, n_eval=n + 10)
    other = [dict(i, sha256="0" * 64) for i in doc["inputs"]]
    with pytest.raises(ValueError, match="model weights"):
        explorer.recorded_grid(GRID, inputs=other)
    with pytest.raises(FileNotFoundError, match="grid_from"):
        explorer.recorded_grid(tmp_path / "nope.json")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"params": {}, "data": {}}))
    with pytest.raises(ValueError, match="no recorded grid"):
        explorer.recorded_grid(empty)


def test_command_binds_this_machine_by_default_and_checks_the_port():
    cmd = app.command("x.ipynb", port=9000)
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=9000" in cmd and "--no-browser" in cmd
    assert "--strip_sources=True" in cmd
    with pytest.raises(ValueError, match="port must be an int in 1..65535"):
        app.command("x.ipynb", port=0)
