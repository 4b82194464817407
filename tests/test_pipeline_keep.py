"""Nothing lost, nothing stale: a failed rerun of a notebook keeps its last good result (results JSON,
executed copy, figures) byte for byte, keeps the failed executed copy under its own name, and the summary
shows the kept result marked as failed, with the exception's last line."""
import nbformat
import pytest

from adasmooth import pipeline, profiles, results

PARAMS = '''\
fail = False  # type: bool  raise inside the notebook
values = [1, 2]  # type: list  what the figure plots
out_dir = "."  # type: str
fig_dir = "."  # type: str
'''

BODY = '''\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from adasmooth import results
fig, ax = plt.subplots()
ax.plot(values)
fig_path = results.save_figure(fig, fig_dir, "keep")
if fail:
    raise ValueError("boom")
results.write(out_dir, NAME, params={"values": values}, metrics={"n": len(values)},
              tables={"T": results.table(["first", "last"], [[values[0], values[-1]]])}, figures=[fig_path])
'''


def _notebook(path):
    from test_pipeline import _notebook as fake_notebook  # one tiny-notebook builder for the pipeline tests

    return fake_notebook(path, params=PARAMS, body=BODY)


@pytest.fixture
def nb_dir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "00_keep.ipynb")
    return d


def _profile(**params):
    return profiles.Profile("test", "keep the last good result", common={}, notebooks={"00_keep": params})


def _files(out):
    return {p: p.read_bytes() for p in (out / "00_keep.json", out / "00_keep.ipynb", out / "figures" / "keep.png")}


def test_a_failed_rerun_keeps_the_last_good_result_and_says_so(nb_dir, tmp_path, capsys):
    out = tmp_path / "out"
    first = pipeline.run(_profile(), out_root=out, nb_dir=nb_dir)
    assert [o.status for o in first] == ["ran"], first[0].error
    good = _files(out)
    assert results.read(out / "00_keep.json")["pipeline"]["finished"]
    assert results.read(out / "00_keep.json")["figures"] == ["figures/keep.png"]
    capsys.readouterr()

    o = pipeline.run(_profile(fail=True), out_root=out, nb_dir=nb_dir)[0]
    assert o.status == "failed"
    assert _files(out) == good  # the results JSON, executed copy and figure: byte for byte
    failed_copy = out / "00_keep.failed.ipynb"
    assert o.executed == failed_copy and failed_copy.exists()
    errors = [x for c in nbformat.read(str(failed_copy), as_version=4).cells if c.cell_type == "code"
              for x in c.get("outputs", []) if x.get("output_type") == "error"]
    assert errors and errors[0]["evalue"] == "boom"
    assert "ValueError: boom" in o.error and str(failed_copy) in o.error
    assert "Traceback" not in o.error and "----" not in o.error
    kept = results.read(out / "00_keep.json")["pipeline"]["finished"]
    assert o.kept == kept and o.doc["metrics"] == {"n": 2}
    printed = capsys.readouterr().out
    assert "ValueError: boom" in printed and "00_keep.failed.ipynb" in printed
    assert f"showing the result of {kept}" in printed
    summary = (out / "summary.md").read_text()
    assert f"| 00_keep | failed, showing the result of {kept} |" in summary
    assert "ValueError: boom" in summary and "00_keep.failed.ipynb" in summary
    assert "| first | last |" in summary and "| 1 | 2 |" in summary and "](figures/keep.png)" in summary
    assert sorted(p.name for p in out.iterdir()) == ["00_keep.failed.ipynb", "00_keep.ipynb", "00_keep.json",
                                                     "figures", "summary.md"]  # no staging leftovers
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["keep.png"]

    # the kept result is still current for the parameters that made it
    assert [o.status for o in pipeline.run(_profile(), out_root=out, nb_dir=nb_dir)] == ["current"]
    assert _files(out) == good

    # a completed rerun replaces everything and drops the stale failed copy
    o = pipeline.run(_profile(values=[3, 4, 5]), out_root=out, nb_dir=nb_dir)[0]
    assert o.status == "ran", o.error
    now = _files(out)
    assert all(now[p] != good[p] for p in good)
    assert results.read(out / "00_keep.json")["metrics"] == {"n": 3}
    assert not failed_copy.exists()
    summary = (out / "summary.md").read_text()
    assert "| 00_keep | ran |" in summary and "| 3 | 5 |" in summary and "failed" not in summary


def test_an_interrupted_run_keeps_the_result_and_reraises(nb_dir, tmp_path, monkeypatch):
    """Ctrl-C (no kernel here: papermill is replaced by a stub that writes a partial copy and new files)."""
    import papermill

    src = nb_dir / "00_keep.ipynb"
    out, figs = tmp_path / "out", tmp_path / "figs"
    out.mkdir()
    res = results.write(out, "00_keep", params={}, metrics={"n": 1})
    doc = results.read(res)
    doc["pipeline"] = {"fingerprint": "old", "seconds": 1.0, "finished": "2001-02-03 04:05"}
    pipeline.checkpoint.atomic_write_json(res, doc)
    before = res.read_bytes()
    (out / "00_keep.ipynb").write_text("the good executed copy")

    def interrupted(src_, dst, parameters, **kw):
        assert parameters["out_dir"] != str(out.resolve()) and parameters["fig_dir"] != str(figs.resolve())
        results.write(parameters["out_dir"], "00_keep", params={}, metrics={"n": 99})
        (tmp_path / "partial").write_text("partial")
        (tmp_path / "partial").replace(dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_notebook(src, {"out_dir": str(out.resolve()), "fig_dir": str(figs.resolve())},
                              out / "00_keep.ipynb")
    assert res.read_bytes() == before and (out / "00_keep.ipynb").read_text() == "the good executed copy"
    assert (out / "00_keep.failed.ipynb").read_text() == "partial"
    assert sorted(p.name for p in out.iterdir()) == ["00_keep.failed.ipynb", "00_keep.ipynb", "00_keep.json"]
    assert list(figs.iterdir()) == []


def test_failure_line_is_the_exceptions_last_line():
    from papermill.exceptions import PapermillExecutionError

    e = PapermillExecutionError(2, 3, "raise ValueError('boom')", "ValueError", "boom",
                                ["Traceback (most recent call last):", "  File x", "ValueError: boom"])
    assert pipeline._failure_line(e) == "ValueError: boom"
    assert pipeline._failure_line(RuntimeError("Kernel died\nmore text")) == "RuntimeError: Kernel died"
    assert pipeline._failure_line(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_summary_shows_the_kept_result_of_a_notebook_that_failed_in_a_worker(tmp_path):
    """A failed Outcome without a doc (e.g. its zoo model failed to train) still shows the kept result."""
    res = results.write(tmp_path, "00_keep", params={}, metrics={"n": 1},
                        tables={"T": results.table(["a"], [[7]])})
    doc = results.read(res)
    doc["pipeline"] = {"fingerprint": "fp", "seconds": 1.0, "finished": "2001-02-03 04:05"}
    pipeline.checkpoint.atomic_write_json(res, doc)
    o = pipeline.Outcome("00_keep", "failed", 0.0, tmp_path / "00_keep.ipynb", res, error="RuntimeError: no model")
    none = pipeline.Outcome("01_none", "failed", 0.0, tmp_path / "01_none.ipynb", tmp_path / "01_none.json",
                            error="ValueError: boom")
    prof = profiles.Profile("test", "summary", common={}, notebooks={})
    text = pipeline.write_summary(tmp_path / "summary.md", prof, [o, none], [], 1.0).read_text()
    assert "| 00_keep | failed, showing the result of 2001-02-03 04:05 |" in text and "| a |\n|---|\n| 7 |" in text
    assert "| 01_none | failed |" in text and "**Failed** (executed copy kept for inspection): `ValueError: boom`" in text
