"""The reproduce pipeline's mechanics on small synthetic notebooks (no models, a kernel start per run):
parameter validation before any kernel starts, skip-if-current, reruns on changed parameters or inputs,
failed notebooks keeping their executed copy, the summary; plus model specs (zoo name or import path)."""
import json
import textwrap

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from adasmooth import checkpoint, pipeline, profiles, resolve, results

PARAMS = '''\
scale = 2.0  # type: float  a number
steps = 3  # type: int  an int
label = "x"  # type: str  a string
device = None  # type: str|None  optional
values = [1, 2]  # type: list  a list
fail = False  # type: bool  raise inside the notebook
input_file = ""  # type: str  a file whose sha256 the results record
out_dir = "."  # type: str
fig_dir = "."  # type: str
'''

BODY = '''\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from adasmooth import checkpoint, results
if fail:
    raise RuntimeError("asked to fail")
fig, ax = plt.subplots()
ax.plot(values)
fig_path = results.save_figure(fig, fig_dir, "fake")
inputs = [{"spec": "file", "kind": "file", "file": input_file, "sha256": checkpoint.sha256_file(input_file)}] \\
    if input_file else []
results.write(out_dir, NAME, params={"scale": scale, "steps": steps}, metrics={"product": scale * steps},
              tables={"T": results.table(["a", "b"], [[scale, steps]])}, figures=[fig_path], inputs=inputs)
'''


def _notebook(path, params=PARAMS, body=BODY):
    nb = new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell("# fake"), cell, new_code_cell(body.replace("NAME", repr(path.stem)))]
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def nb_dir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "00_first.ipynb")
    _notebook(d / "01_second.ipynb")
    return d


def _profile(**per_notebook):
    return profiles.Profile("test", "a test profile", common={"steps": 4, "not_declared_anywhere": 1},
                            notebooks=per_notebook)


def test_declared_parameter_types(nb_dir):
    d = pipeline.declared_parameters(nb_dir / "00_first.ipynb")
    assert d["scale"]["types"] == ["float"] and d["scale"]["default"] == 2.0
    assert d["device"]["types"] == ["str", "None"]
    assert d["values"]["types"] == ["list"] and d["values"]["default"] == [1, 2]
    assert d["fail"]["types"] == ["bool"]


@pytest.mark.parametrize("params, message", [
    ({"bogus": 1}, "unknown parameter(s) ['bogus']"),
    ({"steps": "3"}, "'steps' must be int"),
    ({"steps": 3.0}, "'steps' must be int"),
    ({"steps": True}, "'steps' must be int"),
    ({"scale": "big"}, "'scale' must be a number"),
    ({"values": (1, 2)}, "'values' must be a list"),   # papermill would inject a tuple as a string
    ({"device": 0}, "'device' must be str or None"),
])
def test_unknown_or_ill_typed_parameter_is_refused_before_any_kernel(nb_dir, tmp_path, params, message):
    with pytest.raises(ValueError) as e:
        pipeline.run(_profile(**{"01_second": params}), out_root=tmp_path / "out", nb_dir=nb_dir)
    assert message in str(e.value)
    assert not (tmp_path / "out").exists()  # nothing ran, not even the valid first notebook


def test_valid_parameters_pass(nb_dir):
    pipeline.check_parameters(nb_dir / "00_first.ipynb", {"scale": 3, "steps": 2, "device": "cpu", "values": []})


def test_a_parameter_line_papermill_cannot_parse_is_an_error(tmp_path):
    src = _notebook(tmp_path / "00_bad.ipynb", params="a = 1  # type: int  help with a = sign\nb = 2  # type: int\n")
    with pytest.raises(ValueError, match="cannot parse"):
        pipeline.declared_parameters(src)


def test_unknown_type_comment_and_missing_parameters_cell(tmp_path):
    with pytest.raises(ValueError, match="unknown type"):
        pipeline.declared_parameters(_notebook(tmp_path / "00_t.ipynb", params="a = 1  # type: integer\n"))
    nb = new_notebook()
    nb.cells = [new_code_cell("a = 1")]
    nbformat.write(nb, str(tmp_path / "01_none.ipynb"))
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        pipeline.declared_parameters(tmp_path / "01_none.ipynb")


def test_profile_naming_an_unknown_notebook_is_an_error(nb_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown notebook"):
        pipeline.plan(_profile(**{"07_missing": {}}), out_root=tmp_path, nb_dir=nb_dir)


def test_select_by_number_or_name(nb_dir):
    paths = pipeline.discover(nb_dir)
    assert [p.stem for p in pipeline.select(paths, "01")] == ["01_second"]
    assert [p.stem for p in pipeline.select(paths, "1,00_first")] == ["00_first", "01_second"]
    assert pipeline.select(paths, None) == paths
    with pytest.raises(ValueError, match="unknown notebook"):
        pipeline.select(paths, "02")


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_every_profile_validates_against_the_repository_notebooks(name):
    p = pipeline.plan(name)
    assert [src.stem for src, _ in p.notebooks] == [src.stem for src in pipeline.discover()]
    for src, params in p.notebooks:
        assert params["out_dir"] == str(p.out_root.resolve())
        specs = pipeline.model_specs(src, params)
        assert all(resolve.kind(s) == "zoo" for s in specs)
    if name == "paper":
        assert all(resolve.kind(s) == "zoo" and s.startswith("cifar10-") for src, params in p.notebooks
                   for s in pipeline.model_specs(src, params))
    assert (p.fig_dir == pipeline.PROJECT / "figures") == (name == "default")  # only default writes figures/


def test_skip_if_current_and_rerun_on_changes(nb_dir, tmp_path):
    inp = tmp_path / "weights.bin"
    inp.write_bytes(b"v1")
    out = tmp_path / "out"
    prof = _profile(**{"00_first": {"input_file": str(inp)}})
    first = pipeline.run(prof, out_root=out, nb_dir=nb_dir, only="00")
    assert [o.status for o in first] == ["ran"]
    doc = results.read(out / "00_first.json")
    assert doc["metrics"]["product"] == 8.0  # the profile's steps = 4 reached the kernel
    params = pipeline.plan(prof, out_root=out, nb_dir=nb_dir, only="00").notebooks[0][1]
    assert doc["pipeline"]["fingerprint"] == pipeline.fingerprint(nb_dir / "00_first.ipynb", params)
    assert (out / "figures" / "fake.png").read_bytes()[:4] == b"\x89PNG"
    mtime = (out / "00_first.ipynb").stat().st_mtime_ns

    again = pipeline.run(prof, out_root=out, nb_dir=nb_dir, only="00")
    assert [o.status for o in again] == ["current"]
    assert (out / "00_first.ipynb").stat().st_mtime_ns == mtime
    assert again[0].seconds == doc["pipeline"]["seconds"]

    inp.write_bytes(b"v2")  # an input file changed (e.g. a retrained zoo checkpoint)
    assert [o.status for o in pipeline.run(prof, out_root=out, nb_dir=nb_dir, only="00")] == ["ran"]
    assert [o.status for o in pipeline.run(prof, out_root=out, nb_dir=nb_dir, only="00")] == ["current"]
    changed = _profile(**{"00_first": {"input_file": str(inp), "scale": 3.0}})
    o = pipeline.run(changed, out_root=out, nb_dir=nb_dir, only="00")[0]
    assert o.status == "ran" and results.read(out / "00_first.json")["metrics"]["product"] == 12.0
    assert pipeline.run(changed, out_root=out, nb_dir=nb_dir, only="00", force=True)[0].status == "ran"


def test_is_current_compares_fingerprint_and_inputs(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    rec = {"spec": "w", "kind": "file", "file": str(f), "sha256": checkpoint.sha256_file(f)}
    path = results.write(tmp_path, "nb", params={}, metrics={}, inputs=[rec])
    doc = results.read(path)
    assert not pipeline.is_current(path, "fp")          # never stamped by the pipeline
    doc["pipeline"] = {"fingerprint": "fp", "seconds": 1.0}
    checkpoint.atomic_write_json(path, doc)
    assert pipeline.is_current(path, "fp")
    assert not pipeline.is_current(path, "other")
    f.write_bytes(b"abd")
    assert not pipeline.is_current(path, "fp")
    f.unlink()
    assert not pipeline.is_current(path, "fp")
    assert not pipeline.is_current(tmp_path / "absent.json", "fp")


def test_fingerprint_ignores_outputs_but_not_code_or_params(nb_dir):
    src = nb_dir / "00_first.ipynb"
    fp = pipeline.fingerprint(src, {"steps": 3})
    assert fp != pipeline.fingerprint(src, {"steps": 4})
    nb = nbformat.read(str(src), as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="hello")]
    nb.cells[2].execution_count = 7
    nbformat.write(nb, str(src))
    assert pipeline.fingerprint(src, {"steps": 3}) == fp
    nb.cells[2].source += "\n# edited"
    nbformat.write(nb, str(src))
    assert pipeline.fingerprint(src, {"steps": 3}) != fp


def test_failed_notebook_keeps_its_executed_copy_and_no_results(nb_dir, tmp_path):
    out = tmp_path / "out"
    prof = _profile(**{"01_second": {"fail": True}})
    outcomes = pipeline.run(prof, out_root=out, nb_dir=nb_dir)
    assert [o.status for o in outcomes] == ["ran", "failed"]
    assert "asked to fail" in outcomes[1].error
    executed = nbformat.read(str(out / "01_second.ipynb"), as_version=4)
    tracebacks = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
    assert tracebacks and tracebacks[0]["evalue"] == "asked to fail"
    assert not (out / "01_second.json").exists()
    summary = (out / "summary.md").read_text()
    assert "| 01_second | failed |" in summary and "**Failed**" in summary
    assert "| 00_first | ran |" in summary and "| a | b |" in summary and "](figures/fake.png)" in summary
    # --only 00 reruns nothing (current) and keeps the summary whole: 00 listed, the failed 01 not
    assert [o.status for o in pipeline.run(prof, out_root=out, nb_dir=nb_dir, only="00")] == ["current"]
    summary = (out / "summary.md").read_text()
    assert "| 00_first | current |" in summary and "01_second" not in summary


def test_main_returns_1_when_a_notebook_fails(nb_dir, tmp_path, monkeypatch, capsys):
    prof = _profile(**{"00_first": {"fail": True}})
    monkeypatch.setattr(pipeline.profiles, "get", lambda name: prof)
    # plan() looks discover and PROJECT up in pipeline.params at call time (and so does every other module)
    monkeypatch.setattr(pipeline.params, "discover", lambda d=None, _real=pipeline.discover: _real(nb_dir))
    monkeypatch.setattr(pipeline.params, "PROJECT", tmp_path)

    class Args:
        profile, only, force, device, progress, jobs = "test", "00", False, None, False, 1

    assert pipeline.main(Args) == 1
    assert "FAILED: 00_first" in capsys.readouterr().out
    assert (tmp_path / "results" / "test" / "00_first.ipynb").exists()


def test_model_specs_zoo_names_and_import_paths(tmp_path, monkeypatch):
    assert resolve.kind("fmnist-standard") == "zoo"
    assert resolve.kind("mypkg.nets:make_g") == "import"
    for bad in ["nope", "a.b", "a:b:c", 3, None]:
        with pytest.raises(ValueError, match="model spec|must be a str"):
            resolve.kind(bad)
    (tmp_path / "my_models_for_test.py").write_text(textwrap.dedent('''
        import torch
        def make():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        def not_a_model():
            return 3
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    m, rec = resolve.model("my_models_for_test:make", device="cpu")
    assert not m.training and m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert rec["kind"] == "import" and rec["sha256"] == checkpoint.sha256_file(tmp_path / "my_models_for_test.py")
    assert resolve.is_unchanged(rec)
    with pytest.raises(ValueError, match="expected a torch.nn.Module"):
        resolve.model("my_models_for_test:not_a_model")
    with pytest.raises(ValueError, match="no callable"):
        resolve.model("my_models_for_test:missing")
    with pytest.raises(ValueError, match="cannot import"):
        resolve.model("no_such_module_xyz:make")
    (tmp_path / "my_models_for_test.py").write_text("# changed\n")
    assert not resolve.is_unchanged(rec)


def test_zoo_spec_records_the_checkpoint_sha(tmp_path):
    from conftest import TINY

    from adasmooth import zoo

    # an untrained model saved as the tiny variant's checkpoint: resolve loads and verifies it, trains nothing
    stem = zoo.stem("fmnist-standard", TINY, tmp_path)
    checkpoint.save(stem, zoo.build("fmnist-standard").state_dict(),
                    {"config": zoo.recipe("fmnist-standard").config(TINY), "metrics": {}})
    m, rec = resolve.model("fmnist-standard", zoo_overrides=TINY, zoo_root=tmp_path, device="cpu")
    assert rec["kind"] == "zoo" and rec["file"] == str(checkpoint.path_for(stem, ".pt").resolve())
    assert rec["sha256"] == checkpoint.sha256_file(rec["file"])
    assert resolve.is_unchanged(rec)
    with pytest.raises(checkpoint.CheckpointError, match="not cached"):
        resolve.model("fmnist-l2-at", zoo_overrides=TINY, zoo_root=tmp_path, train_if_missing=False)
    assert profiles.SMOKE_ZOO == TINY  # the smoke pipeline shares the tests' tiny zoo cache


def test_results_write_is_json_with_ordered_tables_and_no_nan(tmp_path):
    p = results.write(tmp_path / "r", "nb", params={"a": (1, 2)},
                      metrics={"x": float("nan"), "t": torch.tensor(0.25)},
                      tables={"Z first": results.table(["c"], [[1]]), "A second": results.table(["c"], [[2]])})
    doc = json.loads(p.read_text())
    assert doc["metrics"] == {"t": 0.25, "x": None} and doc["params"] == {"a": [1, 2]}
    assert [t["title"] for t in doc["tables"]] == ["Z first", "A second"]
    with pytest.raises(ValueError, match="rows\\[0\\] has 2 cells"):
        results.table(["a"], [[1, 2]])
    assert not list((tmp_path / "r").glob(".*tmp"))  # atomic write leaves no temporary file


TIMED = '''\
import os, time, torch
from adasmooth import results
t0 = time.time()
time.sleep(pause)
results.write(out_dir, NAME, params={}, metrics={"threads": torch.get_num_threads(), "start": t0,
                                                 "end": time.time(), "omp": os.environ.get("OMP_NUM_THREADS")})
'''


def test_notebooks_run_side_by_side_with_their_share_of_the_cores(tmp_path, monkeypatch):
    d = tmp_path / "notebooks"
    d.mkdir()
    for stem in ("00_a", "01_b", "02_c"):
        _notebook(d / f"{stem}.ipynb", params="pause = 0.0  # type: float\nout_dir = '.'  # type: str\n",
                  body=TIMED)
    prof = profiles.Profile("test", "side by side", common={"pause": 4.0}, notebooks={})
    monkeypatch.setattr(pipeline.runtime, "cpu_cores", lambda: 4)  # 4 cores, 2 jobs -> 2 threads per kernel
    out = pipeline.run(prof, out_root=tmp_path / "out", nb_dir=d, jobs=2)
    assert [o.name for o in out] == ["00_a", "01_b", "02_c"] and {o.status for o in out} == {"ran"}
    m = [o.doc["metrics"] for o in out]
    assert {x["threads"] for x in m} == {2} and {x["omp"] for x in m} == {"2"}
    spans = sorted((x["start"], x["end"]) for x in m)
    assert spans[1][0] < spans[0][1], "two notebooks should have run at the same time"
    assert pipeline.run(prof, out_root=tmp_path / "out", nb_dir=d, jobs=2)[0].status == "current"
    with pytest.raises(ValueError, match="jobs must be an int >= 1"):
        pipeline.run(prof, out_root=tmp_path / "out", nb_dir=d, jobs=0, force=True)


def _task(log, name, seconds, fail=False):
    import time as _t
    log.append(("start", name, _t.perf_counter()))
    _t.sleep(seconds)
    log.append(("end", name, _t.perf_counter()))
    if fail:
        raise RuntimeError(f"{name} failed")
    return name.upper()


def test_schedule_starts_a_task_after_its_needs_and_the_longest_chain_first():
    from concurrent.futures import ThreadPoolExecutor
    log = []
    # zoo models a (needed by the long notebook L) and b (needed by the short notebook S); c needed by no one
    tasks = {"a": (_task, (log, "a", 0.3)), "b": (_task, (log, "b", 0.1)), "c": (_task, (log, "c", 0.1)),
             "L": (_task, (log, "L", 0.3)), "S": (_task, (log, "S", 0.1))}
    needs = {"L": {"a"}, "S": {"b"}}
    est = {"a": 3.0, "b": 1.0, "c": 2.5, "L": 10.0, "S": 1.0}  # chains: a 13, c 2.5, b 2, L 10, S 1
    seen = []
    with ThreadPoolExecutor(2) as ex:
        res = pipeline.schedule(tasks, needs, est, 2, ex, on_done=lambda k, o: seen.append((k, o)))
    assert res == {k: ("ok", k.upper()) for k in tasks}
    assert sorted(seen) == sorted(res.items())  # on_done saw every task's outcome once
    t = {(kind, n): v for kind, n, v in log}
    starts = [n for kind, n, _ in sorted(log, key=lambda e: e[2]) if kind == "start"]
    assert starts[:3] == ["a", "c", "b"]
    assert t[("start", "L")] >= t[("end", "a")] and t[("start", "S")] >= t[("end", "b")]


def test_schedule_skips_what_a_failed_task_was_needed_for_and_runs_the_rest():
    from concurrent.futures import ThreadPoolExecutor
    log = []
    tasks = {"z": (_task, (log, "z", 0.0, True)), "n1": (_task, (log, "n1", 0.0)), "n2": (_task, (log, "n2", 0.0)),
             "n3": (_task, (log, "n3", 0.0))}
    with ThreadPoolExecutor(2) as ex:
        res = pipeline.schedule(tasks, {"n1": {"z"}, "n2": {"n1"}}, {}, 2, ex)
    assert res["z"][0] == "error" and "z failed" in str(res["z"][1])
    assert res["n1"] == ("skipped", ["z"]) and res["n2"] == ("skipped", ["n1"]) and res["n3"] == ("ok", "N3")
    assert {n for kind, n, _ in log if kind == "start"} == {"z", "n3"}
    with pytest.raises(ValueError, match="cycle"):
        pipeline.schedule({"a": (_task, (log, "a", 0)), "b": (_task, (log, "b", 0))}, {"a": {"b"}, "b": {"a"}}, {}, 1,
                          ThreadPoolExecutor(1))
    with pytest.raises(ValueError, match="do not exist"):
        pipeline.schedule({"a": (_task, (log, "a", 0))}, {"a": {"nope"}}, {}, 1, ThreadPoolExecutor(1))


NEEDS_ZOO = '''\
import os
import time
from adasmooth import results, zoo
t0 = time.time()
results.write(out_dir, NAME, params={}, metrics={"cached_at_start": zoo.is_cached(model, zoo_overrides, zoo_root),
                                                 "start": t0})
'''


def _zoo_notebooks(tmp_path):
    """00_needs names the zoo model fmnist-standard; 01_free names none."""
    d = tmp_path / "notebooks"
    d.mkdir()
    params = ('model = "fmnist-standard"  # type: model\nzoo_overrides = {}  # type: dict\n'
              'zoo_root = None  # type: str|None\nout_dir = "."  # type: str\n')
    _notebook(d / "00_needs.ipynb", params=params, body=NEEDS_ZOO)
    _notebook(d / "01_free.ipynb", params="out_dir = '.'  # type: str\npause = 0.0  # type: float\n", body=TIMED)
    return d


def test_zoo_models_train_in_the_notebook_pool_and_a_notebook_waits_for_its_own(tmp_path):
    """jobs = 2: the missing zoo model trains in a worker while the notebook that needs no model runs; the
    notebook that needs it starts only once it is cached; the summary rows say what was trained."""
    d = _zoo_notebooks(tmp_path)
    tiny = {"train_subset": 500, "epochs": 1, "eval_n": 100}
    prof = profiles.Profile("test", "zoo in the pool", common={"pause": 1.0}, zoo_overrides=tiny)
    root = tmp_path / "zoo"
    out = pipeline.run(prof, out_root=tmp_path / "out", nb_dir=d, zoo_root=root, jobs=2)
    assert [o.status for o in out] == ["ran", "ran"], [o.error for o in out]
    assert out[0].doc["metrics"]["cached_at_start"] is True
    meta = pipeline.zoo.metadata("fmnist-standard", tiny, root)
    assert meta["metrics"]["n_eval"] == 100
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| fmnist-standard | trained in this run |" in summary and "| (all, side by side) | wall time |" in summary


def test_a_zoo_model_that_fails_to_train_fails_only_the_notebooks_that_need_it(tmp_path):
    d = _zoo_notebooks(tmp_path)
    broken = {"train_subset": 5, "epochs": 1}  # 0 images per class: training raises in its worker
    prof = profiles.Profile("test", "a broken zoo recipe", common={}, zoo_overrides=broken)
    out = pipeline.run(prof, out_root=tmp_path / "out", nb_dir=d, zoo_root=tmp_path / "zoo", jobs=2)
    assert [o.status for o in out] == ["failed", "ran"]
    assert "fmnist-standard failed to train" in out[0].error and "per_class" in out[0].error
    assert not (tmp_path / "out" / "00_needs.json").exists()
    assert "| fmnist-standard | failed | 0.0 |" in (tmp_path / "out" / "summary.md").read_text()
