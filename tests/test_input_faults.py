"""Faults in what the models and the cache hand back, and in what callers hand in:

- a model whose outputs hold NaN or inf (clean or attacked) is named, in the mix, the adaptive model and every
  evaluation, instead of an accuracy being reported;
- an attack-cache entry whose packed mask has the wrong length is logged by file and recomputed;
- g, h and α are type-checked at construction, and x's shape and dtype are named against the model's.

Tiny models built here (no zoo fixtures): every test runs in about a second.
"""
import json
import logging

import numpy as np
import pytest
import torch
import torch.nn as nn

from adasmooth import attack_cache, evaluate, mixing
from adasmooth.adaptive import AdaptiveMixedClassifier
from adasmooth.attacks import pgd, predict
from adasmooth.mixing import MixedClassifier
from adasmooth.mixing_net import MixingNetwork, for_models
from adasmooth.models import SmallCNN

pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(nn.Module):
    """A linear classifier on (N, 1, 4, 4) inputs whose logits are NaN (or ``value``) on the inputs ``bad`` marks
    (``bad(x)`` -> (N,) bool; default: none)."""

    def __init__(self, seed=0, k=5, bad=None, value=float("nan")):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, k))
        self.num_classes, self.in_channels, self.bad, self.value = k, 1, bad, value

    def forward(self, x):
        z = self.net(x)
        if self.bad is None:
            return z
        return torch.where(self.bad(x)[:, None], torch.full_like(z, self.value), z)


def first_two(x):
    """The first two inputs of a batch."""
    out = torch.zeros(len(x), dtype=torch.bool)
    out[:2] = True
    return out


def off_grid(x):
    """Inputs with a pixel off the clean grid {0, 0.5}: any perturbed input, never a clean one."""
    return ((x != 0) & (x != 0.5)).flatten(1).any(1)


def x_toy(n=4, seed=0):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def x_grid(n=20, seed=0):
    """Clean inputs with pixels in {0, 0.5} and labels in [0, 5)."""
    gen = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randint(0, 2, (n, 1, 4, 4), generator=gen).float(), torch.arange(n) % 5


class NanCNN(SmallCNN):
    """A SmallCNN whose logits are NaN on the first two inputs."""

    def forward_with_taps(self, x):
        z, taps = super().forward_with_taps(x)
        return torch.where(first_two(x)[:, None], torch.full_like(z, float("nan")), z), taps


class NanNet(MixingNetwork):
    """A mixing network whose α is NaN on the first two inputs."""

    def forward(self, taps_g, taps_h, return_gamma=False):
        alpha, gamma = super().forward(taps_g, taps_h, return_gamma=True)
        alpha = torch.where(first_two(alpha), torch.full_like(alpha, float("nan")), alpha)
        return (alpha, gamma) if return_gamma else alpha


def cnn(seed=0, side=8, cls=SmallCNN):
    torch.manual_seed(seed)
    return cls(width=4, side=side).eval()


# ---- row 1: non-finite outputs ------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 0.5, torch.full((4,), 0.5)])
@pytest.mark.parametrize("R", ["one", "grad_g"])
def test_mixed_classifier_names_the_model_with_non_finite_outputs(alpha, R):
    x = x_toy()
    with pytest.raises(ValueError, match=r"^g \(Toy\) returned non-finite outputs \(NaN or inf\) on 2 of 4 inputs"):
        MixedClassifier(Toy(0, bad=first_two), Toy(1), alpha, R=R)(x)
    if not torch.is_tensor(alpha) and alpha == 0.0:
        return
    with pytest.raises(mixing.NonFiniteOutput, match=r"^h \(Toy\) returned non-finite outputs .* on 2 of 4"):
        MixedClassifier(Toy(0), Toy(1, bad=first_two, value=float("inf")), alpha, R=R)(x)


def test_a_finite_pair_mixes_as_before():
    g, h, x = Toy(0), Toy(1), x_toy()
    ref = torch.logaddexp(torch.log_softmax(g(x), 1) + np.log(0.7), torch.log_softmax(h(x), 1) + np.log(0.3))
    torch.testing.assert_close(MixedClassifier(g, h, 0.3)(x), ref)


def test_adaptive_model_names_g_h_or_the_mixing_network():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    g, h = cnn(0), cnn(1)
    with pytest.raises(ValueError, match=r"^g \(NanCNN\) returned non-finite outputs \(NaN or inf\) on 2 of 4 inputs"):
        AdaptiveMixedClassifier(cnn(0, cls=NanCNN), h, for_models(g, h, width=4)).eval()(x)
    with pytest.raises(ValueError, match=r"^h \(NanCNN\) returned non-finite outputs .* on 2 of 4 inputs"):
        AdaptiveMixedClassifier(g, cnn(1, cls=NanCNN), for_models(g, h, width=4)).eval()(x)
    net = NanNet(g_taps=g.tap_channels, h_taps=h.tap_channels, width=4)
    with pytest.raises(mixing.NonFiniteOutput, match=r"^the mixing network α_θ returned non-finite outputs .* 2 of 4"):
        AdaptiveMixedClassifier(g, h, net).eval()(x)
    with torch.no_grad():  # finite models: log-probabilities, as before
        out = AdaptiveMixedClassifier(g, h, for_models(g, h, width=4)).eval()(x)
    assert torch.isfinite(out).all() and torch.allclose(out.exp().sum(1), torch.ones(4))


def test_evaluations_refuse_a_model_with_non_finite_outputs():
    x, y = x_grid()
    nan_g, h = Toy(0, bad=first_two), Toy(1)
    kw = dict(eps=0.1, steps=1, attacks=("pgd_ce",), batch_size=20)
    with pytest.raises(ValueError, match=r"^g \(Toy\) returned non-finite outputs \(NaN or inf\) on 2 of 20 inputs"):
        evaluate.tradeoff_curve(nan_g, h, [0.5], ["prob"], x, y, **kw)
    with pytest.raises(ValueError, match=r"^the model \(Toy\) returned non-finite outputs .* on 2 of 20 inputs"):
        evaluate.accuracy(nan_g, x, y)
    with pytest.raises(ValueError, match=r"^the model \(Toy\) returned non-finite outputs .* on 2 of 20 inputs"):
        predict(nan_g, x)
    with pytest.raises(ValueError, match=r"^the model \(Toy\) returned non-finite outputs"):
        pgd(nan_g, x, y, eps=0.1, steps=1)


def test_an_attack_that_drives_the_outputs_non_finite_is_refused():
    """Finite on every clean input, NaN on every perturbed one: no accuracy, clean or attacked, is reported."""
    x, y = x_grid()
    fragile, h = Toy(0, bad=off_grid), Toy(1)
    assert torch.isfinite(fragile(x)).all()
    assert 0 <= evaluate.accuracy(fragile, x, y) <= 1  # clean: finite, accepted
    with pytest.raises(ValueError, match=r"^the model \(Toy\) returned non-finite outputs .* on 20 of 20 inputs"):
        pgd(fragile, x, y, eps=0.1, steps=2, random_start=False)
    with pytest.raises(ValueError, match=r"^g \(Toy\) returned non-finite outputs .* of 20 inputs"):
        evaluate.tradeoff_curve(fragile, h, [0.5], ["prob"], x, y, eps=0.1, steps=1, attacks=("pgd_ce",))


# ---- row 8: a malformed attack-cache entry ------------------------------------------------------
@pytest.fixture
def cache(empty_attack_cache):
    return empty_attack_cache


@pytest.mark.parametrize("change", ["short", "long", "not a list"])
def test_a_mask_of_the_wrong_length_is_named_and_recomputed(cache, caplog, change):
    x, y = x_grid(20)
    g, h = Toy(0), Toy(1)
    kw = dict(eps=0.1, steps=1, attacks=("pgd_ce",), batch_size=20, use_cache=True)
    first, = evaluate.tradeoff_curve(g, h, [0.5], ["prob"], x, y, **kw)
    path, = cache.glob("*.json")  # one attack on every image: one entry of 20 per-image outcomes
    doc = json.loads(path.read_text())
    good = doc["correct"]
    doc["correct"] = {"short": good[:-2], "long": good + [True, True], "not a list": "ff"}[change]
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="adasmooth.attack_cache"):
        again, = evaluate.tradeoff_curve(g, h, [0.5], ["prob"], x, y, **kw)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = {"short": "holds 18 values, expected 20", "long": "holds 22 values, expected 20",
                "not a list": "TypeError"}[change]
    assert any(str(path) in m and expected in m and "recomputed" in m for m in warned), warned
    assert again["cached"] is False and attack_cache.stats["computed"] == 2
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in first.items() if k != "seconds"}
    assert json.loads(path.read_text())["correct"] == good  # rewritten
    # the rewritten entry is read back
    assert evaluate.tradeoff_curve(g, h, [0.5], ["prob"], x, y, **kw)[0]["cached"] is True


def test_unreadable_per_image_values_are_named_and_recomputed(cache, caplog):
    mask = torch.tensor([True, False, True])
    attack_cache.cached_values("vals", lambda: mask, True)
    path = cache / "vals.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "correct": ["yes", "no", "yes"]}))
    with caplog.at_level(logging.WARNING, logger="adasmooth.attack_cache"):
        values, _, hit = attack_cache.cached_values("vals", lambda: mask, True)
    assert not hit and torch.equal(values, mask)
    assert any(str(path) in r.getMessage() and "recomputed" in r.getMessage() for r in caplog.records)
    assert json.loads(path.read_text())["correct"] == [True, False, True]


def test_unpack_refuses_masks_of_another_length():
    m = torch.rand(20, generator=torch.Generator().manual_seed(0)) > 0.5
    packed = attack_cache.pack(m)
    assert torch.equal(attack_cache.unpack(packed, 20), m) and torch.equal(attack_cache.unpack(packed, 17), m[:17])
    with pytest.raises(ValueError, match="packed mask holds 16 values, expected 20"):
        attack_cache.unpack(packed[:-2], 20)
    with pytest.raises(ValueError, match="packed mask holds 32 values, expected 20"):
        attack_cache.unpack(packed + "00", 20)


# ---- row 13: construction types, input shape and dtype -------------------------------------------
def test_g_h_and_the_mixing_network_must_be_modules():
    g, h = Toy(0), Toy(1)
    with pytest.raises(ValueError, match=r"g must be a torch.nn.Module \(the accurate model\), got NoneType"):
        MixedClassifier(None, h, 0.5)
    with pytest.raises(ValueError, match=r"h must be a torch.nn.Module \(the robust model\), got function"):
        MixedClassifier(g, lambda x: x, 0.5)
    a, b = cnn(0), cnn(1)
    with pytest.raises(ValueError, match=r"g must be a torch.nn.Module \(the accurate model\), got NoneType"):
        AdaptiveMixedClassifier(None, b, for_models(a, b, width=4))
    with pytest.raises(ValueError, match=r"net must be a torch.nn.Module \(the mixing network\), got str"):
        AdaptiveMixedClassifier(a, b, "net")


@pytest.mark.parametrize("bad", [True, False, np.bool_(True), torch.tensor(True), torch.tensor([True, False])])
def test_alpha_refuses_bools(bad):
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\] or a tensor of such, not a bool"):
        MixedClassifier(Toy(0), Toy(1), bad)
    with pytest.raises(ValueError, match="not a bool"):
        MixedClassifier(Toy(0), Toy(1), 0.5)(x_toy(2), alpha=bad)
    for ok in (0, 1, 0.5, np.float32(0.25), torch.tensor(0.5), torch.tensor([0.0, 1.0])):  # numbers still pass
        assert MixedClassifier(Toy(0), Toy(1), ok).alpha is ok


def test_x_of_the_wrong_height_and_width_is_named_against_the_model():
    g, h = cnn(0), cnn(1)
    x = torch.rand(2, 1, 12, 12)
    want = r"x must have shape \(N, 1, 8, 8\) for this model, got \(2, 1, 12, 12\)"
    with pytest.raises(ValueError, match=want):
        MixedClassifier(g, h, 0.5)(x)
    with pytest.raises(ValueError, match=want):
        g(x)
    with pytest.raises(ValueError, match=want):
        AdaptiveMixedClassifier(g, h, for_models(g, h, width=4)).eval()(x)
    assert MixedClassifier(g, h, 0.5).input_size == (8, 8) and g.input_size == (8, 8)
    with pytest.raises(ValueError, match=r"h must take inputs of g's height and width: g takes \(8, 8\), h takes "
                                         r"\(12, 12\)"):
        MixedClassifier(g, cnn(1, side=12), 0.5)
    # a module that declares no size: torch's "mat1 and mat2" error comes back naming the model and x
    with pytest.raises(ValueError, match=r"g \(Toy\) cannot take x of shape \(2, 1, 5, 5\) and dtype torch.float32"):
        MixedClassifier(Toy(0), Toy(1), 0.5)(torch.rand(2, 1, 5, 5))


def test_x_of_another_dtype_is_named_against_the_parameters():
    g, h = cnn(0), cnn(1)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x must have dtype torch.float32 \(the dtype of g's parameters\), got "
                                         r"torch.float64"):
        MixedClassifier(g, h, 0.5)(x)
    with pytest.raises(ValueError, match=r"x must have dtype torch.float32 \(the dtype of SmallCNN's parameters\)"):
        g(x)
    with pytest.raises(ValueError, match=r"x must have dtype torch.float32 \(the dtype of SmallCNN's parameters\)"):
        AdaptiveMixedClassifier(g, h, for_models(g, h, width=4)).eval()(x)
    with pytest.raises(ValueError, match=r"x must have dtype torch.float64 \(the dtype of g's parameters\), got "
                                         r"torch.float32"):
        MixedClassifier(Toy(0), Toy(1), 0.5).double()(x_toy(2))
    out = MixedClassifier(g.double(), h.double(), 0.5)(x)  # matching dtypes run
    assert out.dtype == torch.float64 and out.shape == (2, 10)
