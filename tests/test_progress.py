"""reproduce's progress lines and the attack-cache line of the summary; no machine paths in results."""
import json
import time

from adasmooth import attack_cache, results
from adasmooth.pipeline import progress
from adasmooth.pipeline.summary import cache_lines


def test_progress_line_reads_the_kernels_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(progress.DIR_ENV, str(tmp_path))
    progress.started("04_adaptive_vs_constant", estimate=100.0)
    assert "04_adaptive_vs_constant: started (last run 100 s)" in capsys.readouterr().out
    kernel = tmp_path / "04_adaptive_vs_constant.kernel.json"
    assert str(kernel) == __import__("os").environ[attack_cache.PROGRESS_ENV]
    assert progress.line(tmp_path, "04_adaptive_vs_constant").endswith("; no attack-cache question yet")
    monkeypatch.setattr(attack_cache, "stats", {"read": 7, "verified": 1, "identical": 1, "differing_images": 0,
                                                "computed": 2, "computed_keys": [], "verified_keys": []})
    attack_cache._report("abc", "02d65197: evasion/w=1 on 300 images")
    start = json.loads((tmp_path / "04_adaptive_vs_constant.json").read_text())["start"]
    text = progress.line(tmp_path, "04_adaptive_vs_constant", now=start + 40)
    assert "running 40 s, about 60 s left" in text
    assert "7 read, 2 computed, 1 recomputed to verify; now: 02d65197: evasion/w=1 on 300 images" in text
    assert "past its last run's time" in progress.line(tmp_path, "04_adaptive_vs_constant", now=start + 140)
    progress.finished("04_adaptive_vs_constant", "ran", 41.0)
    assert "04_adaptive_vs_constant: ran after 41 s" in capsys.readouterr().out
    assert progress.line(tmp_path, "04_adaptive_vs_constant") is None and not kernel.exists()


def test_heartbeat_prints_running_notebooks_and_cleans_up(capsys, monkeypatch):
    monkeypatch.delenv(progress.DIR_ENV, raising=False)
    with progress.Heartbeat(every=0.05) as hb:
        progress.started("00_quickstart")
        time.sleep(0.3)
        folder = hb._dir.name
    out = capsys.readouterr().out
    assert out.count("00_quickstart: running") >= 2
    assert progress.DIR_ENV not in __import__("os").environ and not __import__("os").path.exists(folder)


def test_summary_says_what_was_read_verified_and_computed():
    docs = {"00": {"attack_cache": {"read": 10, "verified": 2, "identical": 2, "differing_images": 0, "computed": 1,
                                    "computed_keys": ["abc"], "code_version": 1, "verify_fraction": 0.1,
                                    "verify_seed": 0}},
            "04": {"attack_cache": {"read": 30, "verified": 4, "identical": 3, "differing_images": 1, "computed": 0,
                                    "computed_keys": [], "code_version": 1, "verify_fraction": 0.1, "verify_seed": 0}},
            "01": {}}
    lines = cache_lines(docs)
    assert lines[0] == ("Attack cache (code version 1): 40 cached attack results read, 6 recomputed to verify them "
                        "(5 identical, 1 differing images in all; fraction 0.1, seed 0).")
    assert lines[1] == "Computed in this run (not in the cache before): 1 entries: 00: abc"


def test_results_record_input_files_relative_to_the_project(tmp_path):
    from adasmooth.runtime import project_root

    inside = {"spec": "fmnist-standard", "file": str(project_root() / "data" / "zoo" / "x.pt")}
    outside = {"spec": "f.py:make", "file": "/tmp/elsewhere/f.py"}
    p = results.write(tmp_path, "00_quickstart", params={}, metrics={}, inputs=[inside, outside],
                      data={"fit": {"path": str(project_root() / "data" / "zoo" / "nuts.json")}})
    doc = results.read(p)
    assert doc["inputs"][0]["file"] == "data/zoo/x.pt" and doc["inputs"][1]["file"] == "/tmp/elsewhere/f.py"
    assert doc["data"]["fit"]["path"] == "data/zoo/nuts.json"
    assert doc["attack_cache"]["code_version"] == attack_cache.CODE_VERSION
