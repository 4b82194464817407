"""Evaluation: accuracy, per-input robust accuracy, the trade-off curve (rows, files, plot) and the
check that our reported robust accuracy is not far above AutoAttack's."""
import csv
import json
from functools import partial

import pytest
import torch

from adasmooth import MixedClassifier
from adasmooth.attacks import pgd, predict
from adasmooth.evaluate import (DEFAULT_ATTACKS, accuracy, autoattack_reference, load_curve, plot_tradeoff,
                                robust_accuracy, save_curve, tradeoff_curve)


@pytest.fixture(scope="module")
def small(test_batch):
    x, y = test_batch
    return x[::4], y[::4]  # 50 images, 5 per class


@pytest.fixture(scope="module")
def curve(g_model, h_model, small):
    x, y = small
    return tradeoff_curve(g_model, h_model, [0.0, 0.7, 1.0], ["prob", "logit"], x, y, eps=0.1, steps=4,
                          apgd_iter=10, subsets={"base": ("pgd_ce", "transfer_g")})


def test_accuracy_matches_a_direct_count_and_ignores_batch_size(g_model, small):
    x, y = small
    ref = (g_model(x).argmax(1) == y).float().mean().item()
    assert accuracy(g_model, x, y) == pytest.approx(ref)
    assert accuracy(g_model, x, y, batch_size=7, device="cpu") == pytest.approx(ref)
    with pytest.raises(ValueError, match="y must have shape"):
        accuracy(g_model, x, y[:-1])


def test_robust_accuracy_is_a_per_input_worst_case(g_model, h_model, small):
    x, y = small
    mix = MixedClassifier(g_model, h_model, 0.7)
    from_g = pgd(g_model, x, y, eps=0.1, steps=4, random_start=False)
    attacks = {"ce": partial(pgd, eps=0.1, steps=4, random_start=False), "from_g": from_g}
    r = robust_accuracy(mix, x, y, attacks, batch_size=20)
    clean = predict(mix, x) == y
    ok_g = predict(mix, from_g) == y
    assert r.correct.dtype == torch.bool and r.correct.shape == (len(x),)
    assert (r.correct <= clean).all() and (r.correct <= ok_g).all()
    assert r.accuracy == pytest.approx(r.correct.float().mean().item())
    assert r.per_attack["from_g"] == pytest.approx(ok_g.float().mean().item())
    assert r.accuracy <= min(r.per_attack.values())
    with pytest.raises(ValueError, match="attacks"):
        robust_accuracy(mix, x, y, {"bad": from_g[:-1]})


def test_tradeoff_rows(curve, g_model, h_model, small):
    x, y = small
    assert [(r["option"], r["alpha"]) for r in curve] == [(o, a) for o in ("prob", "logit") for a in (0, 0.7, 1)]
    for r in curve:
        assert r["n"] == len(x)
        assert r["attacked"] <= r["clean"]
        assert all(r["attacked"] <= r[k] for k in DEFAULT_ATTACKS)
        assert r["attacked"] <= r["base"] <= min(r["pgd_ce"], r["transfer_g"])
    by = {(r["option"], r["alpha"]): r for r in curve}
    for opt in ("prob", "logit"):  # the ends are g and h
        assert by[opt, 0.0]["clean"] == pytest.approx(accuracy(g_model, x, y))
        assert by[opt, 1.0]["clean"] == pytest.approx(accuracy(h_model, x, y))
        # at α = 0 the mix is g, so the direct CE attack is the transfer attack from g
        assert by[opt, 0.0]["pgd_ce"] == by[opt, 0.0]["transfer_g"]
        assert by[opt, 1.0]["pgd_ce"] == by[opt, 1.0]["transfer_h"]
    # both options are g at α = 0 and h at α = 1 (log-softmax vs logits may flip a rare gradient sign)
    for a in (0.0, 1.0):
        assert by["prob", a]["clean"] == by["logit", a]["clean"]
        for k in ("attacked", *DEFAULT_ATTACKS):
            assert by["prob", a][k] == pytest.approx(by["logit", a][k], abs=2 / len(x))
    assert by["prob", 1.0]["attacked"] > by["prob", 0.0]["attacked"]  # h is the robust one


def test_tradeoff_rejects_bad_arguments(g_model, h_model, small):
    x, y = small
    call = partial(tradeoff_curve, g_model, h_model, x=x, y=y, eps=0.1, steps=1)
    with pytest.raises(ValueError, match="options"):
        call(alphas=[0.5], options=["softmax"])
    with pytest.raises(ValueError, match="alphas"):
        call(alphas=[0.5, 1.2], options=["prob"])
    with pytest.raises(ValueError, match="attacks"):
        call(alphas=[0.5], options=["prob"], attacks=["fgsm"])
    with pytest.raises(ValueError, match="norm"):
        call(alphas=[0.5], options=["prob"], norm="l1")
    with pytest.raises(ValueError, match="subsets"):
        call(alphas=[0.5], options=["prob"], attacks=["pgd_ce"], subsets={"s": ["pgd_dlr"]})
    with pytest.raises(ValueError, match="apgd_iter must be an int >= 1"):
        call(alphas=[0.5], options=["prob"], apgd_iter=0)


def test_save_load_and_plot(curve, tmp_path):
    jpath, cpath = save_curve(curve, tmp_path / "sub" / "curve", meta={"eps": 0.1})
    assert load_curve(jpath) == json.loads(json.dumps(curve))
    assert json.loads(jpath.read_text())["meta"] == {"eps": 0.1}
    with open(cpath) as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(curve) and set(curve[0]) <= set(table[0])
    assert [float(t["attacked"]) for t in table] == pytest.approx([r["attacked"] for r in curve])
    assert not list(tmp_path.rglob("*.tmp"))
    fig = plot_tradeoff(curve, title="tiny")
    (ax,) = fig.axes
    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]  # not the error bars' caps
    assert len(lines) == 2 and len(ax.containers) == 2  # one curve and its Clopper-Pearson error bars per option
    for line, opt in zip(lines, ("prob", "logit")):
        rs = [r for r in curve if r["option"] == opt]
        assert list(line.get_xdata()) == pytest.approx([100 * r["clean"] for r in rs])
        assert list(line.get_ydata()) == pytest.approx([100 * r["attacked"] for r in rs])
    with pytest.raises(ValueError, match="rows"):
        save_curve([], tmp_path / "empty")


@pytest.mark.slow
def test_reported_robust_accuracy_is_at_most_autoattack_plus_two_points(g_model, h_model, test_batch):
    pytest.importorskip("pyautoattack")
    x, y = test_batch[0][1::3], test_batch[1][1::3]  # 67 images
    aa = autoattack_reference(eps=0.1)  # the standard budget: APGD-CE + APGD-T, 100 iterations, 9 targets
    rows = tradeoff_curve(g_model, h_model, [0.5, 0.7, 1.0], ["prob"], x, y, eps=0.1, steps=20,
                          reference={"autoattack": aa})
    for row in rows:  # the default set (with APGD-T) is within 2 points of AutoAttack
        assert row["autoattack"] < row["clean"] - 0.1
        assert row["attacked"] <= row["autoattack"] + 0.02, row
        assert row["attacked_all"] <= row["attacked"]


def test_gradient_weight_options_run_through_the_curve(g_model, h_model, small):
    x, y = small[0][:10], small[1][:10]
    rows = tradeoff_curve(g_model, h_model, [0.5], ["prob_grad_g", "logit_grad_ratio"], x, y, eps=0.1, steps=2,
                          attacks=("pgd_ce",))
    assert [(r["space"], r["R"]) for r in rows] == [("prob", "grad_g"), ("logit", "grad_ratio")]
    for r in rows:
        mix = MixedClassifier(g_model, h_model, 0.5, space=r["space"], R=r["R"])
        assert r["clean"] == pytest.approx(accuracy(mix, x, y))
        assert r["attacked"] <= r["clean"]
