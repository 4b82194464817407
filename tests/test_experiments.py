"""The procedures of notebooks 00-03 (adasmooth.experiments), called as the notebooks call them, with the smoke
profile's tiny settings and two untrained linear models from a factory file (nothing trained, no attack cache)."""
import json

import pytest
import torch

from adasmooth import experiments, pipeline, profiles, results
from adasmooth.experiments import NOT_RECORDED

FACTORIES = '''import torch


def _linear(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))


def make_g():
    return _linear(0)


def make_h():
    return _linear(1)
'''


@pytest.fixture(scope="module")
def factories(tmp_path_factory):
    """``(g, h)`` model specs: two fixed random linear classifiers written to a factory file."""
    f = tmp_path_factory.mktemp("factories") / "linear_models.py"
    f.write_text(FACTORIES)
    return f"{f}:make_g", f"{f}:make_h"


def _namespace(stem: str, tmp_path, **over) -> dict:
    """A notebook's globals after its parameters cell: declared defaults, the smoke profile's values, ``over``."""
    declared = pipeline.declared_parameters(pipeline.notebook_dir() / f"{stem}.ipynb")
    ns = {k: v["default"] for k, v in declared.items()}
    ns.update({k: v for k, v in profiles.SMOKE.common.items() if k in declared})
    ns.update(profiles.SMOKE.notebooks.get(stem, {}))
    ns.update(device="cpu", out_dir=str(tmp_path), fig_dir=str(tmp_path / "figures"), train_missing=False, **over)
    return ns


def _saved(exp, stem: str) -> dict:
    """Save ``exp`` (figures, then the results JSON) and read the JSON back."""
    path = exp.save()
    assert path.name == f"{stem}.json"
    doc = results.read(path)
    for f in results.figure_paths(doc, path):
        assert f.read_bytes()[:4] == b"\x89PNG"
    return doc


def _recorded(stem: str) -> set:
    """Every parameter notebook ``stem`` declares, less those that say where and how it runs."""
    return set(pipeline.declared_parameters(pipeline.notebook_dir() / f"{stem}.ipynb")) - NOT_RECORDED


def test_quickstart_records_every_parameter_and_the_attacks_it_used(tmp_path, factories):
    g, h = factories
    ns = _namespace("00_quickstart", tmp_path, g=g, h=h, n_eval=20, alphas=[0.0, 1.0], attacks=None, steps=1)
    exp = experiments.quickstart(ns)
    assert set(exp.params) == _recorded("00_quickstart") and not set(exp.params) & NOT_RECORDED
    assert exp.params["attacks"] and exp.params["g"] == g  # None stands for the default set, recorded by name
    rows = exp.data["curve"]
    assert [r["alpha"] for r in rows] == [0.0, 1.0]
    assert exp.metrics["clean_g"] == rows[0]["clean"] and exp.metrics["attacked_h"] == rows[1]["attacked"]
    doc = _saved(exp, "00_quickstart")
    assert doc["metrics"] == exp.metrics and doc["params"] == json.loads(json.dumps(exp.params))
    assert [t["title"] for t in doc["tables"]] == ["Trade-off of h^α"]
    assert [i["spec"] for i in doc["inputs"]] == [g, h]


def test_theory_checks_find_no_violation_whatever_g_and_h(tmp_path, factories):
    g, h = factories
    ns = _namespace("01_theory_checks", tmp_path, g=g, h=h, n_eval=20, n_points=20, n_perturb=4, lemma_trials=200,
                    grid_side=16, alphas=[0.5, 1.0], draw_alphas=[1.0])
    exp = experiments.theory_checks(ns)
    assert set(exp.params) == _recorded("01_theory_checks")
    assert all(v == 0 for k, v in exp.metrics.items() if k.endswith("_violations"))
    assert exp.metrics["theorem1_certified"] > 0 and exp.metrics["lemma1_certified"] > 0
    assert [f.name for f in exp.figures] == ["01_certified_regions"]
    doc = _saved(exp, "01_theory_checks")
    assert doc["metrics"] == exp.metrics and len(doc["tables"]) == 3
    assert doc["figures"] and doc["data"]["theorem3"].keys() == {"clean", "PGD on g", "PGD on h"}


def test_ri_ablation_one_panel_and_an_unknown_panel(tmp_path, factories):
    g, h = factories
    ns = _namespace("02_ri_ablation", tmp_path, g=g, h_linf=h, panels=["fig1"], options=["logit", "prob"],
                    alphas=[0.0, 0.5, 1.0], n_eval=20, steps_fig1=1)
    exp = experiments.ri_ablation(ns)
    assert set(exp.params) == _recorded("02_ri_ablation")
    assert list(exp.data["curves"]) == ["fig1"] and len(exp.data["curves"]["fig1"]) == 6
    assert exp.metrics["best_fig1"] and set(exp.metrics["best_fig1"]) <= {"logit", "prob"}
    assert len(exp.tables) == 2 and [i["spec"] for i in exp.inputs] == [g, h]
    from adasmooth.experiments.ri_ablation import ri_ablation  # experiments.ri_ablation is now the module: see below

    with pytest.raises(ValueError, match="panels"):
        ri_ablation(dict(ns, panels=["fig9"]))


def test_certified_radii_at_a_given_alpha(tmp_path, factories):
    g, h = factories
    ns = _namespace("03_certified_radii", tmp_path, g=g, h=h, baseline=h, n_eval=20, n_samples=16, alpha=0.8,
                    r_max=1.0)
    exp = experiments.certified_radii(ns)
    assert set(exp.params) == _recorded("03_certified_radii") and exp.params["alpha"] == 0.8
    m = exp.metrics
    assert m["alpha"] == 0.8 and m["n_samples"] == 16 and m["n_eval"] == 20
    lip, rs = exp.data["lip"], exp.data["rs"]
    assert len(exp.data["r_grid"]) == 201 and set(lip) == set(rs) and len(lip) == 2
    for k in lip:
        assert (torch.as_tensor(rs[k]) >= torch.as_tensor(lip[k]) - 1e-12).all()  # Theorem 2 never below Theorem 1
    doc = _saved(exp, "03_certified_radii")
    assert doc["metrics"] == pytest.approx(json.loads(json.dumps(m)))



def test_a_procedure_is_still_the_procedure_when_asked_again():
    import importlib

    importlib.import_module("adasmooth.experiments.quickstart")  # importing the module does not shadow it
    assert callable(experiments.quickstart) and callable(experiments.quickstart)
