"""The 2-D toy problem of notebook 01 and its numerical checks of Lemma 1 and Theorems 1-3: the toy h
really satisfies the theorems' assumptions, the checks find no violation of the true radii, and they
do find violations when the radii are inflated (so a zero count means something)."""
import math

import pytest
import torch

from adasmooth import certify, theory


def test_smoothed_strips_match_monte_carlo_smoothing_of_the_hard_classifier():
    h = theory.SmoothedStrips(sigma=0.15)
    x, _ = theory.sample(20, seed=1)
    p = h.probs(x)
    torch.testing.assert_close(p.sum(1), torch.ones(20, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    pts = theory.as_points(x)
    noise = 0.15 * torch.randn(20, 20000, 2, generator=g, dtype=torch.float64)
    s = (pts[:, None, :] + noise) @ h.w
    hard = torch.stack([(s < h.t0), (s >= h.t0) & (s < h.t1), (s >= h.t1)], -1).double().mean(1)
    torch.testing.assert_close(p, hard, atol=0.015, rtol=0)


def test_toy_h_respects_its_lipschitz_constant():
    h = theory.SmoothedStrips(sigma=0.1)
    a, _ = theory.sample(500, seed=2)
    b, _ = theory.sample(500, seed=3)
    b = theory.as_images(theory.as_points(a) + 0.01 * (theory.as_points(b) - 0.5))
    dp = (h.probs(a) - h.probs(b)).abs().max(1).values
    dx = (theory.as_points(a) - theory.as_points(b)).norm(dim=1)
    assert (dp <= h.lipschitz * dx + 1e-12).all()
    assert h.lipschitz == pytest.approx(math.sqrt(2 / math.pi) / 0.1)


def test_true_radii_have_no_violations_and_inflated_radii_do():
    x, _ = theory.sample(90, seed=0)
    g, h = theory.WigglyCenters(seed=0), theory.SmoothedStrips(0.15)
    p = h.probs(x)
    for alpha in (0.76, 1.0):
        for r in (certify.lipschitz_radius(p, alpha, h.lipschitz), certify.rs_radius(p, alpha, h.sigma)):
            ok = theory.radius_violations(g, h, x, alpha, r, n_perturb=20, pgd_steps=10)
            assert ok["certified"] > 30 and ok["violations"] == 0
    r = certify.rs_radius(p, 1.0, h.sigma)
    bad = theory.radius_violations(g, h, x, 1.0, 4 * r, n_perturb=20, pgd_steps=10)
    assert bad["violations"] > 10


def test_lemma1_check_counts_certified_cases_and_finds_no_violation():
    none = theory.lemma1_violations(2000, 0.5, seed=0)    # margin 1 is never reached by a probability gap
    assert none["certified"] == 0 and none["violations"] == 0
    some = theory.lemma1_violations(2000, 0.8, seed=0)
    assert 0 < some["certified"] < some["trials"] and some["violations"] == 0
    assert theory.lemma1_violations(2000, 0.8, seed=0) == some  # seeded


def test_theorem3_oracle_is_right_wherever_g_or_h_is():
    x, y = theory.sample(300, seed=4)
    g, h = theory.WigglyCenters(seed=0), theory.SmoothedStrips(0.15)
    out = theory.theorem3_violations(g, h, {"clean": x, "shifted": (x + 0.05).clamp(0, 1)}, y)
    for v in out.values():
        assert v["violations"] == 0
        assert v["oracle"] >= max(v["g"], v["h"])


def test_bad_toy_inputs():
    with pytest.raises(ValueError, match="sigma"):
        theory.SmoothedStrips(0.0)
    with pytest.raises(ValueError, match="thresholds"):
        theory.SmoothedStrips(0.1, thresholds=(0.6, 0.4))
    with pytest.raises(ValueError, match="shape \\(N, 2\\)"):
        theory.as_images(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="side"):
        theory.grid(1)
    assert theory.grid(3).shape == (9, 1, 1, 2)
