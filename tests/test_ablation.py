"""Tables SM2/SM3 cells with and without the evaluation range, and the attack cache behind them."""
import json

import pytest
import torch

from adasmooth import ablation, attack_cache, evaluate
from adasmooth.adaptive import AdaptiveMixedClassifier, calibrate_range
from adasmooth.mixing import mix_log_probs
from adasmooth.mixing_net import for_models

pytestmark = pytest.mark.usefixtures("one_thread")

ATTACK = dict(eps=0.1, steps=2, norm="linf", seed=0, apgd_iter=3, surrogate_scale=None)


@pytest.fixture(scope="module")
def model(g_model, h_model):
    torch.manual_seed(0)
    m = AdaptiveMixedClassifier(g_model, h_model, for_models(g_model, h_model, width=8)).eval()
    return m


@pytest.fixture
def images(test_batch):
    x, y = test_batch
    return x[:60], y[:60]


def _acc_with_range(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_cell_keeps_the_target_with_and_without_the_range(model, images, monkeypatch, tmp_path):
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    x, y = images
    t = ablation.common_target(model.g, model.h, x, y, target_clean=None, target_position=0.5)
    assert min(t["acc_g"], t["acc_h"]) <= t["target"] <= max(t["acc_g"], t["acc_h"])
    cell = ablation.evaluate_network(model, x, y, t["target"], range_width=0.15, use_cache=True, batch_size=30,
                                     **ATTACK)
    rng = cell["range"]
    # both clean accuracies within one image of the target, the range of the requested width inside [0, 1]
    assert abs(cell["clean"] - t["target"]) <= 1 / len(y) + 1e-9
    assert abs(rng["clean"] - t["target"]) <= 1 / len(y) + 1e-9
    assert 0 <= rng["alpha_min"] and rng["alpha_max"] == pytest.approx(rng["alpha_min"] + 0.15) and rng["alpha_max"] <= 1
    for r in (cell, rng):
        assert 0 <= r["worst"] <= r["full"] <= r["clean"] + 1e-9
        assert r["cached"] is False
    # the model is handed back with the full range, and the clamped accuracy is what the range gives
    assert model.net.alpha_range == (0.0, 1.0)
    model.net.set_alpha_range(rng["alpha_min"], rng["alpha_max"])
    try:
        assert _acc_with_range(model, x, y) == pytest.approx(rng["clean"])
    finally:
        model.net.set_alpha_range(0.0, 1.0)
    # a rerun reads both attack results from the cache: same numbers, marked cached
    again = ablation.evaluate_network(model, x, y, t["target"], range_width=0.15, use_cache=True, batch_size=30,
                                      **ATTACK)
    assert again["cached"] and again["range"]["cached"]
    for k in ("full", "detached", "worst", "per_attack"):
        assert again[k] == cell[k] and again["range"][k] == rng[k]
    # another head is another question: a different scale misses the cache
    model.net.set_head(scale=4.0)
    try:
        other = ablation.robust(model, x, y, use_cache=True, batch_size=30, **ATTACK)
    finally:
        model.net.set_head(scale=2.0)
    assert other["cached"] is False
    with pytest.raises(ValueError, match="range_width"):
        calibrate_range(model, x, y, t["target"], 0.0)


def test_calibrate_range_matches_a_direct_mix(model, images):
    x, y = images
    model.net.set_head(shift=0.3)
    with torch.no_grad():
        lg, lh = torch.log_softmax(model.g(x), 1), torch.log_softmax(model.h(x), 1)
    acc_g = (lg.argmax(1) == y).float().mean().item()
    acc_h = (lh.argmax(1) == y).float().mean().item()
    target = 0.5 * (acc_g + acc_h)
    res = calibrate_range(model, x, y, target, 0.1)
    try:
        with torch.no_grad():
            _, alpha, _ = model(x, return_alpha=True)
        assert float(alpha.min()) >= res.value - 1e-6 and float(alpha.max()) <= res.value + 0.1 + 1e-6
        direct = (mix_log_probs(lg, lh, alpha).argmax(1) == y).float().mean().item()
        assert direct == pytest.approx(res.accuracy, abs=1e-6)
    finally:
        model.net.set_alpha_range(0.0, 1.0)


def test_tradeoff_rows_from_the_cache_equal_computed_ones(g_model, h_model, images, monkeypatch, tmp_path):
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    x, y = images
    kw = dict(eps=0.1, steps=2, attacks=("pgd_ce", "transfer_g", "apgd_t"), apgd_iter=2, batch_size=30,
              subsets={"base": ("pgd_ce",)})
    plain = evaluate.tradeoff_curve(g_model, h_model, [0.0, 0.6], ["prob"], x, y, **kw)
    first = evaluate.tradeoff_curve(g_model, h_model, [0.0, 0.6], ["prob"], x, y, use_cache=True, **kw)
    entries = sorted((tmp_path / "attack-cache").glob("*.json"))
    whats = sorted(json.loads(e.read_text())["what"].split(": ")[1].split(" on ")[0] for e in entries)
    assert whats == ["apgd_t", "apgd_t", "pgd_ce", "pgd_ce", "transfer_g", "transfer_g"]  # one entry per row and attack
    again = evaluate.tradeoff_curve(g_model, h_model, [0.6, 0.8], ["prob"], x, y, use_cache=True, **kw)
    assert [r["cached"] for r in first] == [False, False] and [r["cached"] for r in again] == [True, False]
    drop = ("seconds", "cached")
    for a, b in ((plain[1], first[1]), (plain[1], again[0])):
        assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    # other images are another question
    other = evaluate.tradeoff_curve(g_model, h_model, [0.6], ["prob"], x[:30], y[:30], use_cache=True, **kw)
    assert other[0]["cached"] is False
    with pytest.raises(ValueError, match="extra_attacks and reference"):
        evaluate.tradeoff_curve(g_model, h_model, [0.6], ["prob"], x, y, use_cache=True,
                                extra_attacks={"none": lambda m, xx, yy: xx}, **kw)


def test_packed_masks_round_trip():
    m = torch.rand(37) > 0.5
    assert torch.equal(attack_cache.unpack(attack_cache.pack(m), 37), m)
    with pytest.raises(ValueError, match="expected 90"):
        attack_cache.unpack(attack_cache.pack(m), 90)


def test_paired_cells_count_the_images_only_one_cell_gets_right():
    from adasmooth.verdicts import ablations as v

    n = 40
    base = torch.zeros(n, dtype=torch.bool)
    base[:20] = True
    better = base.clone()
    better[20:32] = True  # 12 more images right
    worse = base.clone()
    worse[:3] = False     # 3 fewer
    cell = {k: {"full": m.float().mean().item(), "c_ce": 0.0, "masks": {"full": attack_cache.pack(m)}}
            for k, m in (("zero", base), ("better", better), ("worse", worse))}
    cell["ranged"] = {**cell["better"], "range": {"masks": {"full": attack_cache.pack(base)}}}
    tests = ablation.paired(cell, [("better", "zero"), ("worse", "zero"), ("ranged", "zero")], n)
    assert (tests[("better", "zero")]["full"]["only_a"], tests[("better", "zero")]["full"]["only_b"]) == (12, 0)
    assert tests[("better", "zero")]["full"]["p_value"] < 0.001 and "range/full" not in tests[("better", "zero")]
    assert (tests[("worse", "zero")]["full"]["only_a"], tests[("worse", "zero")]["full"]["only_b"]) == (0, 3)
    assert "range/full" not in tests[("ranged", "zero")]  # the zero cell has no range: no pair there
    rows = ablation.paired_table(tests, str)["rows"]
    assert [r[:5] for r in rows[:2]] == [["better", "zero", "full range", 12, 0], ["worse", "zero", "full range", 0, 3]]
    tally = v._paired_tally([(cell["better"], cell["zero"]), (cell["worse"], cell["zero"])], n)
    assert tally.startswith("ahead in 1, behind in 0, no significant difference in 1 of 2")
    assert v._paired_tally([({"full": 0.5}, cell["zero"])], n) == ""  # no masks recorded: no tally


def test_the_named_tables_suite_is_robust_accuracy_adaptive(model, images):
    from adasmooth import suites
    from adasmooth.adaptive import robust_accuracy_adaptive

    x, y = images[0][:30], images[1][:30]
    old = float(model.net.scale)
    model.net.set_head(scale=4.0)  # above the suite's surrogate scale (1), so the surrogate attacks run
    try:
        res = suites.evaluate(model, x, y, "tables", eps=0.1, steps=2, apgd_iter=2, batch_size=30)
        direct = robust_accuracy_adaptive(model, x, y, eps=0.1, steps=2, apgd_iter=2, batch_size=30,
                                          surrogate_scale=1.0, return_masks=True)
    finally:
        model.net.set_head(scale=old)
    names = [s["attack"] for s in res.steps]
    assert names[-1] == "full/apgd-t" and "full/surrogate/ce" in names and "transfer/h" in names
    assert set(names) == set(direct["per_attack"])
    assert torch.equal(res.correct, direct["masks"]["worst"]) and res.accuracy == pytest.approx(direct["worst"])
