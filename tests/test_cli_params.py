"""Issue 15's remaining edges: corrupt cached checkpoints (zoo list / zoo train / the pipeline), parameter
domains checked before any kernel or training, ``reproduce -p NAME=VALUE``, file-path model specs, the
currency of a bring-your-own model's weights, output folders of notebooks run by hand, quiet logs.

Every model here is a zoo recipe at a few hundred images and one epoch (well under a second to train)."""
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from adasmooth import checkpoint, experiments, notebook, parameters, pipeline, resolve, results, shipped, zoo
from adasmooth.__main__ import main

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import _notebook, _profile  # noqa: E402  (the tiny-notebook builders)

MICRO = {"train_subset": 500, "epochs": 1, "eval_n": 100}
OV = ["--overrides", json.dumps(MICRO)]


@pytest.fixture(scope="module")
def micro_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("micro-zoo")
    zoo.train_model("fmnist-standard", overrides=MICRO, root=root, device="cpu")
    return root


@pytest.fixture
def corrupt_copy(micro_cache, tmp_path):
    """A cache holding a copy of the micro checkpoint whose weights fail their sha256."""
    root = tmp_path / "zoo"
    root.mkdir()
    for f in micro_cache.glob("fmnist-standard-*"):
        (root / f.name).write_bytes(f.read_bytes())
    pt = checkpoint.path_for(zoo.stem("fmnist-standard", MICRO, root), ".pt")
    data = bytearray(pt.read_bytes())
    data[100] ^= 0xFF
    pt.write_bytes(bytes(data))
    return root


# ---------------------------------------------------------------- 1. corrupt checkpoints

def test_zoo_list_shows_corrupt_and_zoo_train_retrains_it(corrupt_copy, capsys):
    assert zoo.status("fmnist-standard", MICRO, corrupt_copy) == "corrupt"
    assert main(["zoo", "list", "--cache", str(corrupt_copy)] + OV) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "fmnist-standard" in line)
    assert "corrupt" in row and "%" not in row  # no metrics shown for a file that fails its hash
    assert main(["zoo", "train", "fmnist-standard", "--cache", str(corrupt_copy), "--no-progress"] + OV) == 0
    out = capsys.readouterr().out
    assert "fmnist-standard: cached checkpoint was corrupt (failed its sha256 check): deleted, retraining it" in out
    assert "fmnist-standard: cached" + "\n" not in out
    assert zoo.status("fmnist-standard", MICRO, corrupt_copy) == "ok"


def test_a_corrupt_shipped_checkpoint_says_how_to_restore_it_or_retrains_with_force(corrupt_copy, capsys):
    pt = checkpoint.path_for(zoo.stem("fmnist-standard", MICRO, corrupt_copy), ".pt")
    checkpoint.atomic_write_json(shipped.manifest_path(corrupt_copy),
                                 {"files": {pt.name: {"kind": "zoo", "sha256": "0" * 64}}})
    before = pt.read_bytes()
    assert main(["zoo", "train", "fmnist-standard", "--cache", str(corrupt_copy), "--no-progress"] + OV) == 1
    err = capsys.readouterr().err
    assert "shipped checkpoint" in err and f"git checkout -- {shipped._rel(pt)}" in err and "--force" in err
    assert pt.read_bytes() == before  # kept for restoring
    with pytest.raises(checkpoint.CheckpointError, match="git checkout -- "):  # the pipeline: the same message
        pipeline.prepare_zoo(["fmnist-standard"], overrides=MICRO, root=corrupt_copy)
    assert main(["zoo", "train", "fmnist-standard", "--force", "--cache", str(corrupt_copy), "--no-progress"] + OV) == 0
    assert zoo.status("fmnist-standard", MICRO, corrupt_copy) == "ok"


def test_the_pipeline_retrains_a_corrupt_cached_model(corrupt_copy, caplog):
    with caplog.at_level(logging.WARNING, logger="adasmooth.zoo"):
        rows = pipeline.prepare_zoo(["fmnist-standard"], overrides=MICRO, root=corrupt_copy)
    assert "is corrupt (fails its sha256 check): deleting it to retrain it" in caplog.text
    assert rows[0]["model"] == "fmnist-standard" and rows[0]["status"] == "trained"
    assert zoo.status("fmnist-standard", MICRO, corrupt_copy) == "ok"


# ---------------------------------------------------------------- 2. domains, checked before anything runs

@pytest.mark.parametrize("name, value, allowed", [
    ("n_eval", -5, "a positive multiple of the class count 10"),
    ("n_eval", 15, "a positive multiple of the class count 10"),
    ("alphas", [2.0], "each item a finite number 0 <= x <= 1"),
    ("norm", "l3", "one of 'linf', 'l2'"),
    ("steps", 0, "an int >= 1"),
    ("attacks", ["pgd_nope"], "one of 'pgd_ce'"),
    ("g", "cifar10-standard-rn18", "a zoo model of the notebook's dataset"),
    ("zoo_overrides", {"epochz": 1}, "a dict whose keys are zoo recipe fields"),
])
def test_a_value_outside_its_domain_is_refused_before_any_training_or_kernel(tmp_path, name, value, allowed):
    with pytest.raises(ValueError) as e:
        pipeline.run("smoke", only="00", out_root=tmp_path / "out", zoo_root=tmp_path / "zoo", params={name: value})
    msg = str(e.value)
    assert msg.startswith("00_quickstart.ipynb: ") and f"parameter {name!r} = {value!r} is not allowed" in msg
    assert allowed in msg
    assert not (tmp_path / "zoo").exists() and not (tmp_path / "out").exists()


def test_every_notebook_parameter_has_a_domain_and_the_profiles_are_inside_them():
    for src in pipeline.discover():
        missing = [n for n in pipeline._assigned_names(src) if parameters.domain(src.stem, n) is None]
        assert not missing, f"{src.stem}: parameters without a domain: {missing}"
    for nb, params in [("02_ri_ablation", {"panels": ["fig9"]}), ("03_certified_radii", {"failure_prob": 1.0}),
                       ("05_loss_ablation", {"c_ce": [2.0], "c_sum": 1.5}), ("06_sigmoid_scale", {"scales": [0.0]})]:
        with pytest.raises(ValueError, match=f"{nb}: parameter '{next(iter(params))}'"):
            parameters.check(nb, params)


def test_papermill_runs_by_hand_hit_the_same_check_in_the_first_cell():
    with pytest.raises(ValueError, match=r"00_quickstart: parameter 'norm' = 'l3' is not allowed"):
        parameters.check_notebook("00_quickstart", {"norm": "l3", "n_eval": 50, "In": [], "get_ipython": None})
    parameters.check_notebook("00_quickstart", {"norm": "l2", "n_eval": 50, "out_dir": None})
    for src in pipeline.discover():  # every notebook's procedure runs the check first (through notebook.setup)
        namespace = {k: d["default"] for k, d in pipeline.declared_parameters(src).items()}
        with pytest.raises(ValueError, match=rf"{src.stem}: parameter 'seed' = -1 is not allowed"):
            getattr(experiments, experiments.NOTEBOOKS[src.stem])({**namespace, "seed": -1})
    with pytest.raises(ValueError, match=r"00_quickstart: parameter 'norm' = 'l3' is not allowed"):
        notebook.setup("00_quickstart", {"norm": "l3", "n_eval": 50, "seed": 0, "g": "fmnist-standard",
                                         "h": "fmnist-linf-at"})


# ---------------------------------------------------------------- 3. reproduce -p NAME=VALUE, file specs

def test_parse_param_values():
    assert pipeline.parse_param("n_eval=200") == ("n_eval", 200)
    assert pipeline.parse_param("alphas=[0.0, 0.5]") == ("alphas", [0.0, 0.5])
    assert pipeline.parse_param("device=None") == ("device", None)
    assert pipeline.parse_param("headline=true") == ("headline", True)
    assert pipeline.parse_param("norm=l2") == ("norm", "l2")
    name, spec = pipeline.parse_param("g=my/models.py:make_g")
    assert name == "g" and spec == f"{Path('my/models.py').resolve()}:make_g"
    with pytest.raises(ValueError, match="NAME=VALUE"):
        pipeline.parse_param("n_eval")


def test_reproduce_p_naming_no_declared_parameter_is_an_error(capsys, tmp_path):
    assert main(["reproduce", "--profile", "smoke", "--only", "00", "-p", "n_evals=50"]) == 2
    err = capsys.readouterr().err
    assert "n_evals" in err and "no selected notebook declares" in err
    with pytest.raises(ValueError, match="-p out_dir"):
        pipeline.plan("smoke", only="00", params={"out_dir": str(tmp_path)})


def test_p_applies_to_the_notebooks_that_declare_it(nb_dir_p):
    plan = pipeline.plan(_profile(), nb_dir=nb_dir_p, params={"scale": 5.0}, out_root=nb_dir_p / "out")
    got = {src.stem: params for src, params in plan.notebooks}
    assert got["00_first"]["scale"] == 5.0 and "scale" not in got["01_other"]
    only = pipeline.plan(_profile(), nb_dir=nb_dir_p, params={"pause": 0.5}, params_only="01",
                         out_root=nb_dir_p / "out")
    assert dict(only.notebooks[1][1])["pause"] == 0.5
    with pytest.raises(ValueError, match="no selected notebook declares the parameter 'pause'"):
        pipeline.plan(_profile(), nb_dir=nb_dir_p, params={"pause": 0.5}, params_only="00", out_root=nb_dir_p)


@pytest.fixture
def nb_dir_p(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "00_first.ipynb")
    _notebook(d / "01_other.ipynb", params="pause = 0.0  # type: float\nout_dir = '.'  # type: str\n",
              body="from adasmooth import results\nresults.write(out_dir, NAME, params={}, metrics={})\n")
    return d


FACTORY = '''\
from pathlib import Path
import torch

ADASMOOTH_FILES = ["weights.pt", "extra/*.npz"]  # what make() reads: hashed into the results' inputs

def make():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    net.load_state_dict(torch.load(Path(__file__).parent / "weights.pt", weights_only=True))
    return net
'''


def test_a_file_path_model_spec_and_its_weights_decide_currency(tmp_path):
    (tmp_path / "mine.py").write_text(FACTORY)
    torch.manual_seed(0)
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).state_dict(), tmp_path / "weights.pt")
    spec = f"{tmp_path / 'mine.py'}:make"
    assert resolve.kind(spec) == "file" and pipeline._is_model(spec)
    m, rec = resolve.model(spec, device="cpu")
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert rec["file"] == str((tmp_path / "mine.py").resolve()) and list(rec["files"]) == [str(tmp_path / "weights.pt")]
    res = results.write(tmp_path / "out", "00_x", params={}, metrics={}, inputs=[rec])
    doc = results.read(res)
    doc["pipeline"] = {"fingerprint": "fp"}
    checkpoint.atomic_write_json(res, doc)
    assert pipeline.is_current(res, "fp")
    torch.save({k: v + 1 for k, v in torch.load(tmp_path / "weights.pt").items()}, tmp_path / "weights.pt")
    assert not pipeline.is_current(res, "fp")  # a changed weights file reruns the notebook
    _, rec = resolve.model(spec, device="cpu")
    assert resolve.is_unchanged(rec)
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "more.npz").write_bytes(b"new")
    assert not resolve.is_unchanged(rec)  # so does one added where the factory declares its files
    with pytest.raises(ValueError, match="not found"):
        resolve.model(f"{tmp_path / 'nope.py'}:make")


# ---------------------------------------------------------------- 5. output folders of notebooks run by hand

def test_default_output_folders_resolve_against_the_project(tmp_path, monkeypatch):
    assert results.INTERACTIVE == pipeline.PROJECT / "results" / "interactive"
    d = pipeline.declared_parameters(pipeline.notebook_dir() / "00_quickstart.ipynb")
    assert d["out_dir"]["default"] is None and d["fig_dir"]["default"] is None
    monkeypatch.setattr(results, "INTERACTIVE", tmp_path / "project-results")
    monkeypatch.chdir(tmp_path)
    p = results.write(None, "00_x", params={}, metrics={})
    assert p == tmp_path / "project-results" / "00_x.json"
    assert results.output_dir(None, figures=True) == tmp_path / "project-results" / "figures"


# ---------------------------------------------------------------- 6. quiet logs

def test_a_reduced_budget_model_missing_its_floors_logs_info_not_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="adasmooth.zoo"):
        meta = zoo.train_model("fmnist-standard", overrides=MICRO, root=tmp_path,
                               device="cpu")
    floors = [r for r in caplog.records if "misses its quality floors" in r.getMessage()]
    assert not meta["floors_met"] and floors and all(r.levelno == logging.INFO for r in floors)
    assert "expected of a reduced-budget variant" in floors[0].getMessage()


def test_the_pipelines_kernels_do_not_print_their_tcp_warning_and_p_reaches_the_notebook(tmp_path, capfd):
    d = tmp_path / "nbs"
    d.mkdir()
    _notebook(d / "00_first.ipynb")
    out = pipeline.run(_profile(), nb_dir=d, out_root=tmp_path / "out", jobs=1, params={"scale": 5.0})
    assert out[0].status == "ran" and out[0].doc["metrics"]["product"] == 20.0  # scale 5 x the profile's steps 4
    err = capfd.readouterr().err
    assert "Kernel is running over TCP" not in err and "KeyboardInterrupt caught in kernel" not in err


def test_readme_documents_the_venv_p_and_zoo_verify():
    readme = (pipeline.PROJECT / "README.md").read_text()
    assert ". .venv/bin/activate" in readme and "docs/cli.md" in readme and "docs/models.md" in readme
    assert "-p NAME=VALUE" in (pipeline.PROJECT / "docs" / "cli.md").read_text()
    assert "python -m adasmooth zoo verify" in (pipeline.PROJECT / "docs" / "models.md").read_text()
