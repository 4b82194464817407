"""MixedClassifier: the mixing formulas, the α ends, R(x) options, gradients and input checks."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import adasmooth
from adasmooth.mixing import SPACES, WEIGHTS, MixedClassifier, check_alpha, dual_norm_of, mix_log_probs

OPTIONS = [(s, r) for s in SPACES for r in WEIGHTS]


class Toy(nn.Module):
    """A smooth (tanh) classifier on (N, 1, 4, 4) inputs; ``scale`` multiplies its logits."""

    def __init__(self, seed, k=5, scale=1.0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, k))
        self.scale, self.num_classes, self.in_channels = scale, k, 1

    def forward(self, x):
        return self.scale * self.net(x)


class Permuted(nn.Module):
    """``model`` with its classes in another order: same max_j softmax, hence the same ‖∇ max_j‖."""

    def __init__(self, model):
        super().__init__()
        self.model, self.num_classes, self.in_channels = model, model.num_classes, model.in_channels

    def forward(self, x):
        return self.model(x).roll(1, dims=1)


def x_toy(n=6, seed=0, dtype=torch.float32):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def expected(g, h, x, alpha, space, log_t):
    """The paper's formula in float64: log(g + R·h) - log(1 + R), or (z_g + R·z_h)/(1 + R)."""
    zg, zh = g(x).double(), h(x).double()
    a = torch.as_tensor(alpha, dtype=torch.float64)
    R = (a / (1 - a) * log_t.double().exp())[:, None]
    if space == "prob":
        return torch.log(F.softmax(zg, 1) + R * F.softmax(zh, 1)) - torch.log1p(R)
    return (zg + R * zh) / (1 + R)


def manual_log_t(g, h, x, space, R, dual):
    """log T(x) computed one input at a time, outside the module."""
    out = []
    for xi in x:
        xi = xi[None].clone().requires_grad_(True)
        norms = []
        for m in ((g, h) if R == "grad_ratio" else (g,)):
            z = m(xi)
            s = (F.softmax(z, 1) if space == "prob" else z).max()
            (d,) = torch.autograd.grad(s, xi)
            norms.append(d.abs().sum() if dual == "l1" else d.norm())
        out.append(torch.log(norms[0]) - (torch.log(norms[1]) if len(norms) == 2 else 0))
    return torch.stack(out).detach()


@pytest.mark.parametrize("space,R", OPTIONS)
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, "per-sample"])
def test_finite_values_and_gradients_at_extreme_logits(space, R, alpha):
    g, h = Toy(0, scale=1e4), Toy(1, scale=1e4)
    x = x_toy(4).requires_grad_(True)
    a = torch.tensor([0.0, 0.3, 1.0, 0.9]) if alpha == "per-sample" else alpha
    mix = MixedClassifier(g, h, a, space=space, R=R)
    out = mix(x)
    assert out.shape == (4, 5)
    assert torch.isfinite(out).all()
    assert out.abs().max() > 1e3  # the logits really are extreme
    out[:, 0].sum().backward()
    assert torch.isfinite(x.grad).all()
    for p in list(g.parameters()) + list(h.parameters()):
        assert p.grad is None or torch.isfinite(p.grad).all()
    if space == "prob":  # a log-probability vector
        torch.testing.assert_close(torch.logsumexp(out, 1), torch.zeros(4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("space,R", OPTIONS)
def test_ends_are_g_and_h_exactly_on_the_embedded_default(space, R, g_model, h_model, test_batch):
    x = test_batch[0][:40]
    with torch.no_grad():
        lg, lh = F.log_softmax(g_model(x), 1), F.log_softmax(h_model(x), 1)
        for alpha, ref in ((0.0, lg), (1.0, lh)):
            out = MixedClassifier(g_model, h_model, alpha, space=space, R=R)(x)
            assert torch.equal(F.log_softmax(out, 1) if space == "logit" else out, ref)
    # per-sample α with 0 and 1 entries goes through the weighting path and gives the same ends
    a = torch.tensor([0.0, 1.0] * 20)
    out = MixedClassifier(g_model, h_model, a, space=space, R=R)(x).detach()
    ref = torch.where(a[:, None] == 0, lg, lh)
    torch.testing.assert_close(F.log_softmax(out, 1), ref, atol=1e-5, rtol=0)


def test_prob_mixing_is_the_log_of_the_mixed_probabilities():
    g, h, x = Toy(0, scale=3), Toy(1, scale=3), x_toy()
    for a in (0.2, 0.7, torch.tensor([0.1, 0.5, 0.9, 0.0, 1.0, 0.33])):
        out = MixedClassifier(g, h, a)(x)
        at = torch.as_tensor(a).reshape(-1, 1).double()
        ref = torch.log((1 - at) * F.softmax(g(x).double(), 1) + at * F.softmax(h(x).double(), 1))
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out, mix_log_probs(F.log_softmax(g(x), 1), F.log_softmax(h(x), 1), a))


def test_logit_mixing_is_the_weighted_sum_of_logits():
    g, h, x = Toy(0, scale=3), Toy(1, scale=3), x_toy()
    a = torch.tensor([0.1, 0.5, 0.9, 0.0, 1.0, 0.33])
    out = MixedClassifier(g, h, a, space="logit")(x)
    torch.testing.assert_close(out, (1 - a[:, None]) * g(x) + a[:, None] * h(x))
    out = MixedClassifier(g, h, 0.25, space="logit")(x)
    torch.testing.assert_close(out, 0.75 * g(x) + 0.25 * h(x))
    # prob and logit mixing are different functions
    assert not torch.allclose(F.log_softmax(out, 1), MixedClassifier(g, h, 0.25)(x), atol=1e-3)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("R", ["grad_g", "grad_ratio"])
@pytest.mark.parametrize("dual", ["l1", "l2"])
def test_gradient_weights_follow_the_paper_formula(space, R, dual):
    g, h, x = Toy(0, scale=2), Toy(1, scale=2), x_toy()
    mix = MixedClassifier(g, h, 0.6, space=space, R=R, dual_norm=dual)
    log_t = manual_log_t(g, h, x, space, R, dual)
    torch.testing.assert_close(mix.log_T(x), log_t, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mix(x).double(), expected(g, h, x, 0.6, space, log_t), atol=1e-4, rtol=1e-4)
    assert log_t.std() > 1e-3  # T really depends on x


def test_R_one_and_equal_gradient_norms_reduce_to_plain_mixing():
    g, x = Toy(0, scale=2), x_toy()
    h = Permuted(Toy(1, scale=2))
    ref = MixedClassifier(g, h, 0.6)(x)
    torch.testing.assert_close(MixedClassifier(g, h, 0.6, R="one")(x), ref)
    # h = g with permuted classes: ‖∇ max_j g_j‖ = ‖∇ max_j h_j‖, so T = 1 for the ratio
    hp = Permuted(g)
    torch.testing.assert_close(MixedClassifier(g, hp, 0.6, R="grad_ratio")(x),
                               MixedClassifier(g, hp, 0.6, R="one")(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("R", ["grad_g", "grad_ratio"])
def test_attacks_differentiate_through_R(space, R):
    g, h = Toy(0, scale=2).double(), Toy(1, scale=2).double()
    x = x_toy(2, dtype=torch.float64).requires_grad_(True)
    mix = MixedClassifier(g, h, 0.6, space=space, R=R, dual_norm="l2")
    # exact derivatives of the whole map, including ∂R/∂x (second derivatives of g and h)
    assert torch.autograd.gradcheck(mix, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    (full,) = torch.autograd.grad(mix(x)[:, 0].sum(), x)
    # the same output with R detached has another gradient
    log_t = mix.log_T(x).detach()
    w = torch.sigmoid(torch.logit(torch.tensor(0.6, dtype=torch.float64)) + log_t)
    if space == "prob":
        det = mix_log_probs(F.log_softmax(g(x), 1), F.log_softmax(h(x), 1), w)
    else:
        det = (1 - w[:, None]) * g(x) + w[:, None] * h(x)
    torch.testing.assert_close(det, mix(x))
    (part,) = torch.autograd.grad(det[:, 0].sum(), x)
    assert (full - part).abs().max() > 1e-3 * full.abs().max()


@pytest.mark.parametrize("R", WEIGHTS)
def test_no_grad_callers_get_the_same_values_without_a_graph(R):
    g, h, x = Toy(0, scale=2), Toy(1, scale=2), x_toy()
    mix = MixedClassifier(g, h, 0.4, R=R)
    with torch.no_grad():
        out = mix(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, mix(x).detach())


def test_bad_input_raises_value_errors_naming_the_parameter():
    g, h, x = Toy(0), Toy(1), x_toy()
    for bad in (1.5, -0.1, float("nan"), torch.tensor([0.2, 1.2])):
        with pytest.raises(ValueError, match="alpha"):
            MixedClassifier(g, h, bad)
    with pytest.raises(ValueError, match="alpha"):
        MixedClassifier(g, h, 0.5)(x, alpha=2.0)
    with pytest.raises(ValueError, match=r"alpha.*shape \(6,\)"):
        MixedClassifier(g, h, torch.full((5,), 0.5))(x)
    with pytest.raises(ValueError, match="h must have as many classes"):
        MixedClassifier(g, Toy(1, k=7), 0.5)
    anon = nn.Sequential(nn.Flatten(), nn.Linear(16, 7))  # no num_classes attribute: checked on the output
    with pytest.raises(ValueError, match="h must return as many classes"):
        MixedClassifier(g, anon, 0.5)(x)
    mix = MixedClassifier(g, h, 0.5)
    for bad_x in (torch.rand(6, 16), torch.rand(6, 3, 4, 4)):
        with pytest.raises(ValueError, match=r"x must have shape \(N, 1, H, W\)"):
            mix(bad_x)
    with pytest.raises(ValueError, match="space"):
        MixedClassifier(g, h, 0.5, space="softmax")
    with pytest.raises(ValueError, match="R must be one of"):
        MixedClassifier(g, h, 0.5, R="grad_h")
    with pytest.raises(ValueError, match="dual_norm"):
        MixedClassifier(g, h, 0.5, dual_norm="linf")
    with pytest.raises(ValueError, match="norm"):
        dual_norm_of("l1")
    assert dual_norm_of("linf") == "l1" and dual_norm_of("l2") == "l2"
    assert check_alpha(0.3) == 0.3


def test_exported_from_the_package_and_moves_with_its_models():
    assert adasmooth.MixedClassifier is MixedClassifier
    mix = MixedClassifier(Toy(0), Toy(1), 0.5).double()
    assert all(p.dtype == torch.float64 for p in mix.parameters())
    assert mix.num_classes == 5 and mix.in_channels == 1


def test_a_registered_mixer_reaches_curves_parameters_and_figures(g_model, h_model, test_batch):
    """Adding a constant-α mixer is one ``mixing.register`` call: trade-off curves, the notebook
    parameter domains and the figure legends then know it."""
    from adasmooth import domains, evaluate, mixing

    x, y = test_batch[0][:20], test_batch[1][:20]
    with pytest.raises(ValueError, match="mixer must be one of"):
        mixing.get("test_logit")
    with pytest.raises(ValueError, match="options must name"):
        evaluate.tradeoff_curve(g_model, h_model, [0.5], ["test_logit"], x, y, eps=0.1, steps=1, attacks=("pgd_ce",))
    mixing.register("test_logit", "logit", "one", "a test mixer")
    try:
        with pytest.raises(ValueError, match="already registered"):
            mixing.register("test_logit", "prob", "one", "again")
        kw = dict(eps=0.1, steps=1, attacks=("pgd_ce",), batch_size=20)
        new, = evaluate.tradeoff_curve(g_model, h_model, [0.5], ["test_logit"], x, y, **kw)
        ref, = evaluate.tradeoff_curve(g_model, h_model, [0.5], ["logit"], x, y, **kw)
        assert new["option"] == "test_logit" and (new["space"], new["R"]) == ("logit", "one")
        assert (new["clean"], new["attacked"]) == (ref["clean"], ref["attacked"])
        fig = evaluate.plot_tradeoff([new])
        assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a test mixer"]
        assert domains.options().ok(["test_logit", "prob"], {})
    finally:
        for d in (mixing.MIXERS, mixing.OPTIONS, mixing.LABELS):
            d.pop("test_logit", None)
    assert not domains.options().ok(["test_logit"], {})
