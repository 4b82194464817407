"""The mixing network α_θ: shapes for every zoo architecture, its BatchNorm head, α range, persistence."""
import pytest
import torch

from adasmooth import AdaptiveMixedClassifier, MixingNetwork, checkpoint, models
from adasmooth.mixing_net import CLAMP_STD, for_models, full_range

ARCHS = {
    "small_cnn": (dict(), (1, 28)),
    "preact_resnet18": (dict(), (3, 32)),
    "wrn": (dict(depth=10, width=1), (3, 32)),
    "convnext_t": (dict(resize=32), (3, 32)),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(arch, seed=0):
    torch.manual_seed(seed)
    kw, (c, side) = ARCHS[arch]
    return models.build(arch, **kw).eval(), models.build(arch, **kw).eval(), torch.rand(5, c, side, side)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_shapes_for_every_architecture(arch):
    g, h, x = _pair(arch)
    net = for_models(g, h, width=8)
    model = AdaptiveMixedClassifier(g, h, net).eval()
    with torch.no_grad():
        logp, alpha, gamma = model(x, return_alpha=True)
    assert logp.shape == (5, 10) and alpha.shape == (5,) and gamma.shape == (5,)
    # log-probabilities of a mixture: each row sums to 1 after exp
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(5))
    assert ((alpha > 0) & (alpha < 1)).all()
    torch.testing.assert_close(alpha, torch.sigmoid(gamma))


def test_different_architectures_for_g_and_h():
    g, _, x = _pair("preact_resnet18")
    h = models.build("wrn", depth=10, width=1).eval()
    net = for_models(g, h, width=8)
    assert net.g_taps == (64, 128) and net.h_taps == (16, 32)
    with torch.no_grad():
        assert AdaptiveMixedClassifier(g, h, net)(x).shape == (5, 10)


def test_tap_mismatch_is_rejected():
    g, h, x = _pair("small_cnn")
    net = MixingNetwork(g_taps=(16, 32), h_taps=(32, 64), width=8)
    with pytest.raises(ValueError, match="g_taps"):
        AdaptiveMixedClassifier(g, h, net)
    _, taps = g.forward_with_taps(x)
    with pytest.raises(ValueError, match="channels"):
        net(taps, taps)
    with pytest.raises(ValueError, match="g_taps"):
        MixingNetwork(g_taps=(32,), h_taps=(32, 64))


def test_batchnorm_head_has_no_affine_parameters():
    net = MixingNetwork(width=8)
    assert isinstance(net.bn, torch.nn.BatchNorm1d) and net.bn.num_features == 1
    assert not net.bn.affine and net.bn.weight is None and net.bn.bias is None
    assert net.bn.momentum == 0.01
    assert not any(name.startswith("bn.") for name, _ in net.named_parameters())
    # scale and shift are buffers (saved, not trained); training defaults (2, 0.4)
    assert "scale" not in dict(net.named_parameters())
    assert float(net.scale) == 2.0 and float(net.shift) == pytest.approx(0.4)
    assert net.linear.bias is None and net.linear.out_features == 1


def test_alpha_stays_inside_the_evaluation_range():
    g, h, x = _pair("small_cnn")
    net = for_models(g, h, width=8).set_alpha_range(0.8, 0.95)
    model = AdaptiveMixedClassifier(g, h, net).eval()
    with torch.no_grad():
        for shift in (-1000.0, -3.0, 0.0, 3.0, 1000.0):
            net.set_head(shift=shift)
            a = model(x, return_alpha=True)[1]
            assert ((a >= 0.8) & (a <= 0.95)).all()
            if abs(shift) < 10:
                assert ((a > 0.8) & (a < 0.95)).all()
        net.set_head(shift=1000.0)
        torch.testing.assert_close(model(x, return_alpha=True)[1], torch.full((5,), 0.95))
        # training-time attacks use the full (0, 1) range even in eval mode
        net.set_head(shift=0.0)
        with full_range(net):
            a_full, g_full = model(x, return_alpha=True)[1:]
        torch.testing.assert_close(a_full, torch.sigmoid(g_full))
        assert net.alpha_range == pytest.approx((0.8, 0.95))


def test_training_mode_uses_full_range_and_clamps_raw_gamma():
    g, h, x = _pair("small_cnn")
    net = for_models(g, h, width=8).set_alpha_range(0.8, 0.95)
    raw = torch.tensor([[-5.0], [0.0], [1.0], [2.0], [30.0]])
    net.raw_gamma = lambda *_: raw
    net.train()
    _, taps = g.forward_with_taps(x)
    alpha, gamma = net(taps, taps, return_gamma=True)
    m, s = raw.mean(), raw.std()
    clamped = raw.clamp(m - CLAMP_STD * s, m + CLAMP_STD * s).squeeze(1)
    z = (clamped - clamped.mean()) / torch.sqrt(clamped.var(unbiased=False) + net.bn.eps)
    torch.testing.assert_close(gamma, 2.0 * z + 0.4)
    torch.testing.assert_close(alpha, torch.sigmoid(2.0 * z + 0.4))
    assert alpha.min() < 0.8  # not the evaluation range


def test_invalid_head_settings_raise():
    net = MixingNetwork(width=8)
    for lo, hi in ((0.5, 0.4), (-0.1, 0.5), (0.2, 1.2)):
        with pytest.raises(ValueError, match="alpha_min"):
            net.set_alpha_range(lo, hi)
    with pytest.raises(ValueError, match="scale"):
        net.set_head(scale=0.0)
    with pytest.raises(ValueError, match="shift"):
        net.set_head(shift=float("nan"))


def test_save_and_reload_gives_identical_alpha(tmp_path):
    g, h, x = _pair("small_cnn")
    net = for_models(g, h, width=8)
    net.train()
    with torch.no_grad():
        for _ in range(3):  # move the BatchNorm running statistics away from (0, 1)
            net(*[g.forward_with_taps(torch.rand_like(x))[1]] * 2)
    net.set_head(scale=1.5, shift=-0.7).set_alpha_range(0.1, 0.6).eval()
    model = AdaptiveMixedClassifier(g, h, net)
    with torch.no_grad():
        a0 = model(x, return_alpha=True)[1]
    checkpoint.save(tmp_path / "mixnet-x", net.state_dict(), {"note": "test"})
    state, _ = checkpoint.load(tmp_path / "mixnet-x")
    torch.manual_seed(123)
    net2 = for_models(g, h, width=8)
    net2.load_state_dict(state)
    with torch.no_grad():
        a1 = AdaptiveMixedClassifier(g, h, net2.eval())(x, return_alpha=True)[1]
    assert torch.equal(a0, a1)
    assert float(net2.bn.running_mean) == float(net.bn.running_mean) != 0.0
    assert net2.alpha_range == pytest.approx((0.1, 0.6))


def test_straight_through_keeps_alpha_and_passes_a_gradient_through_a_saturated_sigmoid():
    from adasmooth.mixing_net import straight_through

    net = MixingNetwork(width=8).eval()
    z = torch.tensor([-40.0, 0.0, 40.0], requires_grad=True)  # saturated at both ends
    a, _ = net.alpha_from_normalized(z)
    (g_plain,) = torch.autograd.grad(a.sum(), z)
    with straight_through(net):
        a_st, _ = net.alpha_from_normalized(z)
        (g_st,) = torch.autograd.grad(a_st.sum(), z)
    assert torch.equal(a.detach(), a_st.detach())
    assert abs(float(g_plain[0])) < 1e-20 and abs(float(g_plain[2])) < 1e-20
    assert torch.allclose(g_st, torch.full_like(g_st, 0.25) * net.scale)
    assert not net._straight_through
