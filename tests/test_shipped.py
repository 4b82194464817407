"""Shipped checkpoints: every committed model loads, matches its hash and its recorded clean accuracy;
a missing or modified shipped file is reported and stops the main job with how to restore it."""
import shutil

import pytest

from adasmooth import checkpoint, pipeline, shipped, zoo

from conftest import TINY

pytestmark = pytest.mark.usefixtures("one_thread")

PROJECT_ZOO = pipeline.PROJECT / "data" / "zoo"


def _entries():
    ship = shipped.manifest(PROJECT_ZOO)
    return sorted((f, e) for f, e in ship.items() if "clean_first_1000" in e)


def test_the_default_zoo_and_its_mixing_networks_are_shipped():
    ship = shipped.manifest(PROJECT_ZOO)
    names = {e.get("name") for e in ship.values()}
    assert set(zoo.DEFAULT_ZOO) <= names, f"not shipped: {set(zoo.DEFAULT_ZOO) - names}"
    kinds = [e["kind"] for e in ship.values()]
    assert kinds.count("mixing-network") >= 1 and "fmnist-adaptive.json" in ship


@pytest.mark.parametrize("fname,entry", _entries(), ids=[f for f, _ in _entries()])
def test_shipped_checkpoint_loads_matches_its_hash_and_its_clean_accuracy(fname, entry):
    assert checkpoint.sha256_file(PROJECT_ZOO / fname) == entry["sha256"]
    model, dataset = shipped.load_for_check(entry, PROJECT_ZOO)
    acc = shipped.clean_accuracy(model, dataset)
    assert abs(acc - entry["clean_first_1000"]) <= 0.001 + 1e-12


def test_every_shipped_file_verifies():
    bad = [r for r in shipped.verify(PROJECT_ZOO) if r["shipped"] and r["status"] != "ok"]
    assert not bad


@pytest.fixture
def shipped_copy(tiny_zoo, zoo_cache, tmp_path):
    tiny_zoo("fmnist-standard")
    root = tmp_path / "zoo"
    root.mkdir()
    for f in zoo_cache.glob("fmnist-standard-*"):
        if ".train-state" not in f.name:
            shutil.copy(f, root / f.name)
    shipped.ship(root)
    return root


def test_a_modified_or_missing_shipped_file_is_reported_with_how_to_restore_it(shipped_copy):
    assert all(r["status"] == "ok" for r in shipped.verify(shipped_copy))
    pt = next(shipped_copy.glob("fmnist-standard-*.pt"))
    data = bytearray(pt.read_bytes())
    data[100] ^= 0xFF
    pt.write_bytes(bytes(data))
    rows = {r["file"]: r for r in shipped.verify(shipped_copy)}
    assert rows[pt.name]["status"] == "corrupt" and rows[pt.name]["shipped"]
    with pytest.raises(RuntimeError, match=f"{pt.name} is corrupt.*git checkout --"):
        shipped.check(shipped_copy)
    pt.unlink()
    with pytest.raises(RuntimeError, match=f"{pt.name} is missing"):
        shipped.check(shipped_copy)


def test_the_pipeline_refuses_to_run_on_a_modified_shipped_file(shipped_copy, tmp_path):
    pt = next(shipped_copy.glob("fmnist-standard-*.pt"))
    pt.write_bytes(pt.read_bytes()[:-1])
    with pytest.raises(RuntimeError, match="corrupt"):
        pipeline.run("smoke", only="01", zoo_root=shipped_copy, out_root=tmp_path / "out")
    assert not (tmp_path / "out" / "summary.md").exists()


def test_zoo_verify_command_exit_status(shipped_copy, capsys):
    from adasmooth.__main__ import main

    assert main(["zoo", "verify", "--cache", str(shipped_copy)]) == 0
    pt = next(shipped_copy.glob("fmnist-standard-*.pt"))
    pt.write_bytes(pt.read_bytes()[:-1])
    assert main(["zoo", "verify", "--cache", str(shipped_copy)]) == 1
    out = capsys.readouterr()
    assert "corrupt" in out.out and "git checkout" in out.err


def test_retrain_comparison_table(shipped_copy, tmp_path):
    new = tmp_path / "retrained"
    shutil.copytree(shipped_copy, new)
    path = shipped.write_comparison(tmp_path / "cmp.md", retrained_root=new, shipped_root=shipped_copy)
    text = path.read_text()
    assert "zoo fmnist-standard" in text and "| yes |" in text
    assert zoo.recipe("fmnist-standard").config(TINY)["train"]["split"] == "fit"


def test_base_models_are_the_shipped_default_zoo_which_retraining_trains_whole():
    assert sorted(shipped.base_models(PROJECT_ZOO)) == sorted(zoo.DEFAULT_ZOO)
    assert shipped.base_models(PROJECT_ZOO.parent / "no-such-zoo") == []


def test_the_retrain_note_says_the_command_the_wall_time_and_where_it_went(tmp_path):
    from adasmooth.pipeline.execute import Outcome
    from adasmooth.pipeline.reproduce import _retrain_note

    every = pipeline.plan("smoke", out_root=tmp_path, fig_dir=tmp_path, zoo_root=tmp_path)
    rows = [{"model": "fmnist-standard", "status": "trained in this run", "seconds": 100.0},
            {"model": "fmnist-linf-at", "status": "trained in this run", "seconds": 200.4},
            {"model": "(all, side by side)", "status": "wall time", "seconds": 250.0}]
    outs = [Outcome("04_adaptive_vs_constant", "ran", 1234.5, tmp_path, tmp_path)]
    note = _retrain_note(every, 4000.2, 2, outs, rows)
    assert "reproduce --profile smoke --retrain" in note and "Wall time 4000 s" in note
    assert "2 base models trained (300 s" in note and "04_adaptive_vs_constant 1234 s" in note
