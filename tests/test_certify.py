"""Certified radii of the mixed classifier (Lemma 1, Theorems 1-3) and randomized smoothing."""
import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import beta as beta_dist
from scipy.stats import binomtest, norm

from adasmooth import certify as C
from adasmooth.attacks import pgd
from adasmooth.mixing import mix_log_probs

PHI_INV = NormalDist().inv_cdf


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- models with exactly known certificates ---------------------------------------------------
class IntervalSmoothed(nn.Module):
    """The exact Gaussian smoothing of the base classifier "class k iff t ∈ [c_k, c_{k+1})",
    t = u·(x - 1/2):  h_k(x) = Φ((c_{k+1} - t)/σ) - Φ((c_k - t)/σ).  Returns log h (usable as logits)."""

    def __init__(self, u, cuts, sigma):
        super().__init__()
        self.u, self.sigma = u, sigma
        inf = torch.tensor([math.inf], dtype=u.dtype)
        self.edges = torch.cat([-inf, torch.as_tensor(cuts, dtype=u.dtype), inf])

    def t(self, x):
        return (x - 0.5).flatten(1) @ self.u

    def probs(self, x):
        cdf = torch.special.ndtr((self.edges[None, :] - self.t(x)[:, None]) / self.sigma)
        return (cdf[:, 1:] - cdf[:, :-1]).clamp_min(0)

    def forward(self, x):
        return self.probs(x).clamp_min(1e-300).log()

    def base(self, x):
        """The unsmoothed classifier, as one-hot logits."""
        k = torch.bucketize(self.t(x), self.edges[1:-1].to(x.dtype), right=True)
        return F.one_hot(k, len(self.edges) - 1).to(x.dtype)


class LinearSoftmax(nn.Module):
    """h(x) = softmax(Wx + b): each h_i is ℓ2-Lipschitz with constant (√2/4)·‖W‖₂, since
    ‖∇_z softmax_i‖₂ = p_i‖e_i - p‖₂ ≤ √2·p_i(1 - p_i) ≤ √2/4."""

    def __init__(self, W, b):
        super().__init__()
        self.W, self.b = W, b
        self.lip = math.sqrt(2) / 4 * torch.linalg.matrix_norm(W, 2).item()

    def probs(self, x):
        return F.softmax(self.forward(x), 1)

    def forward(self, x):
        return x.flatten(1) @ self.W.T + self.b


def worst_g(h_model):
    """The g that Lemma 1 must survive: all its mass on h's runner-up at the same point."""
    def g(x):
        return runner_up_logits(h_model.probs(x))
    return g


def runner_up_logits(p):
    """Logits whose softmax is (to 1e-400) the one-hot of each row's runner-up class."""
    runner_up = p.scatter(1, p.argmax(1, keepdim=True), -1.0).argmax(1)
    return 1e3 * F.one_hot(runner_up, p.shape[1]).to(p.dtype)


def mixed(g, h_model, alpha):
    return lambda x: mix_log_probs(F.log_softmax(g(x), 1), h_model.probs(x).clamp_min(1e-300).log(), alpha)


def interval_model(sigma=0.25, d=16):
    u = torch.full((d,), 1.0 / math.sqrt(d), dtype=torch.float64)
    return IntervalSmoothed(u, [-0.7, 0.0, 0.7], sigma)


def interval_inputs(n, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 - 1) * 1.6
    x = 0.5 + s / math.sqrt(d) + 0.03 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.clamp(0, 1)


# ---- formulas against hand-computed values ----------------------------------------------------
P = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]], dtype=torch.float64)


def test_margin_and_lemma1_test():
    assert C.required_margin(1.0) == 0.0
    assert C.required_margin(0.5) == 1.0
    assert C.required_margin(0.8) == pytest.approx(0.25)
    assert C.required_margin(0.0) == math.inf
    # margins of P: 0.5 and 0.1; μ(0.8) = 0.25
    assert C.has_margin(P, 0.25).tolist() == [True, False]
    assert C.lemma1_certified(P, 0.8).tolist() == [True, False]
    assert C.lemma1_certified(P, 1.0).tolist() == [True, True]
    assert C.lemma1_certified(torch.tensor([[1.0, 0.0]]), 0.49).tolist() == [False]


def test_lemma1_holds_against_the_worst_g():
    gen = torch.Generator().manual_seed(0)
    h = torch.softmax(3 * torch.randn(5000, 10, generator=gen, dtype=torch.float64), 1)
    alpha = torch.rand(5000, generator=gen, dtype=torch.float64)
    g_logits = runner_up_logits(h)  # all of g's mass on h's runner-up
    pred = mix_log_probs(F.log_softmax(g_logits, 1), h.log(), alpha).argmax(1)
    ok = C.lemma1_certified(h, alpha)
    assert ok.sum() > 500
    assert (pred[ok] == h.argmax(1)[ok]).all()
    # and the margin is tight: with α ≥ 1/2 and a margin clearly below μ this g flips the prediction
    short = (alpha >= 0.5) & ~C.has_margin(h, C.required_margin(alpha) - 1e-3)
    assert short.sum() > 100 and (pred[short] != h.argmax(1)[short]).all()


def test_lipschitz_radius_hand_values():
    r = C.lipschitz_radius(P, 1.0, 1.0)
    assert r.tolist() == pytest.approx([(0.7 - 0.2) / 2, (0.5 - 0.4) / 2])
    r = C.lipschitz_radius(P, 0.76, 1.0)
    assert r.tolist() == pytest.approx([(0.76 * 0.5 - 0.24) / (0.76 * 2), 0.0])  # row 2: numerator < 0
    # per-class constants: the minimum is over all i ≠ y, not only the runner-up
    r = C.lipschitz_radius(P[:1], 1.0, torch.tensor([1.0, 2.0, 4.0]))
    assert r.item() == pytest.approx(min(0.5 / 3, 0.6 / 5))
    # per-sample α
    r = C.lipschitz_radius(P, torch.tensor([1.0, 0.9]), 2.0)
    assert r.tolist() == pytest.approx([0.5 / 4, max(0.0, (0.9 * 0.1 - 0.1) / (0.9 * 4))])


def test_rs_radius_hand_values():
    r = C.rs_radius(P, 1.0, 0.5)
    assert r[0].item() == pytest.approx(0.25 * (PHI_INV(0.7) - PHI_INV(0.2)))
    assert r[1].item() == pytest.approx(0.25 * (PHI_INV(0.5) - PHI_INV(0.4)))
    r = C.rs_radius(P, 0.76, 0.5)
    assert r[0].item() == pytest.approx(0.25 * (PHI_INV(0.76 * 0.7) - PHI_INV(0.76 * 0.2 + 0.24)))
    assert r[1].item() == 0.0
    # all votes for one class: Φ⁻¹(1) = ∞ at α = 1, finite (σ/2)(Φ⁻¹(α) - Φ⁻¹(1-α)) = σΦ⁻¹(α) below
    assert C.rs_radius([[1.0, 0.0, 0.0]], 1.0, 0.5).item() == math.inf
    assert C.rs_radius([[1.0, 0.0, 0.0]], 0.8, 0.5).item() == pytest.approx(0.5 * PHI_INV(0.8))


def test_rs_radius_at_alpha_one_is_cohens():
    gen = torch.Generator().manual_seed(1)
    p = torch.softmax(2 * torch.randn(200, 10, generator=gen, dtype=torch.float64), 1)
    top = p.topk(2, 1).values.numpy()
    for sigma in (0.12, 0.5, 1.0):
        cohen = sigma / 2 * (norm.ppf(top[:, 0]) - norm.ppf(top[:, 1]))
        np.testing.assert_allclose(C.rs_radius(p, 1.0, sigma).numpy(), np.maximum(cohen, 0), rtol=1e-10, atol=1e-12)
    # two classes: p_B = 1 - p_A gives CERTIFY's σ·Φ⁻¹(p_A)
    pa = torch.tensor([0.6, 0.9, 0.999], dtype=torch.float64)
    r = C.rs_radius(torch.stack([pa, 1 - pa], 1), 1.0, 0.25)
    np.testing.assert_allclose(r.numpy(), 0.25 * norm.ppf(pa.numpy()), rtol=1e-9)


def test_radii_grow_with_alpha_and_vanish_below_one_half():
    gen = torch.Generator().manual_seed(2)
    p = torch.softmax(3 * torch.randn(300, 10, generator=gen, dtype=torch.float64), 1)
    alphas = np.linspace(0, 1, 41)
    lip = np.stack([C.lipschitz_radius(p, a, 1.3).numpy() for a in alphas])
    rs = np.stack([C.rs_radius(p, a, 0.5).numpy() for a in alphas])
    for r in (lip, rs):
        assert (np.diff(r, axis=0) >= -1e-12).all()
        assert (r[alphas < 0.5] == 0).all()
        assert (r[-1] > 0).mean() > 0.9
    sure = torch.tensor([[0.999, 0.001, 0.0]], dtype=torch.float64)
    for a in (0.0, 0.2, 0.499):
        assert C.lipschitz_radius(sure, a, 1.0).item() == 0.0
        assert C.rs_radius(sure, a, 1.0).item() == 0.0


def test_bad_inputs_raise():
    for a in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            C.lipschitz_radius(P, a, 1.0)
        with pytest.raises(ValueError, match="alpha"):
            C.rs_radius(P, a, 1.0)
        with pytest.raises(ValueError, match="alpha"):
            C.lemma1_certified(P, a)
    for bad in ([[1.2, -0.2]], [[0.5, float("nan")]], [[-0.1, 0.3]]):
        with pytest.raises(ValueError, match="probs_h"):
            C.rs_radius(bad, 1.0, 1.0)
        with pytest.raises(ValueError, match="probs_h"):
            C.lipschitz_radius(bad, 1.0, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        C.rs_radius(P, 1.0, 0.0)
    with pytest.raises(ValueError, match="lip"):
        C.lipschitz_radius(P, 1.0, torch.ones(4))
    with pytest.raises(ValueError, match="lip"):
        C.lipschitz_radius(P, 1.0, -1.0)
    with pytest.raises(ValueError, match="alpha"):
        C.rs_radius(P, torch.tensor([1.0, 1.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="probs_h"):
        C.rs_radius(torch.ones(3, 1), 1.0, 1.0)


# ---- empirical soundness ----------------------------------------------------------------------
def _violations(h_model, x, alpha, radius, seed):
    """Random (on the sphere of radius r) and PGD (ℓ2 ball of radius r) perturbations of the
    certified inputs: (checked points, violations, PGD flips at 4·r)."""
    keep = radius > 0
    x, r = x[keep], radius[keep]
    g = worst_g(h_model)
    mix = mixed(g, h_model, alpha)
    y = h_model.probs(x).argmax(1)
    assert (mix(x).argmax(1) == y).all()
    gen = torch.Generator().manual_seed(seed)
    checked = violations = 0
    for _ in range(2):
        v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        xr = x + v / v.norm(dim=1, keepdim=True) * r[:, None]
        violations += (mix(xr).argmax(1) != y).sum().item()
        checked += len(x)
    adv = pgd(mix, x, y, eps=r, steps=30, norm="l2", step_size=r / 6, loss="margin", seed=seed)
    assert ((adv - x).norm(dim=1) <= r * (1 + 1e-9)).all()
    violations += (mix(adv).argmax(1) != y).sum().item()
    checked += len(x)
    far = pgd(mix, x, y, eps=4 * r, steps=30, norm="l2", step_size=4 * r / 6, loss="margin", seed=seed)
    return checked, violations, (mix(far).argmax(1) != y).sum().item()


@pytest.mark.parametrize("theorem", ["lip", "rs"])
def test_certified_radius_is_never_broken_on_an_exactly_smoothed_model(theorem):
    sigma = 0.25
    h = interval_model(sigma)
    x = interval_inputs(600, seed=3)
    p = h.probs(x)
    total = bad = flips = 0
    for alpha in (1.0, 0.76, 0.6):
        if theorem == "lip":
            r = C.lipschitz_radius(p, alpha, C.smoothed_lipschitz(sigma))
        else:
            r = C.rs_radius(p, alpha, sigma)
        n, v, f = _violations(h, x, alpha, r, seed=int(alpha * 100))
        total, bad, flips = total + n, bad + v, flips + f
    assert total >= 1000
    assert bad == 0, f"{bad} of {total} perturbations inside the certified radius changed the mixed prediction"
    assert flips > 0  # the attack does find changes outside the certificate


def test_lipschitz_radius_is_never_broken_on_a_linear_softmax_model():
    gen = torch.Generator().manual_seed(4)
    d, c = 20, 5
    h = LinearSoftmax(torch.randn(c, d, generator=gen, dtype=torch.float64) * 0.8,
                      torch.randn(c, generator=gen, dtype=torch.float64))
    x = torch.rand(800, d, generator=gen, dtype=torch.float64)
    total = bad = 0
    for alpha in (1.0, 0.8):
        r = C.lipschitz_radius(h.probs(x), alpha, h.lip)
        n, v, _ = _violations(h, x, alpha, r, seed=5)
        total, bad = total + n, bad + v
    assert total >= 1000 and bad == 0


# ---- Theorem 3 --------------------------------------------------------------------------------
def test_oracle_alpha_is_right_wherever_g_or_h_is():
    gen = torch.Generator().manual_seed(6)
    d, c, n = 12, 4, 400
    g = LinearSoftmax(torch.randn(c, d, generator=gen), torch.zeros(c))
    h = LinearSoftmax(torch.randn(c, d, generator=gen) * 0.3, torch.zeros(c))
    x = torch.rand(n, d, generator=gen)
    y = torch.randint(0, c, (n,), generator=gen)
    zg = g(x)
    assert C.oracle_alpha(zg, y).tolist() == (zg.argmax(1) != y).float().tolist()
    inputs = {"clean": x,
              "pgd-g": pgd(g, x, y, eps=0.5, steps=10, norm="l2", seed=0),
              "pgd-h": pgd(h, x, y, eps=0.5, steps=10, norm="l2", seed=0)}
    res = C.theorem3_accuracy(g, h, inputs, y, batch_size=128)
    for name, xs in inputs.items():
        ok = C.oracle_correct(g(xs), h(xs), y)
        assert torch.equal(ok["oracle"], ok["g"] | ok["h"])
        acc = res["per_set"][name]
        assert acc["oracle"] >= max(acc["g"], acc["h"]) and acc["violations"] == 0
        assert acc["oracle"] == ok["oracle"].sum().item() / n
    assert res["per_set"]["pgd-g"]["g"] < res["per_set"]["clean"]["g"]  # the attack bites
    assert res["oracle"] >= max(res["g"], res["h"])
    assert res["oracle"] > max(res["g"], res["h"])  # strictly better on this data


# ---- randomized smoothing ---------------------------------------------------------------------
def test_clopper_pearson_matches_scipy_and_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    n, failure_prob = 1000, 0.001
    k = np.array([0, 1, 3, 500, 731, 999, 1000])
    lo = C.lower_confidence_bound(k, n, failure_prob)
    np.testing.assert_allclose(lo[1:], beta_dist.ppf(failure_prob, k[1:], n - k[1:] + 1), rtol=1e-12)
    assert lo[0] == 0.0 and lo[-1] == pytest.approx(failure_prob ** (1 / n), rel=1e-12)
    for ki, li in zip(k, lo):
        assert li == pytest.approx(proportion_confint(ki, n, alpha=2 * failure_prob, method="beta")[0], abs=1e-12)
        assert li == pytest.approx(binomtest(int(ki), n, alternative="greater")
                                   .proportion_ci(1 - failure_prob, method="exact").low, abs=1e-12)


def test_smoothed_probabilities_match_the_exact_smoothing():
    sigma = 0.25
    h = interval_model(sigma)
    x = interval_inputs(12, seed=7)
    sm = C.Smooth(h.base, 4, sigma, device="cpu")
    n = 4000
    est = sm.probabilities(x, n, batch_size=3000, seed=0)
    exact = h.probs(x)
    assert est.shape == (12, 4) and torch.allclose(est.sum(1), torch.ones(12, dtype=torch.float64))
    assert ((est - exact).abs() <= 5 * (exact * (1 - exact) / n).sqrt() + 1e-3).all()
    assert torch.equal(est, sm.probabilities(x, n, batch_size=3000, seed=0))
    assert not torch.equal(est, sm.probabilities(x, n, batch_size=3000, seed=1))
    counts = sm.sample(x, 50, batch_size=16, seed=0)  # draws split across forward passes
    assert counts.dtype == torch.int64 and (counts.sum(1) == 50).all()
    soft = sm.probabilities(x, 64, batch_size=100, soft=True, seed=0)
    assert torch.allclose(soft.sum(1), torch.ones(12, dtype=torch.float64))
    assert C.smoothed_lipschitz(0.5) == pytest.approx(math.sqrt(2 / math.pi) / 0.5)


def test_certify_and_predict_hand_cases():
    sigma, n, failure_prob = 0.5, 500, 0.001

    def constant(x):  # always class 2
        return F.one_hot(torch.full((x.shape[0],), 2), 3).float()

    def coin(x):  # class 0 or 1 with probability 1/2 each (x is all zeros)
        return F.one_hot((x.flatten(1).sum(1) > 0).long(), 3).float()

    x = torch.zeros(5, 1, 4, 4)
    pred, rad = C.Smooth(constant, 3, sigma, device="cpu").certify(x, 50, n, failure_prob, batch_size=256)
    assert pred.tolist() == [2] * 5
    np.testing.assert_allclose(rad.numpy(), sigma * PHI_INV(failure_prob ** (1 / n)), rtol=1e-9)
    assert C.Smooth(constant, 3, sigma, device="cpu").predict(x, 100, failure_prob).tolist() == [2] * 5
    sm = C.Smooth(coin, 3, sigma, device="cpu")
    pred, rad = sm.certify(x, 50, n, failure_prob, batch_size=256)
    assert pred.tolist() == [C.ABSTAIN] * 5 and rad.tolist() == [0.0] * 5
    assert sm.predict(x, n, failure_prob, batch_size=256).tolist() == [C.ABSTAIN] * 5
    with pytest.raises(ValueError, match="sigma"):
        C.Smooth(constant, 3, 0.0)
    with pytest.raises(ValueError, match=r"failure_prob .* must lie in \(0, 1\)"):
        sm.certify(x, 10, 10, 1.5)


def test_certify_on_a_tiny_gaussian_model(tiny_zoo, test_batch):
    x, y = test_batch[0][::20], test_batch[1][::20]  # 10 images, one per class
    sigma, n, failure_prob = 0.25, 100, 0.001
    sm = C.Smooth(tiny_zoo("fmnist-gauss-0.25"), 10, sigma, device="cpu")
    pred, rad = sm.certify(x, 32, n, failure_prob, batch_size=1000, seed=0)
    assert pred.shape == rad.shape == (10,)
    assert ((pred == C.ABSTAIN) == (rad == 0)).all()
    assert (rad <= sigma * PHI_INV(failure_prob ** (1 / n)) + 1e-12).all()
    assert (pred == y).float().mean() >= 0.5
    assert torch.equal(sm.sample(x, 20, seed=3), sm.sample(x, 20, seed=3))
    # the Clopper-Pearson radius stays below the plug-in Theorem 2 radius at α = 1 (up to sampling)
    p = sm.probabilities(x, 300, batch_size=1000, seed=1)
    plug = C.rs_radius(p, 1.0, sigma)
    certified = pred != C.ABSTAIN
    assert (rad[certified] <= plug[certified] + 0.1).all()


# ---- curves -----------------------------------------------------------------------------------
def test_certified_accuracy_hand_values():
    radii = torch.tensor([0.0, 0.1, 0.3, 0.5, 2.0])
    correct = torch.tensor([True, True, False, True, True])
    acc = C.certified_accuracy(radii, correct, [0.0, 0.1, 0.25, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(acc, [3 / 5, 3 / 5, 2 / 5, 2 / 5, 1 / 5, 0.0])
    with pytest.raises(ValueError, match="radii"):
        C.certified_accuracy(radii, correct[:3], [0.0])


def test_mixed_accuracy_and_alpha_matching():
    y = torch.tensor([0, 1, 2, 0])
    g = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.0, 0.1, 0.9], [0.2, 0.8, 0.0]], dtype=torch.float64)
    h = torch.tensor([[0.2, 0.8, 0.0], [0.1, 0.5, 0.4], [0.0, 0.6, 0.4], [0.6, 0.4, 0.0]], dtype=torch.float64)
    assert C.mixed_accuracy(g, h, y, 0.0) == 0.75
    assert C.mixed_accuracy(g, h, y, 1.0) == 0.5
    # α = 0.5: mean of g and h -> [0.55, 0.45, 0], [.1, .65, .25], [0, .35, .65], [.4, .6, 0] -> 3/4 right
    assert C.mixed_accuracy(g, h, y, 0.5) == 0.75
    a, acc = C.match_alpha(g, h, y, 0.75)
    assert acc == 0.75
    # accuracy is 3/4 on [0, 4/7] and on (3/4, 4/5) (row 4 turns right at α > 3/4, row 3 wrong at
    # α > 4/5) and 1/2 elsewhere: the largest matching α lies just below 4/5
    assert 0.75 < a <= 0.8
    res = C.mixed_certificates(g, h, y, 1.0, sigma=0.5)
    assert res["h_correct"].tolist() == [False, True, False, True]
    assert res["rs"][0] == 0 and res["rs"][1] > 0 and res["lip"][2] == 0


def test_plot_has_both_panels(tmp_path):
    grid = np.linspace(0, 1, 11)
    curves = {"h^α": np.linspace(0.8, 0.1, 11), "baseline": np.linspace(0.7, 0.2, 11)}
    path = tmp_path / "sm1.png"
    fig = C.plot_certified_accuracy(grid, curves, curves, clean={"h^α": 0.85}, path=path)
    assert [ax.get_title() for ax in fig.axes] == ["Lip-based (Theorem 1)", "RS-based (Theorem 2)"]
    assert path.read_bytes()[:4] == b"\x89PNG"


# ---- confidence-bounded certificates from Monte-Carlo votes ----------------------------------
def test_bounded_probs_are_clopper_pearson_and_give_finite_radii():
    n = 1000
    votes = torch.tensor([[1000, 0, 0], [900, 60, 40], [400, 350, 250]], dtype=torch.float64) / n
    b = C.bounded_probs(votes, n, 0.001)
    lo = beta_dist.ppf(0.001, [1000, 900, 400], [1, 101, 601])
    np.testing.assert_allclose(b.max(1).values.numpy(), [lo[0], lo[1], max(lo[2], 1 - lo[2])], rtol=1e-12)
    np.testing.assert_allclose(b.sum(1).numpy(), 1.0, rtol=1e-12)
    assert b[1, 0] == pytest.approx(lo[1]) and b[1, 1] == pytest.approx(1 - lo[1]) and b[1, 2] == 0
    # at α = 1 Theorem 2 on the bounded rows is Cohen's σΦ⁻¹(p̲_A): finite even for a unanimous vote
    r = C.rs_radius(b[:2], 1.0, 0.5)
    np.testing.assert_allclose(r.numpy(), 0.5 * norm.ppf(lo[:2]), rtol=1e-9)
    assert C.rs_radius(votes[:1], 1.0, 0.5).item() == math.inf
    with pytest.raises(ValueError, match="n "):
        C.bounded_probs(votes, 0)


def test_mixed_certificates_with_votes_match_cohen_certify_and_never_exceed_plug_in():
    n = 500
    rng = np.random.default_rng(0)
    k = rng.integers(200, n + 1, size=200)
    votes = np.zeros((200, 10))
    votes[:, 3] = k
    votes[:, 5] = n - k
    ph = torch.tensor(votes / n)
    pg = torch.full((200, 10), 0.1, dtype=torch.float64)
    y = torch.full((200,), 3)
    for alpha in (1.0, 0.9, 0.76):
        plug = C.mixed_certificates(pg, ph, y, alpha, 0.25)
        bnd = C.mixed_certificates(pg, ph, y, alpha, 0.25, n=n)
        assert torch.isfinite(bnd["rs"]).all() and torch.isfinite(bnd["lip"]).all()
        assert (bnd["rs"] <= plug["rs"] + 1e-12).all() and (bnd["lip"] <= plug["lip"] + 1e-12).all()
        assert (bnd["rs"] > 0).any()
        if alpha == 1.0:
            lo = C.lower_confidence_bound(k, n, 0.001)
            cohen = np.where(lo > 0.5, 0.25 * norm.ppf(np.clip(lo, 0.5, None)), 0.0)
            np.testing.assert_allclose(bnd["rs"].numpy(), cohen, rtol=1e-9, atol=1e-12)
    assert torch.isinf(C.mixed_certificates(pg, ph, y, 1.0, 0.25)["rs"]).any()  # k = n: plug-in radius ∞


# ---- Fig. SM1 read off the curves: crossing, largest certified radii, the table's radii, the x range ------
def sm1_certificates():
    """Two models on 4 images: h^α certifies 0.1, 0.3, 0.4 (one wrong), the baseline 0.2, 0.2, 0.25, 0.25."""
    def t(v):
        return torch.tensor(v, dtype=torch.float64) if isinstance(v[0], float) else torch.tensor(v)

    mix = {"lip": t([0.1, 0.3, 0.4, 0.9]), "rs": t([0.2, 0.5, 0.6, 0.9]), "h_correct": t([True, True, True, False]),
           "clean": 0.75}
    base = {"lip": t([0.2, 0.2, 0.25, 0.25]), "rs": t([0.3, 0.3, 0.7, 0.7]), "h_correct": t([True] * 4),
            "clean": 1.0}
    return {"h^α": mix, "baseline": base}


def test_key_radii_crossing_largest_and_table_radii():
    grid = np.round(np.linspace(0, 2, 201), 6)
    cert = sm1_certificates()
    curves = {b: {k: C.certified_accuracy(c[b], c["h_correct"], grid) for k, c in cert.items()} for b in ("lip", "rs")}
    key = C.key_radii(grid, curves, "h^α", "baseline")
    # Lipschitz: the baseline (1.0 up to 0.2) above h^α (0.75 → 0.5 past 0.1) until 0.25, then h^α alone
    assert key["lip"]["crossing"] == pytest.approx(0.26)
    assert key["lip"]["largest"] == {"h^α": pytest.approx(0.4), "baseline": pytest.approx(0.25)}
    assert key["rs"]["crossing"] is None and key["rs"]["largest"]["baseline"] == pytest.approx(0.7)
    assert not any(key["rs"]["beyond"].values())
    assert C.crossing_radius([0, 1, 2], [1, 1, 0], [1, 0.5, 0]) is None  # never below, so no crossing
    assert C.largest_certified_radius([0, 1, 2], [1, 1, 1]) == (2.0, True)  # still positive at the grid's end
    radii = C.table_radii([0.0, 0.25, 0.5, 1.0], key)
    assert radii == [0.0, 0.25, 0.26, 0.4, 0.5, 0.6, 0.7, 1.0]
    tab = C.radii_table(cert, key, [0.0, 0.25, 0.5, 1.0])
    assert tab["columns"][:5] == ["model", "bound", "clean %", "largest certified r", "crossing r (h^α over baseline)"]
    assert tab["columns"][5:] == [f"r = {r:g}" for r in radii]
    rows = {(r[0], r[1]): r for r in tab["rows"]}
    assert rows[("h^α", "lip")][3:5] == ["0.4", "0.26"] and rows[("baseline", "rs")][3:5] == ["0.7", "–"]
    at = dict(zip(tab["columns"][5:], rows[("h^α", "lip")][5:]))
    assert at["r = 0.4"] == 25.0 and at["r = 0.5"] == 0.0 and at["r = 0.26"] == 50.0  # the end and the crossing
    m = C.key_metrics(key, "h^α", "baseline")
    assert m["crossing_rs"] is None and m["largest_lip_baseline"] == pytest.approx(0.25)
    # the x range ends a little beyond the largest certified radius (0.7), not at the grid's end (2.0)
    x_max = C.fitted_x_max(grid, curves["lip"], curves["rs"])
    assert 0.7 < x_max <= 0.85
    assert C.fitted_x_max(grid, {"a": np.zeros(len(grid))}) == 2.0
    fig = C.plot_certified_accuracy(grid, curves["lip"], curves["rs"], key=key, n=4, title="t")
    assert [ax.get_xlim()[1] for ax in fig.axes] == [pytest.approx(x_max)] * 2
    assert any("crossing r = 0.26" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    low, high = C.curve_interval(curves["lip"]["h^α"][:3], 4)
    assert (low <= curves["lip"]["h^α"][:3]).all() and (high >= curves["lip"]["h^α"][:3]).all()
