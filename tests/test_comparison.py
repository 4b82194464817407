"""The honest comparison: statistics, the attack set, the content-addressed cache, the learned mixers' heads."""
import json

import pytest
import torch

from adasmooth import checkpoint, comparison, data, learned
from adasmooth.attacks import pgd

from conftest import TINY

pytestmark = pytest.mark.usefixtures("one_thread")

MIX = dict(train_subset=64, batch_size=16, steps_df=2, width=8)
TINY_BUDGET = comparison.Budget(steps=2, apgd_iter=2, square_queries=10, square_n=10, batch_size=50)


def test_interval_and_mcnemar_match_hand_computations():
    lo, hi = comparison.interval(5, 10)
    # Clopper-Pearson for 5/10: Beta(5, 6) 2.5 % and Beta(6, 5) 97.5 % quantiles
    from scipy.stats import beta
    assert lo == pytest.approx(beta.ppf(0.025, 5, 6)) and hi == pytest.approx(beta.ppf(0.975, 6, 5))
    a = torch.tensor([True] * 8 + [False] * 2)
    b = torch.tensor([False] * 8 + [False] * 2)
    t = comparison.mcnemar(a, b)
    assert (t["only_a"], t["only_b"]) == (8, 0)
    assert t["p_value"] == pytest.approx(2 * 0.5 ** 8)  # exact two-sided binomial on 8 discordant pairs
    assert comparison.mcnemar(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError, match="same shape"):
        comparison.mcnemar(a, a[:5])
    assert comparison.auc(torch.tensor([0.1, 0.2]), torch.tensor([0.8, 0.9])) == 1.0
    assert comparison.auc(torch.tensor([0.8, 0.9]), torch.tensor([0.1, 0.2])) == 0.0


def test_pgd_start_and_momentum(g_model, test_batch):
    x, y = test_batch[0][:16], test_batch[1][:16]
    far = torch.clamp(x + 0.5, 0, 1)
    adv = pgd(g_model, x, y, eps=0.1, steps=0 + 1, start=far, step_size=0.0)
    assert (adv - x).abs().max() <= 0.1 + 1e-6  # a start outside the ball is projected onto it
    assert not torch.equal(adv, x)
    a1 = pgd(g_model, x, y, eps=0.1, steps=3, momentum=0.9, seed=1)
    a2 = pgd(g_model, x, y, eps=0.1, steps=3, momentum=0.0, seed=1)
    assert (a1 - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(a1, a2)
    with pytest.raises(ValueError, match="momentum"):
        pgd(g_model, x, y, eps=0.1, steps=2, momentum=1.5)
    with pytest.raises(ValueError, match="start"):
        pgd(g_model, x, y, eps=0.1, steps=2, start=x[:3])


def test_validation_split_is_held_out_balanced_and_disjoint():
    xf, yf = data.load("fashion-mnist", "fit")
    xv, yv = data.load("fashion-mnist", "val")
    assert len(yf) + len(yv) == 60000 and len(yv) == 10 * data.VAL_PER_CLASS
    assert torch.equal(torch.bincount(yv), torch.full((10,), data.VAL_PER_CLASS))
    idx = data.validation_indices(data.load("fashion-mnist", "train")[1])
    assert torch.equal(idx, data.validation_indices(data.load("fashion-mnist", "train")[1]))
    assert len(set(idx.tolist())) == len(idx)


@pytest.fixture(scope="module")
def mixers(tiny_zoo, zoo_cache):
    tiny_zoo("fmnist-standard"), tiny_zoo("fmnist-linf-at")
    kw = dict(root=zoo_cache, base_overrides=TINY, mixing_overrides=MIX, device="cpu")
    return {n: learned.train(n, **kw) for n in ("fmnist-adaptive", "fmnist-adaptive-clamped")}, kw


def test_learned_head_is_chosen_on_validation_and_reloads(mixers, zoo_cache):
    models, kw = mixers
    head = models["fmnist-adaptive"].metadata["head"]
    val = head["val"]
    # the shift hits the validation target within one image of the 5000, so does the range and the constant α
    for k in ("acc_shift", "acc_range", "acc_constant"):
        assert abs(val[k] - val["target"]) <= 1 / val["n"] + 1e-9
    assert head["alpha_max"] - head["alpha_min"] == pytest.approx(0.15)
    clamped = models["fmnist-adaptive-clamped"]
    assert clamped.net.alpha_range == pytest.approx((head["alpha_min"], head["alpha_max"]), abs=1e-6)
    assert models["fmnist-adaptive"].net.alpha_range == (0.0, 1.0)
    again = learned.get("fmnist-adaptive", **kw)
    assert float(again.net.shift) == pytest.approx(head["shift"], abs=1e-6)
    # a head file chosen for another network is refused
    p = learned.head_path("fmnist-adaptive", zoo_cache, TINY, MIX)
    doc = json.loads(p.read_text())
    p.write_text(json.dumps({**doc, "mixing_sha256": "0" * 64}))
    try:
        with pytest.raises(checkpoint.CheckpointError, match="another mixing network"):
            learned.get("fmnist-adaptive", **kw)
    finally:
        p.write_text(json.dumps(doc))
    with pytest.raises(checkpoint.CheckpointError, match="zoo train fmnist-adaptive-diverse"):
        learned.get("fmnist-adaptive-diverse", **kw)


def test_headline_same_images_for_every_method_and_cached_rerun(mixers, monkeypatch, tmp_path):
    models, kw = mixers
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    doc = comparison.headline(n_test=30, budget=TINY_BUDGET, with_diagnostics=True, **kw)
    methods = doc["methods"]
    assert set(methods) == {"constant", "fmnist-adaptive", "fmnist-adaptive-clamped"}
    assert all(m["clean"]["n"] == 30 and m["attacked"]["n"] == 30 for m in methods.values())
    for m in methods.values():
        assert m["attacked"]["k"] <= m["clean"]["k"]
        accs = [s["acc"] for s in m["steps"]]
        assert accs == sorted(accs, reverse=True)  # cumulative worst case never goes up
        assert m["square"]["after"]["k"] <= m["square"]["before"]["k"] and m["square"]["n"] == 10
    names = [s["attack"] for s in methods["fmnist-adaptive"]["steps"]]
    for expected in ("pgd-ce/full/w=0.2", "pgd-margin/detached", "transfer/g", "surrogate-1/ce",
                     "evasion/two-phase", "evasion/alpha-held", "apgd-ce", "apgd-t"):
        assert expected in names
    assert not any(n.startswith(("surrogate", "evasion")) for n in (s["attack"] for s in methods["constant"]["steps"]))
    pair = doc["paired"]["fmnist-adaptive vs constant"]["attacked"]
    a, c = methods["fmnist-adaptive"]["attacked"]["k"], methods["constant"]["attacked"]["k"]
    assert pair["only_a"] - pair["only_b"] == a - c  # paired on the same images
    assert 0 <= doc["diagnostics"]["fmnist-adaptive"]["pgd-ce/full/w=0.2"]["auc"] <= 1
    files = sorted((tmp_path / "attack-cache").glob("*.json"))
    assert files
    again = comparison.headline(n_test=30, budget=TINY_BUDGET, with_diagnostics=False, **kw)
    assert all(s["cached"] for m in again["methods"].values() for s in m["steps"])
    for name in methods:
        assert again["methods"][name]["attacked"] == methods[name]["attacked"]
    with pytest.raises(ValueError, match="only must name"):
        comparison.headline(n_test=30, budget=TINY_BUDGET, only=["nope"], **kw)


def _doc(a, c, sq_a=None, sq_c=None):
    paired = {"attacked": comparison.mcnemar(a, c)}
    if sq_a is not None:
        paired["after_square"] = comparison.mcnemar(sq_a, sq_c)
    return {"paired": {"m vs constant": paired}, "methods": {"m": {}}}


def test_verdict_rule_decides_claim_b():
    t, f = torch.ones(100, dtype=torch.bool), torch.zeros(100, dtype=torch.bool)
    half = torch.arange(100) < 50
    assert comparison.verdict(_doc(t, half), "m")["verdict"] == "reproduced"  # 50 discordant, all for α_θ
    assert comparison.verdict(_doc(half, t), "m")["verdict"] == "not reproduced"
    assert comparison.verdict(_doc(t, t), "m")["verdict"] == "inconclusive"  # a tie is a tie
    # ahead under gradient attacks, significantly behind once Square has run: masked, not reproduced
    assert comparison.verdict(_doc(t, half, sq_a=f, sq_c=t), "m")["verdict"] == "not reproduced"
    # significantly ahead on all images, but after Square on its subset the lead is 13 vs 8 (p 0.38): the
    # strongest evaluation no longer separates them (the diverse lever's case)
    sq_a, sq_c = torch.arange(100) < 60, (torch.arange(100) < 47) | ((torch.arange(100) >= 60) & (torch.arange(100) < 68))
    assert comparison.verdict(_doc(t, half, sq_a=sq_a, sq_c=sq_c), "m")["verdict"] == "inconclusive"
    assert comparison.verdict(_doc(t, half, sq_a=t, sq_c=half), "m")["verdict"] == "reproduced"
    # on the ladder: the leader's number must have converged, else its lead is an upper bound
    ladder = _doc(t, half)
    ladder["methods"] = {"m": {"reading": {"converged": False}}, "constant": {"reading": {"converged": True}}}
    assert comparison.verdict(ladder, "m")["verdict"] == "inconclusive"
    ladder["methods"]["m"]["reading"]["converged"] = True
    assert comparison.verdict(ladder, "m")["verdict"] == "reproduced"
    behind = _doc(half, t)
    behind["methods"] = {"m": {"reading": {"converged": False}}, "constant": {"reading": {"converged": True}}}
    assert comparison.verdict(behind, "m")["verdict"] == "not reproduced"  # an upper bound already behind
    few = torch.arange(100) < 97
    assert comparison.verdict(_doc(t, few), "m")["verdict"] == "inconclusive"  # 3 discordant pairs: p = 0.25


def test_curves_match_each_point_on_validation_and_pair_on_the_same_images(mixers, monkeypatch, tmp_path):
    from adasmooth import matched
    from adasmooth.attacks import predict

    models, kw = mixers
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    doc = matched.curves(positions=(0.25, 0.5), n_test=20, budget=TINY_BUDGET, **kw)
    assert [pt["position"] for pt in doc["points"]] == [0.25, 0.5]
    for pt in doc["points"]:
        v = pt["val"]
        assert v["target"] == pytest.approx(v["acc_h"] + pt["position"] * (v["acc_g"] - v["acc_h"]))
        for k in ("acc_shift", "acc_constant"):  # both knobs hit the validation target within one image
            assert abs(v[k] - v["target"]) <= 1 / v["n"] + 1e-9
        m = pt["methods"]
        pair = pt["paired"]["fmnist-adaptive vs constant"]["attacked"]
        assert pair["only_a"] - pair["only_b"] == m["fmnist-adaptive"]["attacked"]["k"] - m["constant"]["attacked"]["k"]
        assert m["constant"]["alpha"] == pytest.approx(v["constant_alpha"])
        assert pt["verdict"]["verdict"] in {"reproduced", "not reproduced", "inconclusive"}
    # the headline's own position is the headline's model (its shift, so its cached attacks)
    head = models["fmnist-adaptive"].metadata["head"]
    assert doc["points"][1]["methods"]["fmnist-adaptive"]["shift"] == pytest.approx(head["shift"], abs=1e-6)
    assert doc["points"][0]["methods"]["fmnist-adaptive"]["shift"] != pytest.approx(head["shift"], abs=1e-6)
    x, y, _ = comparison.test_images("fashion-mnist", 20, TINY_BUDGET, "cpu")
    g, h = models["fmnist-adaptive"].g, models["fmnist-adaptive"].h
    assert doc["endpoints"]["g"]["clean"]["k"] == int((predict(g, x, 50) == y).sum())
    assert doc["endpoints"]["h"]["clean"]["k"] == int((predict(h, x, 50) == y).sum())
    tabs = matched.curve_tables(doc)
    assert len(tabs["points"]["rows"]) == 2 * 2 + 2 and len(tabs["paired"]["rows"]) == 2
    part = matched.curves(positions=(0.25,), n_test=20, budget=TINY_BUDGET, endpoints=False,
                          only=["constant@0.25"], **kw)
    assert set(part["points"][0]["methods"]) == {"constant"} and not part["points"][0]["paired"]
    assert part["points"][0]["methods"]["constant"]["attacked"] == doc["points"][0]["methods"]["constant"]["attacked"]
    assert part["points"][0]["methods"]["constant"]["steps"][0]["cached"]
    with pytest.raises(ValueError, match="positions"):
        matched.curves(positions=(1.5,), n_test=20, budget=TINY_BUDGET, **kw)
    with pytest.raises(ValueError, match="only must name"):
        matched.curves(positions=(0.25,), n_test=20, budget=TINY_BUDGET, only=["nope"], **kw)


def test_budget_ladder_is_cumulative_sharded_and_replays(mixers, monkeypatch, tmp_path):
    models, kw = mixers
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    args = dict(n_test=30, budget=TINY_BUDGET, steps=(1, 2), shards=2, learned_names=["fmnist-adaptive"], **kw)
    # two processes could fill the two shards; the whole run then reads every answer from the cache
    for shard in (0, 1):
        part = comparison.convergence(only_shard=shard, **args)
        assert "paired" not in part and all(m["rungs"][0]["n"] == 15 for m in part["methods"].values())
    doc = comparison.convergence(**args)
    assert set(doc["methods"]) == {"constant", "fmnist-adaptive"} and doc["steps"] == [1, 2]
    # two worker processes attacking each rung's shards side by side give the same ladder (a fresh cache)
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path / "forked"))
    forked = comparison.convergence(jobs=2, **args)
    for name, m in doc["methods"].items():
        assert [r["acc"] for r in forked["methods"][name]["rungs"]] == [r["acc"] for r in m["rungs"]]
    assert forked["paired"] == doc["paired"]
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    for m in doc["methods"].values():
        assert all(r["cached"] for r in m["rungs"])
        accs = [m["base"]["acc"]] + [r["acc"] for r in m["rungs"]]
        assert accs == sorted(accs, reverse=True)  # each rung attacks only what the lower ones left
        assert m["attacked"]["acc"] == pytest.approx(accs[-1]) and m["attacked"]["n"] == 30
        moves = [round(100 * (a - b), 2) for a, b in zip(accs[:-1], accs[1:])]
        assert m["reading"]["moves_points"] == pytest.approx(moves, abs=0.01)
        assert m["reading"]["converged"] == (moves[-1] < 0.5)
    pair = doc["paired"]["fmnist-adaptive vs constant"]["attacked"]
    assert pair["only_a"] - pair["only_b"] == (doc["methods"]["fmnist-adaptive"]["attacked"]["k"]
                                               - doc["methods"]["constant"]["attacked"]["k"])
    assert doc["verdicts"]["fmnist-adaptive"]["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    tabs = comparison.ladder_tables(doc)
    assert len(tabs["ladder"]["rows"]) == 2 and len(tabs["ladder"]["columns"]) == 3 + 2 + 3
    # a method may climb part of the ladder: its rungs are the same cached answers, the rest marked not run
    part = comparison.convergence(method_steps={"fmnist-adaptive": [1]}, **args)
    m, full = part["methods"]["fmnist-adaptive"], doc["methods"]["fmnist-adaptive"]
    assert m["steps"] == [1] and m["rungs"] == full["rungs"][:1] and part["methods"]["constant"]["steps"] == [1, 2]
    assert m["reading"]["moves_points"] == full["reading"]["moves_points"][:1]
    assert comparison.ladder_tables(part)["ladder"]["rows"][1][4] == "– (not run)"
    comparison.plot_ladder(part)
    with pytest.raises(ValueError, match="method_steps"):
        comparison.convergence(method_steps={"fmnist-adaptive": [3]}, **args)


def test_ladder_reading_rule():
    from adasmooth.comparison.convergence import reading, shard_slices

    rungs = [{"steps": s, "acc": a} for s, a in ((20, 0.60), (50, 0.59), (100, 0.588), (200, 0.587))]
    r = reading(0.66, rungs)
    assert r["converged"] and r["at_steps"] == 50 and r["moves_points"] == [6.0, 1.0, 0.2, 0.1]
    r = reading(0.66, rungs[:2])
    assert not r["converged"] and r["at_steps"] is None  # the last rung still moved it by a point
    assert [(s.start, s.stop) for s in shard_slices(10, 3)] == [(0, 3), (3, 7), (7, 10)]
    with pytest.raises(ValueError, match="shards"):
        shard_slices(5, 6)


def test_strong_family_holds_the_evasion_attacks_and_the_base_family_keeps_its_keys(mixers):
    models, _ = mixers
    m = models["fmnist-adaptive"]
    strong = list(comparison.attack_set(m, TINY_BUDGET.with_steps(3)))
    for name in ("evasion/w=1", "evasion/w=0.95", "evasion/two-phase/w2=0.95", "evasion/targeted-3",
                 "bpda/pgd-ce/w=0.2", "pgd-ce/full/w=0.2", "apgd-t"):
        assert name in strong
    assert strong.index("evasion/w=1") < strong.index("pgd-ce/full/w=0")  # the evasion family runs first
    base = list(comparison.attack_set(m, TINY_BUDGET))
    assert "evasion/two-phase" in base and not any(n.startswith(("bpda", "evasion/targeted")) for n in base)
    assert "family" not in TINY_BUDGET.key() and TINY_BUDGET.with_steps(3).key()["family"] == "strong"
    with pytest.raises(ValueError, match="family"):
        comparison.Budget(family="weak")


def test_training_budget_curve_pairs_each_mixer_with_the_constant(mixers, monkeypatch, tmp_path):
    from adasmooth.comparison import training_budget

    models, kw = mixers
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    doc = training_budget.run(learned_names=["fmnist-adaptive", "fmnist-adaptive-clamped"], n_test=30,
                              budget=TINY_BUDGET, **kw)
    assert [p["name"] for p in doc["points"]] == ["fmnist-adaptive", "fmnist-adaptive-clamped"]
    for p in doc["points"]:
        assert p["steps"] == models[p["name"]].metadata["steps"] and p["attacked"]["n"] == 30
        assert p["paired"]["only_a"] - p["paired"]["only_b"] == p["attacked"]["k"] - doc["constant"]["attacked"]["k"]
    rows = training_budget.tables(doc)["curve"]
    assert len(rows["rows"]) == 3 and "n = 30" in training_budget.line(doc)
    with pytest.raises(ValueError, match="learned_names must name"):
        training_budget.run(learned_names=[], **kw)


def test_training_budget_reads_the_smallest_budget_that_is_significantly_ahead(monkeypatch):
    from adasmooth.comparison import training_budget, summary

    n = 200
    const = torch.arange(n) < 120
    masks = {"a": torch.arange(n) < 60, "b": torch.arange(n) < 125, "c": torch.arange(n) < 160}  # behind, tie, ahead
    steps = {"a": 27, "b": 108, "c": 54}

    def fake_headline(**kw):
        methods = {"constant": {"clean": summary(const), "attacked": summary(const)}}
        paired = {}
        for name in kw["learned_names"]:
            methods[name] = {"clean": summary(masks[name]), "attacked": summary(masks[name]),
                             "training": {"steps": steps[name], "seconds": 1.0}}
            paired[f"{name} vs constant"] = {"attacked": comparison.mcnemar(masks[name], const)}
        return {"n": n, "budget": {}, "methods": methods, "paired": paired}

    monkeypatch.setattr(training_budget, "headline", fake_headline)
    doc = training_budget.run(learned_names=["a", "b", "c"])
    assert [p["steps"] for p in doc["points"]] == [27, 54, 108]  # sorted by the training budget
    assert [p["verdict"]["verdict"] for p in doc["points"]] == ["not reproduced", "reproduced", "inconclusive"]
    assert doc["smallest_steps"] == 54 and doc["smallest_significant"] == 54
    masks["c"] = torch.arange(n) < 121  # nowhere significantly ahead
    doc = training_budget.run(learned_names=["a", "b", "c"])
    assert doc["smallest_steps"] is None and "at no training budget" in training_budget.line(doc)
