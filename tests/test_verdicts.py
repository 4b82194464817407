"""The claim-by-claim verdicts (adasmooth.verdicts): each rule on small hand-made results docs, the paper's
reference numbers, the summary's verdict table, and that results/default/summary.md agrees with the
verdicts computed from results/default/*.json."""
import tomllib
from pathlib import Path

import numpy as np
import pytest

from adasmooth import pipeline, profiles, results, verdicts

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "results" / "default"


def by_id(rows):
    return {r["id"]: r for r in rows}


# ---------------------------------------------------------------- the paper's side

def test_paper_reference_has_table_sm2_sm3_and_the_claims():
    ref = verdicts.paper_reference()
    sm2 = ref["table_sm2"]
    cells = {(c["c_prod"], c["c_ce"]): c["pgd20"] for c in sm2["cells"]}
    assert len(sm2["cells"]) == 12 and set(cells) == {(p, ce) for p in (0.0, 0.1, 0.2) for ce in (0.0, 0.5, 1.0, 1.5)}
    assert cells[(0.2, 0.0)] == 55.1 and cells[(0.0, 0.5)] == 52.8 and cells[(0.1, 1.5)] == 54.1
    assert all(c["c_ce"] + c["c_bce"] == 1.5 for c in sm2["cells"])
    assert sm2["best"] == {"c_ce": 0.0, "c_bce": 1.5, "c_prod": 0.2}
    assert max(sm2["cells"], key=lambda c: c["pgd20"])["c_prod"] == 0.2
    base = sm2["constant_baseline"]
    assert (base["pgd20"], base["clean"], base["alpha"]) == (52.6, 90.0, 1.763)
    sm3 = ref["table_sm3"]
    assert [(s["scale"], s["pgd20"]) for s in sm3["scales"]] == [(0.5, 55.1), (1.0, 55.5), (2.0, 55.7), (4.0, 55.6)]
    assert sm3["best_scale"] == max(sm3["scales"], key=lambda s: s["pgd20"])["scale"] == 2.0
    assert ref["fig1_sm2"]["best_option"] == "prob" and set(ref["fig1_sm2"]["panels"]) == {"fig1", "sm2a", "sm2b"}
    assert "intersect" in ref["fig_sm1"]["lipschitz"]["quote"] and "more points" in ref["fig_sm1"]["rs"]["quote"]
    assert ref["theory"]["violations"] == 0
    assert all(k in ref["theory"] for k in ("lemma1", "theorem1", "theorem2", "theorem3"))
    for part in ("fig1_sm2", "table_sm2", "table_sm3", "fig_sm1", "theory"):
        assert ref[part]["where"]  # every number says where it comes from
    ref["table_sm2"]["cells"].clear()
    assert len(verdicts.paper_reference()["table_sm2"]["cells"]) == 12  # a fresh copy per call


def test_paper_reference_is_package_data():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "paper_reference.json" in cfg["package-data"]["adasmooth"]


# ---------------------------------------------------------------- intervals and the comparison rule

def test_accuracy_interval_is_clopper_pearson_and_compare_needs_disjoint_intervals():
    from adasmooth.comparison import interval

    a = verdicts.accuracy(0.5, 200)
    assert (a.low, a.high) == interval(100, 200) and a.low < 0.5 < a.high
    assert str(a).startswith("50.0 % [") and verdicts.accuracy(0.32, 200).n == 200
    assert verdicts.compare(verdicts.accuracy(0.8, 200), verdicts.accuracy(0.5, 200)) == 1
    assert verdicts.compare(verdicts.accuracy(0.5, 200), verdicts.accuracy(0.8, 200)) == -1
    assert verdicts.compare(verdicts.accuracy(0.55, 200), verdicts.accuracy(0.5, 200)) == 0  # overlap: tie
    assert verdicts.compare(verdicts.accuracy(0.55, 20000), verdicts.accuracy(0.5, 20000)) == 1  # more images


def test_best_options_lists_every_option_tied_with_the_leader():
    # the smoke run's four R options at 43.33 % on 30 images: a four-way tie, not "logit" because it comes first
    assert verdicts.best_options({"logit": 0.4333, "prob": 0.4333, "g": 0.4333, "r": 0.4333}, 30) == \
        ["logit", "prob", "g", "r"]
    assert verdicts.best_options({"a": 0.3, "b": 0.8, "c": 0.5}, 200) == ["b"]  # a clear winner
    assert verdicts.best_options({"a": 0.55, "b": 0.6, "c": 0.2}, 200) == ["b", "a"]  # overlapping intervals
    assert verdicts.best_options({(0.1, 1.0): 0.4, (0.2, 0.0): 0.41, (0.0, 0.0): None}, 200) == [(0.2, 0.0), (0.1, 1.0)]
    assert verdicts.best_options({}, 200) == []


# ---------------------------------------------------------------- (a) notebook 02

def ri_doc(areas: dict, n=200):
    return {"data": {"areas": {p: dict(areas, range=[0.85, 0.93]) for p in ("fig1", "sm2a", "sm2b")},
                     "curves": {p: [{"n": n, "option": "prob", "alpha": 0.0, "clean": 0.9, "attacked": 0.1}]
                                for p in ("fig1", "sm2a", "sm2b")}}}


def test_ri_choice_rule():
    rows = verdicts.ri_choice(ri_doc({"logit": 0.3, "prob": 0.6, "prob_grad_g": 0.2, "prob_grad_ratio": 0.25}))
    assert [r["id"] for r in rows] == ["a-fig1", "a-sm2a", "a-sm2b"]
    assert all(r["verdict"] == "reproduced" for r in rows)
    assert "60.0 % [" in rows[0]["ours"] and "tie" not in rows[0]["ours"] and "Fig. SM2a" in rows[1]["source"]
    tie = verdicts.ri_choice(ri_doc({"logit": 0.55, "prob": 0.6, "prob_grad_g": 0.2}))[0]
    assert tie["verdict"] == "inconclusive" and "tie: R = 1 probs vs R = 1 logits" in tie["ours"]
    lost = verdicts.ri_choice(ri_doc({"logit": 0.9, "prob": 0.3}))[0]
    assert lost["verdict"] == "not reproduced" and "beaten by R = 1 logits" in lost["ours"]
    assert {r["verdict"] for r in verdicts.ri_choice(None)} == {"inconclusive"}


# ---------------------------------------------------------------- (b) notebook 04's headline

def headline_doc(verdict, diff=0.2):
    acc = lambda k: {"acc": k / 1000, "k": k, "n": 1000, "low": 0, "high": 1}  # noqa: E731
    return {"metrics": {"headline_m_verdict": verdict},
            "data": {"verdicts": {"m": {"verdict": verdict}},
                     "headline": {"methods": {"m": {"attacked": acc(int(600 + 1000 * diff)), "clean": acc(870)},
                                              "constant": {"attacked": acc(600), "clean": acc(871)}},
                                  "paired": {"m vs constant": {"attacked": {"only_a": 200, "only_b": 0,
                                                                            "p_value": 1e-60, "diff": diff}}}}}}


def test_learned_vs_constant_reuses_the_recorded_verdict():
    row = verdicts.learned_vs_constant(headline_doc("reproduced"))[0]
    assert row["id"] == "b-m" and row["verdict"] == "reproduced"
    assert "80.0 % [" in row["ours"] and "60.0 % [" in row["ours"] and "p = 1e-60" in row["ours"]
    assert "52.6 %" in row["paper"]
    # not recomputed: a big recorded gain with a recorded "inconclusive" stays inconclusive
    assert verdicts.learned_vs_constant(headline_doc("inconclusive"))[0]["verdict"] == "inconclusive"
    assert verdicts.learned_vs_constant(headline_doc("not reproduced", -0.1))[0]["verdict"] == "not reproduced"
    metrics_only = {"metrics": {"headline_x_verdict": "reproduced"}}
    assert by_id(verdicts.learned_vs_constant(metrics_only))["b-x"]["verdict"] == "reproduced"
    assert verdicts.learned_vs_constant({})[0]["verdict"] == "inconclusive"


def test_claim_b_is_judged_at_the_converged_budget_where_the_ladder_ran():
    acc = lambda k: {"acc": k / 1000, "k": k, "n": 1000, "low": 0, "high": 1}  # noqa: E731
    doc = headline_doc("reproduced")
    doc["data"]["verdicts"]["lever"] = {"verdict": "reproduced"}  # a mixer the ladder did not climb
    doc["data"]["converged"] = {
        "steps": [20, 50], "methods": {"m": {"attacked": acc(550), "clean": acc(870), "reading": {"converged": True}},
                                       "constant": {"attacked": acc(590), "clean": acc(871)}},
        "paired": {"m vs constant": {"attacked": {"only_a": 10, "only_b": 50, "p_value": 1e-7, "diff": -0.04}}},
        "verdicts": {"m": {"verdict": "not reproduced"}}}
    rows = by_id(verdicts.learned_vs_constant(doc))
    assert rows["b-m"]["verdict"] == "not reproduced"  # the converged verdict, not the 20-step one
    assert "55.0 % [" in rows["b-m"]["ours"] and "59.0 % [" in rows["b-m"]["ours"] and "converged" in rows["b-m"]["ours"]
    assert "80.0 %" in rows["b-m"]["ours"]  # the base set's number beside it
    assert rows["b-lever"]["verdict"] == "inconclusive" and "upper bound" in rows["b-lever"]["ours"]


def test_claim_b_row_shows_the_after_square_numbers_beside_the_others():
    doc = headline_doc("inconclusive")
    sq = lambda k: {"square": {"after": {"acc": k / 200, "k": k, "n": 200, "low": 0, "high": 1}}}  # noqa: E731
    doc["data"]["headline"]["methods"]["m"].update(sq(125))
    doc["data"]["headline"]["methods"]["constant"].update(sq(120))
    doc["data"]["headline"]["paired"]["m vs constant"]["after_square"] = {"only_a": 13, "only_b": 8,
                                                                         "p_value": 0.383, "diff": 0.025}
    ours = verdicts.learned_vs_constant(doc)[0]["ours"]
    assert "after Square on its subset: α_θ 62.5 % [" in ours and "constant 60.0 % [" in ours
    assert "McNemar 13 vs 8, p = 0.38" in ours


# ---------------------------------------------------------------- (c) Table SM2 cells

def cells_doc(at_zero, positive, n=200):
    return {"data": {"cells": [{"c_prod": p, "c_ce": ce, "n": n, "full": at_zero if p == 0 else positive}
                               for p in (0.0, 0.1, 0.2) for ce in (0.0, 0.5, 1.0, 1.5)]}}


def test_c_prod_rule():
    assert verdicts.c_prod_helps(cells_doc(0.3, 0.6))[0]["verdict"] == "reproduced"
    assert verdicts.c_prod_helps(cells_doc(0.6, 0.3))[0]["verdict"] == "not reproduced"
    tie = verdicts.c_prod_helps(cells_doc(0.32, 0.33))[0]
    assert tie["verdict"] == "inconclusive" and tie["ours"].endswith("tie")
    assert "54.25 %" in tie["paper"] and "53.88 %" in tie["paper"]  # the paper's means, from Table SM2
    assert verdicts.c_prod_helps({})[0]["verdict"] == "inconclusive"


# ---------------------------------------------------------------- (d) Table SM3 scales

def scales_doc(accs: dict, n=200):
    return {"data": {"per_scale": [{"scale": s, "full": a, "n": n} for s, a in accs.items()]}}


def test_sigmoid_scale_rule():
    rows = by_id(verdicts.sigmoid_scale(scales_doc({0.5: 0.3, 1.0: 0.35, 2.0: 0.7, 4.0: 0.4})))
    assert rows["d1"]["verdict"] == "reproduced" and rows["d2"]["verdict"] == "reproduced"
    rows = by_id(verdicts.sigmoid_scale(scales_doc({0.5: 0.6, 1.0: 0.4, 2.0: 0.3, 4.0: 0.32})))
    assert rows["d2"]["verdict"] == "not reproduced" and "scale 0.5 above scale 2" in rows["d2"]["ours"]
    assert "tie: scale 2 vs 1, 4" in rows["d2"]["ours"]
    rows = by_id(verdicts.sigmoid_scale(scales_doc({0.5: 0.5, 1.0: 0.52, 2.0: 0.53, 4.0: 0.51})))
    assert rows["d1"]["verdict"] == "inconclusive" and "tie" in rows["d1"]["ours"]
    assert rows["d2"]["verdict"] == "inconclusive" and "tie: scale 2 vs 0.5, 1, 4" in rows["d2"]["ours"]
    rows = by_id(verdicts.sigmoid_scale(scales_doc({0.5: 0.5, 1.0: 0.8})))
    assert rows["d2"]["verdict"] == "inconclusive" and "not recorded" in rows["d2"]["ours"]


# ---------------------------------------------------------------- (e) Fig. SM1

def step(grid, level, end):
    return [level if r <= end + 1e-9 else 0.0 for r in grid]


def sm1_doc(lip_mix, lip_base, rs_mix, rs_base, n=500):
    grid = [round(r, 2) for r in np.linspace(0, 1, 101)]
    mk = lambda spec: step(grid, *spec)  # noqa: E731
    return {"metrics": {"n_eval": n}, "data": {
        "r_grid": grid,
        "lip": {"h^α (σ = 0.5, α = 0.86)": mk(lip_mix), "RS baseline (σ = 0.25, α = 1)": mk(lip_base)},
        "rs": {"h^α (σ = 0.5, α = 0.86)": mk(rs_mix), "RS baseline (σ = 0.25, α = 1)": mk(rs_base)}}}


def test_certified_radii_rule_reproduced_with_crossing_and_largest_radii():
    doc = sm1_doc((0.8, 0.4), (0.9, 0.2), (0.8, 0.5), (0.9, 0.6))
    info = verdicts.sm1_curves(doc)
    assert info["lip"]["crossing"] == 0.21 and info["lip"]["largest"] == {"mix": 0.4, "base": 0.2}
    assert info["rs"]["crossing"] is None and info["rs"]["largest"] == {"mix": 0.5, "base": 0.6}
    rows = by_id(verdicts.certified_radii(doc))
    assert rows["e1"]["verdict"] == "reproduced" and "crossing at r ≈ 0.21" in rows["e1"]["ours"]
    assert "h^α 0.4, baseline 0.2" in rows["e1"]["ours"]
    assert rows["e2"]["verdict"] == "reproduced" and "h^α above at 0 radii" in rows["e2"]["ours"]
    tab = verdicts.sm1_table(doc)
    assert tab["rows"][0][:4] == ["Lipschitz (Theorem 1)", "0.21", "0.4", "0.2"] and tab["rows"][1][1] == "–"


def test_certified_radii_rule_not_reproduced_and_ties():
    # h^α above at small radii, the baseline at large ones (the reverse of the paper); RS: h^α certifies more
    rows = by_id(verdicts.certified_radii(sm1_doc((0.95, 0.1), (0.8, 0.5), (0.9, 0.7), (0.8, 0.3))))
    assert rows["e1"]["verdict"] == "not reproduced" and rows["e2"]["verdict"] == "not reproduced"
    # the baseline above everywhere it certifies, h^α never above: no crossing
    rows = by_id(verdicts.certified_radii(sm1_doc((0.7, 0.2), (0.9, 0.3), (0.7, 0.2), (0.9, 0.3))))
    assert rows["e1"]["verdict"] == "not reproduced" and "no crossing" in rows["e1"]["ours"]
    # identical curves: a tie at every radius
    rows = by_id(verdicts.certified_radii(sm1_doc((0.8, 0.3), (0.8, 0.3), (0.8, 0.3), (0.8, 0.3))))
    assert rows["e1"]["verdict"] == rows["e2"]["verdict"] == "inconclusive"
    assert "tie at every radius" in rows["e1"]["ours"]
    # a crossing within the noise (n = 20 images): inconclusive
    rows = by_id(verdicts.certified_radii(sm1_doc((0.8, 0.4), (0.85, 0.2), (0.8, 0.5), (0.85, 0.6), n=20)))
    assert rows["e1"]["verdict"] == "inconclusive"


def test_certified_radii_with_only_sparse_radii_is_inconclusive():
    doc = {"metrics": {"n_eval": 500}, "data": {},
           "tables": [{"title": "t", "columns": ["model", "bound", "clean %", "r = 0", "r = 0.25", "r = 0.5"],
                       "rows": []}]}
    rows = verdicts.certified_radii(doc)
    assert {r["verdict"] for r in rows} == {"inconclusive"} and "only sparse radii" in rows[0]["ours"]
    sparse = sm1_doc((0.8, 0.4), (0.9, 0.2), (0.8, 0.5), (0.9, 0.6))
    keep = [0, 25, 50, 100]
    sparse["data"] = {"r_grid": [sparse["data"]["r_grid"][i] for i in keep],
                      **{b: {k: [v[i] for i in keep] for k, v in sparse["data"][b].items()} for b in ("lip", "rs")}}
    assert verdicts.sm1_curves(sparse) is None and verdicts.sm1_table(sparse) is None
    assert {r["verdict"] for r in verdicts.certified_radii(sparse)} == {"inconclusive"}


# ---------------------------------------------------------------- Lemma 1 / Theorems 1-3

def test_theory_rule():
    sets = {"clean": {"g": 0.9, "h": 0.8, "oracle": 0.95, "violations": 0}}
    ok = {"metrics": {"lemma1_violations": 0, "lemma1_certified": 1000, "theorem1_violations": 0,
                      "theorem1_certified": 10, "theorem2_violations": 3, "theorem2_certified": 10,
                      "theorem3_violations": 0, "n_eval": 100},
          "data": {"theorem3": sets}}
    rows = by_id(verdicts.theory(ok))
    assert rows["lemma1"]["verdict"] == rows["theorem1"]["verdict"] == rows["theorem3"]["verdict"] == "reproduced"
    assert rows["theorem2"]["verdict"] == "not reproduced"
    assert "violation rate ≤ 0.0037" in rows["lemma1"]["ours"]  # Clopper-Pearson upper end of 0 / 1000
    vacuous = by_id(verdicts.theory({"metrics": {"lemma1_violations": 0, "lemma1_certified": 0}}))
    assert vacuous["lemma1"]["verdict"] == "inconclusive" and vacuous["theorem1"]["verdict"] == "inconclusive"


# ---------------------------------------------------------------- all rows, the table, the summary

def test_rows_cover_every_claim_and_missing_notebooks_are_inconclusive():
    rows = verdicts.rows({})
    assert [r["id"] for r in rows] == ["a-fig1", "a-sm2a", "a-sm2b", "b", "c", "d1", "d2", "e1", "e2",
                                       "lemma1", "theorem1", "theorem2", "theorem3"]
    assert {r["verdict"] for r in rows} == {"inconclusive"}
    tab = verdicts.table(rows)
    assert tab["columns"] == verdicts.COLUMNS and len(tab["rows"]) == len(rows)
    assert not any("|" in str(c) for row in tab["rows"] for c in row)  # markdown-safe cells


def test_write_summary_opens_with_the_verdict_table_and_adds_the_sm1_table(tmp_path):
    doc = sm1_doc((0.8, 0.4), (0.9, 0.2), (0.8, 0.5), (0.9, 0.6))
    res = results.write(tmp_path, verdicts.SM1, params={}, metrics=doc["metrics"], data=doc["data"])
    o = pipeline.Outcome(verdicts.SM1, "ran", 1.0, tmp_path / f"{verdicts.SM1}.ipynb", res, doc=results.read(res))
    prof = profiles.Profile("test", "summary", common={}, notebooks={})
    text = pipeline.write_summary(tmp_path / "summary.md", prof, [o], [], 1.0).read_text()
    sections = [ln for ln in text.splitlines() if ln.startswith("## ")]
    assert sections[0] == "## Verdicts: the paper's claims beside ours" and sections[1] == "## Timing"
    assert verdicts.SETTING_NOTE in text and "| (e1) Fig. SM1" in text
    assert f"**{verdicts.SM1_TABLE_TITLE}**" in text and "| Lipschitz (Theorem 1) | 0.21 |" in text
    other = pipeline.Outcome("00_other", "ran", 1.0, tmp_path / "00_other.ipynb", res, doc={"metrics": {"x": 1}})
    text = pipeline.write_summary(tmp_path / "s2.md", prof, [other], [], 1.0).read_text()
    assert "Verdicts" not in text  # no notebook carrying a claim: no verdict table


def test_rewrite_summary_keeps_the_last_runs_facts(tmp_path):
    nb, out = tmp_path / "nb", tmp_path / "out"
    nb.mkdir()
    (nb / f"{verdicts.SM1}.ipynb").write_text("{}")
    doc = sm1_doc((0.8, 0.4), (0.9, 0.2), (0.8, 0.5), (0.9, 0.6))
    res = results.write(out, verdicts.SM1, params={}, metrics=doc["metrics"], data=doc["data"],
                        tables={"Certified": results.table(["r = 0"], [[1]])})
    stamped = results.read(res)
    stamped["pipeline"] = {"seconds": 12.5, "finished": "2001-02-03 04:05"}
    pipeline.checkpoint.atomic_write_json(res, stamped)
    env = "torch 9, Python 3, 2 CPU threads, CUDA not available. Wall time of this run: 77 s; the notebooks' x."
    (out / "summary.md").write_text(
        f"# old\n\nd\n\n{env}\n\n## Timing\n\n| notebook | status | seconds | executed copy |\n|---|---|---|---|\n"
        f"| {verdicts.SM1} | ran | 12.5 | [x](x) |\n\nZoo models used (trained by this run when missing):\n\n"
        "| model | status | seconds |\n|---|---|---|\n| fmnist-standard | shipped checkpoint | 0.0 |\n")
    prof = profiles.Profile("test", "summary", common={}, notebooks={})
    text = pipeline.rewrite_summary(prof, out_root=out, nb_dir=nb).read_text()
    assert env in text and "Rewritten from the recorded results JSON" in text
    assert f"| {verdicts.SM1} | ran | 12.5 |" in text and "| fmnist-standard | shipped checkpoint | 0.0 |" in text
    assert text.index("## Verdicts") < text.index("## Timing") and "| Certified |" not in text
    assert "**Certified**" in text and f"**{verdicts.SM1_TABLE_TITLE}**" in text


def parse_verdict_table(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = lines.index("## Verdicts: the paper's claims beside ours")
    head = next(i for i in range(start, len(lines)) if lines[i].startswith("| claim |"))
    rows = []
    for ln in lines[head + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split(" | ")])
    return rows


@pytest.mark.skipif(not (DEFAULT / "summary.md").exists(), reason="no committed default results")
def test_default_summary_verdict_table_agrees_with_the_results_json():
    text = (DEFAULT / "summary.md").read_text(encoding="utf-8")
    assert [ln for ln in text.splitlines() if ln.startswith("## ")][0] == "## Verdicts: the paper's claims beside ours"
    table = parse_verdict_table(text)
    rows = verdicts.from_folder(DEFAULT)
    assert [r[0] for r in table] == [r["claim"] for r in rows]
    assert [r[3] for r in table] == [r["verdict"] for r in rows]
    assert [r[2] for r in table] == [r["ours"] for r in rows] and [r[1] for r in table] == [r["paper"] for r in rows]
    assert all(r[3] in verdicts.VERDICTS for r in table)
    # every claim (a)-(e) and Lemma 1 / Theorems 1-3 has a row
    ids = [r["id"] for r in rows]
    for prefix in ("a-fig1", "a-sm2a", "a-sm2b", "b-", "c", "d1", "d2", "e1", "e2", "lemma1", "theorem1",
                   "theorem2", "theorem3"):
        assert any(i.startswith(prefix) for i in ids), prefix
    c = verdicts.counts(rows)
    assert f"{c['reproduced']} reproduced, {c['not reproduced']} not reproduced, {c['inconclusive']} inconclusive." in text
