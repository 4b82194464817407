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
