"""MixedNUTS (adasmooth.nuts): the map against a hand computation, the seeded fit and its cache, α = 0, the
parameter checks, and attacks through the smooth stand-in judged on the exact model."""
import math

import pytest
import torch
import torch.nn.functional as F

from adasmooth import data, nuts
from adasmooth.attacks import pgd, predict

GRID = {"s": [0.2, 1.0], "p": [1.0, 2.0], "c": [-0.7, 0.0]}


@pytest.fixture(scope="module")
def val_batch():
    x, y = data.load("fashion-mnist", "val")
    idx = data.balanced_subset(y, 6, seed=0)
    return x[idx], y[idx]


def _gelu(v):
    return v * 0.5 * (1 + math.erf(v / math.sqrt(2)))


def test_map_equals_a_hand_computation():
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.5, 2.0, -3.0, 2.0]])
    s, p, c, k = 2.0, 1.5, -0.5, 3
    out = nuts.nonlinear_map(z, s, p, c, k)
    for row, got in zip(z.tolist(), out):
        top = sorted(row, reverse=True)[:k]
        mean = sum(top) / k
        var = sum((t - mean) ** 2 for t in top) / (k - 1)   # unbiased, as torch.var
        want = []
        for v in row:
            u = _gelu((v - mean) / math.sqrt(var + 1e-8) + c)
            want.append(s * math.copysign(abs(u) ** p, u))
        assert got.tolist() == pytest.approx(want, rel=1e-6, abs=1e-7)
    # k = None (or >= classes) normalises over all logits
    all4 = nuts.nonlinear_map(z, s, p, c, None)
    assert torch.allclose(all4, nuts.nonlinear_map(z, s, p, c, 4))
    assert torch.allclose(all4, nuts.nonlinear_map(z, s, p, c, 9))


def test_exact_and_smooth_outputs_are_the_log_of_the_mixture(g_model, h_model, test_batch):
    x = test_batch[0][:20]
    m = nuts.NutsClassifier(g_model, h_model, s=1.0, p=2.0, c=-0.5, alpha=0.3, k=None, smooth=2.0)
    with torch.no_grad():
        zg, zh = g_model(x), h_model(x)
        ph = F.softmax(nuts.nonlinear_map(zh, 1.0, 2.0, -0.5), 1)
        onehot = F.one_hot(zg.argmax(1), zg.shape[1]).float()
        with m.using("exact"):
            assert torch.allclose(m(x), torch.log(0.7 * onehot + 0.3 * ph), atol=1e-5)
        with m.using("smooth"):
            assert torch.allclose(m(x), torch.log(0.7 * F.softmax(zg / 2.0, 1) + 0.3 * ph), atol=1e-5)
        assert m.path == "auto"
        assert torch.equal(m(x), m.mix(zg, zh, "exact"))  # auto without gradients: the exact model
        m.alpha = 1.0
        assert torch.allclose(m(x), F.log_softmax(nuts.nonlinear_map(zh, 1.0, 2.0, -0.5), 1))


def test_alpha_zero_gives_g_decisions_exactly(g_model, h_model, test_batch):
    x, _ = test_batch
    m = nuts.NutsClassifier(g_model, h_model, s=5.0, p=3.0, c=0.0, alpha=0.0)
    assert torch.equal(predict(m, x), predict(g_model, x))
    with m.using("exact"):
        assert torch.equal(predict(m, x), predict(g_model, x))


@pytest.mark.parametrize("kw, message", [
    (dict(s=0.0), "s must be a finite number > 0, got 0.0"),
    (dict(s=float("inf")), "s must be a finite number > 0"),
    (dict(p=-1.0), "p must be a finite number > 0, got -1.0"),
    (dict(c=float("nan")), "c must be a finite number, got nan"),
    (dict(c="0"), "c must be a finite number"),
    (dict(k=1), "k must be None \\(all classes\\) or an int >= 2, got 1"),
    (dict(k=2.5), "k must be None"),
    (dict(alpha=1.5), "alpha must lie in \\[0, 1\\], got 1.5"),
    (dict(alpha=None), "alpha must be a number in \\[0, 1\\]"),
    (dict(smooth=0), "smooth must be a finite number > 0, got 0"),
    (dict(path="fast"), "path must be one of \\('auto', 'exact', 'smooth'\\), got 'fast'"),
])
def test_bad_parameters_name_themselves(g_model, h_model, kw, message):
    args = dict(s=1.0, p=1.0, c=0.0, alpha=0.5, k=None, smooth=1.0, path="auto") | kw
    with pytest.raises(ValueError, match=message):
        nuts.NutsClassifier(g_model, h_model, **args)


def test_bad_fit_arguments(g_model, h_model, val_batch):
    x, y = val_batch
    with pytest.raises(ValueError, match="percentile must be a number in \\(0, 100\\), got 100"):
        nuts.fit(g_model, h_model, x, y, eps=0.1, percentile=100, grid=GRID, steps=1)
    with pytest.raises(ValueError, match="grid must be a dict with the keys"):
        nuts.fit(g_model, h_model, x, y, eps=0.1, grid={"s": [1.0]}, steps=1)
    with pytest.raises(ValueError, match="p must be a finite number > 0, got 0"):
        nuts.fit(g_model, h_model, x, y, eps=0.1, grid=dict(GRID, p=[1.0, 0]), steps=1)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        nuts.fit(g_model, h_model, x, y, eps=0.0, grid=GRID, steps=1)


def test_fit_is_deterministic_under_its_seed_and_cached(g_model, h_model, val_batch, tmp_path):
    x, y = val_batch
    kw = dict(eps=0.1, norm="linf", percentile=90.0, grid=GRID, steps=3, seed=7)
    a = nuts.fit(g_model, h_model, x, y, **kw)
    b = nuts.fit(g_model, h_model, x, y, **kw)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert a["s"] in GRID["s"] and a["p"] in GRID["p"] and a["c"] in GRID["c"]
    assert len(a["grid_results"]) == 8 and 0 <= a["objective"] <= 1
    assert a["alpha_cutoff"] == pytest.approx(1 / (1 + a["cutoff"]))
    best = min(r["objective"] for r in a["grid_results"])
    assert a["objective"] == best
    first = nuts.get_or_fit(g_model, h_model, x, y, root=tmp_path, **kw)
    again = nuts.get_or_fit(g_model, h_model, x, y, root=tmp_path, **kw)
    assert not first["cached"] and again["cached"] and again["path"] == first["path"]
    assert {k: again[k] for k in ("s", "p", "c", "cutoff")} == {k: a[k] for k in ("s", "p", "c", "cutoff")}
    other = nuts.fit_path(g_model, h_model, x, y, tmp_path, **dict(kw, seed=8))
    assert str(other) != first["path"]  # another configuration, another file


def test_calibrate_alpha_reaches_a_target_between_h_and_g(g_model, h_model, val_batch):
    x, y = val_batch
    params = {"s": 1.0, "p": 2.0, "c": -0.5, "k": None}
    acc_g = (predict(g_model, x) == y).double().mean().item()
    acc_h = (predict(h_model, x) == y).double().mean().item()
    target = 0.5 * (acc_g + acc_h)
    cal = nuts.calibrate_alpha(g_model, h_model, params, x, y, target, tol=1 / len(y))
    m = nuts.NutsClassifier(g_model, h_model, alpha=cal.value, **params)
    acc = (predict(m, x) == y).double().mean().item()
    assert acc == pytest.approx(cal.accuracy)
    assert abs(acc - target) <= 2 / len(y) + 1e-9 or not cal.within_tol


def test_attacking_the_smooth_stand_in_lowers_the_exact_accuracy(g_model, h_model, test_batch):
    x, y = test_batch[0][:60], test_batch[1][:60]
    m = nuts.NutsClassifier(g_model, h_model, s=1.0, p=2.0, c=-0.5, alpha=0.5)
    # gradients flow through the smooth path (g's softmax and h's map), not through g's hard argmax
    xg = x.clone().requires_grad_(True)
    with m.using("smooth"):
        (gs,) = torch.autograd.grad(m(xg).gather(1, y[:, None]).sum(), xg)
    assert gs.abs().sum() > 0 and torch.isfinite(gs).all()
    clean = (predict(m, x) == y).double().mean().item()
    adv = pgd(m, x, y, eps=0.1, steps=5, loss="ce", seed=0)   # auto path: attack steps see the smooth model
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    attacked = (predict(m, adv) == y).double().mean().item()  # judged on the exact model
    assert attacked < clean - 0.1
