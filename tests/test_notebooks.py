"""Every notebook, run once through papermill with the smoke profile (one session fixture), judged by the
numbers in its results JSON; the committed sources carry no outputs and declare typed parameters."""
import time
from statistics import NormalDist
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
import torch

from adasmooth import data, experiments, pipeline, profiles, results, zoo

NOTEBOOKS = [p.stem for p in pipeline.discover()]
SMOKE = profiles.SMOKE


@pytest.fixture(scope="session")
def smoke(tmp_path_factory, zoo_cache):
    """The smoke pipeline, run once into a temporary folder with the tests' tiny-zoo cache."""
    out = tmp_path_factory.mktemp("smoke")
    t0 = time.perf_counter()
    outcomes = pipeline.run("smoke", out_root=out, zoo_root=zoo_cache)
    return SimpleNamespace(out=out, zoo=zoo_cache, seconds=time.perf_counter() - t0,
                           outcomes={o.name: o for o in outcomes})


def _doc(smoke, name):
    o = smoke.outcomes[name]
    assert o.status == "ran", f"{name} {o.status}: {o.error}"
    doc = results.read(smoke.out / f"{name}.json")
    assert doc["name"] == name and doc["pipeline"]["fingerprint"]
    return doc


def _params(name):
    src = pipeline.notebook_dir() / f"{name}.ipynb"
    decl = pipeline.declared_parameters(src)
    p = {k: v["default"] for k, v in decl.items()}
    p.update({k: v for k, v in SMOKE.common.items() if k in decl})
    p.update(SMOKE.notebooks.get(name, {}))
    return p


def _eval_set(n_eval, seed=0):
    x, y = data.load("fashion-mnist", "test")
    idx = data.balanced_subset(y, n_eval // 10, seed=seed)
    return x[idx], y[idx]


def _tiny(name, smoke):
    return zoo.get(name, train_if_missing=False, overrides=SMOKE.zoo_overrides, root=smoke.zoo, device="cpu")


# ---- sources ---------------------------------------------------------------------------------
def test_there_are_the_eight_notebooks():
    assert NOTEBOOKS == ["00_quickstart", "01_theory_checks", "02_ri_ablation", "03_certified_radii",
                         "04_adaptive_vs_constant", "05_loss_ablation", "06_sigmoid_scale", "07_alpha_explorer", "08_mixing_methods"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_has_no_outputs_a_typed_parameters_cell_and_python3_kernel(name):
    src = pipeline.notebook_dir() / f"{name}.ipynb"
    nb = nbformat.read(str(src), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, f"{name}: a code cell carries outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    decl = pipeline.declared_parameters(src)  # raises on untyped or unparsable parameters
    for k in ("seed", "device", "progress", "out_dir", "fig_dir", "zoo_root", "zoo_overrides"):
        assert k in decl, f"{name} lacks parameter {k}"
    assert any("model" in d["types"] or "zoo" in d["types"] for d in decl.values())
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f"experiments.{experiments.NOTEBOOKS[name]}(globals())" in code and "exp.save()" in code  # <name>.json


def _code_lines(cell) -> list[str]:
    return [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_notebooks_are_parameters_one_call_and_figures():
    """At most 25 code lines outside the parameters cell, and no code cell of more than 3 lines in two notebooks:
    the procedures live in adasmooth.experiments."""
    seen = {}
    for name in NOTEBOOKS:
        nb = nbformat.read(str(pipeline.notebook_dir() / f"{name}.ipynb"), as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
        assert sum(len(_code_lines(c)) for c in cells) <= 25, name
        for c in cells:
            lines = tuple(ln.strip() for ln in _code_lines(c))
            if len(lines) > 3:
                assert lines not in seen, f"{name} repeats a code cell of {seen.get(lines)}"
                seen[lines] = name


def test_mixing_notebooks_take_zoo_names_only():
    src = pipeline.notebook_dir() / "05_loss_ablation.ipynb"
    with pytest.raises(ValueError, match="'g' must be a zoo name"):
        pipeline.check_parameters(src, {"g": "mypkg.nets:make_g"})
    pipeline.check_parameters(src, {"g": "fmnist-trades"})


def test_an_unknown_parameter_is_refused(tmp_path):
    bad = profiles.Profile("bad", "", common={}, notebooks={"03_certified_radii": {"n_samplez": 10}})
    with pytest.raises(ValueError, match="unknown parameter.*n_samplez"):
        pipeline.run(bad, out_root=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- the smoke run, notebook by notebook ----------------------------------------------------
def test_00_quickstart(smoke):
    doc = _doc(smoke, "00_quickstart")
    p = _params("00_quickstart")
    rows = doc["data"]["curve"]
    assert [r["alpha"] for r in rows] == p["alphas"]
    for r in rows:
        assert 0 <= r["attacked"] <= r["clean"] <= 1
        used = [k for k in doc["params"]["attacks"]]
        assert used and all(k in r for k in used)
        for k in used:
            assert r["attacked"] <= r[k]  # the reported number is the per-image worst case
    x, y = _eval_set(p["n_eval"])
    with torch.no_grad():
        acc_g = (_tiny("fmnist-standard", smoke)(x).argmax(1) == y).double().mean().item()
        acc_h = (_tiny("fmnist-linf-at", smoke)(x).argmax(1) == y).double().mean().item()
    assert doc["metrics"]["clean_g"] == pytest.approx(acc_g) and doc["metrics"]["clean_h"] == pytest.approx(acc_h)
    assert [i["spec"] for i in doc["inputs"]] == ["fmnist-standard", "fmnist-linf-at"]
    assert len(doc["tables"][0]["rows"]) == len(p["alphas"])


def test_01_theory_checks_find_no_violation(smoke):
    doc = _doc(smoke, "01_theory_checks")
    m = doc["metrics"]
    for k in ("lemma1", "theorem1", "theorem2", "theorem3"):
        assert m[f"{k}_violations"] == 0
    assert m["lemma1_certified"] > 0 and m["theorem1_certified"] > 0 and m["theorem2_certified"] > 0
    checks = doc["data"]["radius_checks"]
    for a in _params("01_theory_checks")["alphas"]:
        by = {c["theorem"]: c for c in checks if c["alpha"] == a}
        assert by["Theorem 1"]["certified"] == by["Theorem 2"]["certified"]
        if a < 0.5:
            assert by["Theorem 1"]["certified"] == 0  # no certificate below α = 1/2
        if by["Theorem 1"]["certified"]:
            assert by["Theorem 2"]["mean_radius"] >= by["Theorem 1"]["mean_radius"]  # RS bound is tighter
    t3 = doc["data"]["theorem3"]
    assert set(t3) == {"clean", "PGD on g", "PGD on h"}
    for v in t3.values():
        assert v["oracle"] >= max(v["g"], v["h"])


def test_02_ri_ablation(smoke):
    doc = _doc(smoke, "02_ri_ablation")
    p = _params("02_ri_ablation")
    assert set(doc["data"]["curves"]) == set(p["panels"])
    for name, rows in doc["data"]["curves"].items():
        assert len(rows) == len(p["options"]) * len(p["alphas"])
        for end in (0.0, 1.0):  # α = 0 is g and α = 1 is h for every R option
            cleans = {r["clean"] for r in rows if r["alpha"] == end}
            assert len(cleans) == 1
        assert all(0 <= r["attacked"] <= r["clean"] <= 1 for r in rows)
        areas = doc["data"]["areas"][name]
        lo, hi = areas["range"]
        assert 0 <= lo < hi <= 1
        for o in p["options"]:
            assert 0 <= areas[o] <= 1
        best = doc["metrics"][f"best_{name}"]  # the leader and every option tied with it (overlapping intervals)
        assert best and set(best) <= set(p["options"]) and best[0] == max(p["options"], key=lambda o: areas[o])
    assert doc["tables"][0]["columns"][2:] and len(doc["tables"][0]["rows"]) == len(p["panels"])


def test_03_certified_radii(smoke):
    doc = _doc(smoke, "03_certified_radii")
    m = doc["metrics"]
    assert 0 <= m["alpha"] <= 1
    assert abs(m["clean_mix"] - m["clean_baseline"]) <= 0.1
    lip, rs = doc["data"]["lip"], doc["data"]["rs"]
    assert set(lip) == set(rs) and len(lip) == 2
    for k in lip:
        a_lip, a_rs = np.array(lip[k]), np.array(rs[k])
        assert np.all(np.diff(a_lip) <= 1e-12) and np.all(np.diff(a_rs) <= 1e-12)   # non-increasing in r
        assert np.all(a_rs >= a_lip - 1e-12)      # Theorem 2's radius is never below Theorem 1's
        assert np.all((0 <= a_rs) & (a_rs <= 1))
    mix = next(k for k in lip if k.startswith("h^α"))
    if m["alpha"] < 0.5:
        assert max(rs[mix]) == 0
    # Clopper-Pearson-bounded radii: finite, and at most Cohen's cap σΦ⁻¹(failure^(1/n)) of a unanimous vote
    q = doc["params"]
    assert q["failure_prob"] is not None
    cap = max(q["sigma_h"], q["sigma_baseline"]) * NormalDist().inv_cdf(q["failure_prob"] ** (1 / q["n_samples"]))
    assert 0 <= m["max_radius_rs"] <= cap + 1e-9


def _check_calibrated(cell, target, n):
    assert abs(cell["clean"] - target) <= 3 / n + 1e-9
    assert 0 <= cell["worst"] <= min(cell["full"], cell["detached"]) <= cell["clean"] + 1e-9


def test_05_loss_ablation(smoke):
    doc = _doc(smoke, "05_loss_ablation")
    p = _params("05_loss_ablation")
    m = doc["metrics"]
    cells = doc["data"]["cells"]
    assert sorted((c["c_prod"], c["c_ce"]) for c in cells) == sorted((a, b) for a in p["c_prod"] for b in p["c_ce"])
    for c in cells:
        assert c["c_ce"] + c["c_bce"] == pytest.approx(p["c_sum"])
        _check_calibrated(c, m["target_clean"], m["n_eval"])
    assert min(m["clean_g"], m["clean_h"]) - 1e-9 <= m["target_clean"] <= max(m["clean_g"], m["clean_h"]) + 1e-9
    assert abs(m["constant_clean"] - m["target_clean"]) <= 3 / m["n_eval"] + 1e-9
    assert 0 <= m["constant_alpha"] <= 1 and 0 <= m["constant_pgd"] <= 1
    table = doc["tables"][0]
    assert len(table["rows"]) == len(p["c_prod"]) and len(table["columns"]) == 1 + len(p["c_ce"])
    top = max(cells, key=lambda c: c["full"])  # the leader and every cell tied with it (overlapping intervals)
    assert m["best_cells"][0] == [top["c_prod"], top["c_ce"]] and m["best_pgd_full"] == top["full"]
    assert all([c_prod, c_ce] in [[c["c_prod"], c["c_ce"]] for c in cells] for c_prod, c_ce in m["best_cells"])


def test_06_sigmoid_scale(smoke):
    doc = _doc(smoke, "06_sigmoid_scale")
    p = _params("06_sigmoid_scale")
    per = doc["data"]["per_scale"]
    assert [r["scale"] for r in per] == p["scales"]
    for r in per:
        _check_calibrated(r, doc["metrics"]["target_clean"], doc["metrics"]["n_eval"])
    best = doc["metrics"]["best_scale"]  # the leader and every scale tied with it (overlapping intervals)
    assert best and set(best) <= set(p["scales"]) and best[0] == max(per, key=lambda r: r["full"])["scale"]


def test_07_alpha_explorer(smoke):
    doc = _doc(smoke, "07_alpha_explorer")
    p = _params("07_alpha_explorer")
    m = doc["metrics"]
    assert m["grid_gap"] < 0.5 / m["n_eval"]  # live accuracy from cached logits == the grid's, image for image
    rows = doc["data"]["curve"]
    assert len(rows) == len(p["alphas"]) * len(p["options"])
    at = next(r for r in rows if r["option"] == p["options"][0] and r["alpha"] == p["alpha"])
    assert m["clean_at_alpha"] == pytest.approx(at["clean"]) and m["attacked_at_alpha"] == pytest.approx(at["attacked"])
    cm = np.array(doc["data"]["confusion_at_alpha"])
    assert cm.shape == (10, 10) and cm.sum() == m["n_eval"]
    assert np.trace(cm) == round(m["clean_at_alpha"] * m["n_eval"])


def test_08_mixing_methods_compares_the_three_methods_on_the_same_images(smoke):
    from adasmooth.attack_cache import images_hash

    doc = _doc(smoke, "08_mixing_methods")
    p = _params("08_mixing_methods")
    cmp = doc["data"]["comparison"]
    x, y = _eval_set(p["n_eval"], p["seed"])
    assert cmp["n"] == len(y) and cmp["images_sha256"] == images_hash(x, y)  # one image set for every method
    assert [pt["position"] for pt in cmp["points"]] == p["curve_positions"]
    fit = cmp["nuts_fit"]
    assert fit["s"] in p["nuts_grid"]["s"] and fit["p"] in p["nuts_grid"]["p"] and fit["c"] in p["nuts_grid"]["c"]
    for pt in cmp["points"]:
        assert set(pt["methods"]) == {"constant", p["learned_mixer"], "mixednuts"}
        assert len(pt["paired"]) == 3 and pt["verdict"]["verdict"]
        for m in pt["methods"].values():
            assert m["clean"]["n"] == m["attacked"]["n"] == len(y)
            assert m["attacked"]["acc"] <= m["clean"]["acc"] + 1e-9
            assert m["clean"]["low"] <= m["clean"]["acc"] <= m["clean"]["high"]
            assert m["cost"]["setup_seconds"] >= 0 and m["cost"]["forward_passes"]
        assert 0 <= pt["methods"]["mixednuts"]["knob"]["alpha"] <= 1
        tag = f"{pt['position']:g}"
        assert doc["metrics"][f"verdict@{tag}"] == pt["verdict"]["verdict"]
        conv = pt["converged"]  # every method on the attack-budget ladder, from its own base-set worst case
        assert conv["steps"] == p["budget_ladder"] and set(conv["methods"]) == set(pt["methods"])
        for name, m in conv["methods"].items():
            accs = [m["base"]["acc"]] + [r["acc"] for r in m["rungs"]]
            assert m["base"]["acc"] == pt["methods"][name]["attacked"]["acc"]
            assert all(b <= a + 1e-12 for a, b in zip(accs, accs[1:]))  # cumulative: a rung never raises it
            assert m["attacked"]["acc"] == accs[-1] and len(m["rungs"]) == len(p["budget_ladder"])
        assert len(conv["paired"]) == 3 and doc["metrics"][f"converged_verdict@{tag}"] == conv["verdict"]["verdict"]
    titles = [t["title"] for t in doc["tables"]]
    assert "Mixing methods: verdict per clean accuracy" in titles
    assert titles[-2:] == ["Mixing methods on the attack-budget ladder: attacked accuracy (%) as the budget grows",
                           "Mixing methods at the converged budget: paired tests (McNemar, same images)"]


def test_summary_lists_every_table_figure_and_timing(smoke):
    summary = (smoke.out / "summary.md").read_text()
    for name in NOTEBOOKS:
        o = smoke.outcomes[name]
        assert f"| {name} | ran |" in summary and f"## {name}" in summary
        doc = results.read(o.results)
        for tab in doc["tables"]:
            assert tab["title"] in summary
        figs = results.figure_paths(doc, o.results)
        assert figs
        for f in figs:
            assert f.read_bytes()[:4] == b"\x89PNG"
            assert f.parent == (smoke.out / "figures").resolve()  # smoke never writes the committed figures/
            assert f"]({f.relative_to(smoke.out.resolve())})" in summary
        assert o.executed.exists()
        executed = nbformat.read(str(o.executed), as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_rerun_skips_current_notebooks(smoke):
    t0 = time.perf_counter()
    again = pipeline.run("smoke", out_root=smoke.out, zoo_root=smoke.zoo)
    assert [o.status for o in again] == ["current"] * len(NOTEBOOKS)
    assert time.perf_counter() - t0 < 60
    print(f"smoke pipeline: {smoke.seconds:.0f} s; " +
          ", ".join(f"{n} {o.seconds:.0f} s" for n, o in smoke.outcomes.items()))
