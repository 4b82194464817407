"""The theory made checkable: a 2-D toy problem where the certified regions of h^α can be drawn, and
numerical checks of the supplement's Lemma 1 and Theorems 1-3 (violations are counted; the theory says
there are none).  The formulas themselves live in :mod:`adasmooth.certify`; this module holds the toy
data (:func:`sample`, :func:`grid`), the toy g and h (:class:`WigglyCenters`, :class:`SmoothedStrips`)
and the checks (:func:`lemma1_violations`, :func:`radius_violations`, :func:`theorem3_violations`).

Points x ∈ [0, 1]² are stored as tensors of shape (N, 1, 1, 2) (one-pixel-high images), so that
every adasmooth function written for image batches (MixedClassifier, pgd) applies unchanged.

- h (robust): :class:`SmoothedStrips`, h(x) = E_ξ[h̄(x+ξ)] with ξ ~ N(0, σ²I) and h̄ the hard
  classifier that cuts the plane into three strips along a unit direction w.  In closed form
  h_0 = Φ((t_0 - w·x)/σ), h_2 = 1 - Φ((t_1 - w·x)/σ), h_1 = 1 - h_0 - h_2: Assumption 2 holds
  exactly, and every h_i is √(2/π)/σ-Lipschitz in ℓ2, so Theorems 1 and 2 both apply.
- g (accurate, not robust): :class:`WigglyCenters`, nearest class center with a high-frequency
  ripple on its logits; Lemma 1 and Theorems 1-2 hold whatever g is.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import certify
from .attacks import pgd
from .mixing import MixedClassifier
from .runtime import generator

CENTERS = ((0.2, 0.35), (0.5, 0.65), (0.8, 0.35))
NUM_CLASSES = 3


def as_images(points: torch.Tensor) -> torch.Tensor:
    """(N, 2) points -> (N, 1, 1, 2) inputs."""
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {tuple(points.shape)}")
    return points.reshape(-1, 1, 1, 2)


def as_points(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 2)


def sample(n: int, seed: int = 0, spread: float = 0.09) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` labelled points (x of shape (n, 1, 1, 2) in [0, 1]², y int64), classes in turn, each an
    isotropic Gaussian of std ``spread`` around its center."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = generator(seed)
    y = torch.arange(n) % NUM_CLASSES
    c = torch.tensor(CENTERS, dtype=torch.float64)[y]
    pts = (c + spread * torch.randn(n, 2, generator=g, dtype=torch.float64)).clamp(0, 1)
    return as_images(pts), y


def grid(side: int) -> torch.Tensor:
    """A side x side grid of [0, 1]² as inputs (side², 1, 1, 2), row-major from (0, 0)."""
    if side < 2:
        raise ValueError(f"side must be >= 2, got {side}")
    t = torch.linspace(0, 1, side, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return as_images(torch.stack([xx.flatten(), yy.flatten()], 1))


class SmoothedStrips(nn.Module):
    """h(x) = E_ξ[h̄(x+ξ)] for the three-strip classifier h̄ along w; returns log h(x) (as logits)."""

    num_classes, in_channels = NUM_CLASSES, 1

    def __init__(self, sigma: float = 0.1, w=(1.0, 0.0), thresholds=(0.35, 0.65)):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        t0, t1 = thresholds
        if not t0 < t1:
            raise ValueError(f"thresholds must be increasing, got {thresholds}")
        w = torch.as_tensor(w, dtype=torch.float64)
        self.register_buffer("w", w / w.norm())
        self.sigma, self.t0, self.t1 = float(sigma), float(t0), float(t1)

    @property
    def lipschitz(self) -> float:
        """The ℓ2 Lipschitz constant of every h_i: √(2/π)/σ."""
        return certify.smoothed_lipschitz(self.sigma)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        s = as_points(x).to(self.w.dtype) @ self.w
        p0 = torch.special.ndtr((self.t0 - s) / self.sigma)
        p2 = 1 - torch.special.ndtr((self.t1 - s) / self.sigma)
        return torch.stack([p0, (1 - p0 - p2).clamp_min(0), p2], 1)

    def forward(self, x):
        return self.probs(x).clamp_min(1e-300).log().to(x.dtype)


class WigglyCenters(nn.Module):
    """g: logits -β‖x - c_k‖² + A·sin(ω·x·v_k), accurate near the centers, erratic between them."""

    num_classes, in_channels = NUM_CLASSES, 1

    def __init__(self, beta: float = 60.0, ripple: float = 1.5, freq: float = 40.0, seed: int = 0):
        super().__init__()
        self.register_buffer("centers", torch.tensor(CENTERS, dtype=torch.float64))
        v = torch.randn(NUM_CLASSES, 2, generator=generator(seed), dtype=torch.float64)
        self.register_buffer("v", v / v.norm(dim=1, keepdim=True))
        self.beta, self.ripple, self.freq = float(beta), float(ripple), float(freq)

    def forward(self, x):
        p = as_points(x).to(self.centers.dtype)
        d2 = ((p[:, None, :] - self.centers[None]) ** 2).sum(-1)
        return (-self.beta * d2 + self.ripple * torch.sin(self.freq * p @ self.v.T)).to(x.dtype)


# ---- checks -----------------------------------------------------------------------------------
def lemma1_violations(n: int, alpha: float, num_classes: int = 10, seed: int = 0) -> dict:
    """Lemma 1 at single points: draw n pairs (g(x), h(x)) of probability vectors (h from a Dirichlet,
    g the worst case: all its mass on h's runner-up, or random); where
    :func:`certify.lemma1_certified` holds, argmax h^α must equal argmax h.  Returns counts."""
    rng = np.random.default_rng(seed)
    ph = torch.from_numpy(rng.dirichlet(np.full(num_classes, 0.3), n))
    ok = certify.lemma1_certified(ph, alpha)
    runner_up = ph.scatter(1, ph.argmax(1, keepdim=True), -1.0).argmax(1)
    worst_g = F.one_hot(runner_up, num_classes).double().clamp_min(1e-300)
    rand_g = torch.from_numpy(rng.dirichlet(np.full(num_classes, 0.3), n))
    viol = 0
    for pg in (worst_g, rand_g):
        pred = certify.mixed_predictions(pg / pg.sum(1, keepdim=True), ph, alpha)
        viol += int((ok & (pred != ph.argmax(1))).sum())
    return {"alpha": alpha, "trials": 2 * n, "certified": 2 * int(ok.sum()), "violations": viol}


def radius_violations(g: nn.Module, h: SmoothedStrips, x: torch.Tensor, alpha: float, radii: torch.Tensor, *,
                      n_perturb: int = 100, pgd_steps: int = 20, seed: int = 0) -> dict:
    """Within the certified ℓ2 radius r(x), h^α must keep h's prediction argmax h(x).

    Tries ``n_perturb`` random perturbations per point (half on the sphere of radius r, half inside)
    and an ℓ2 PGD on h^α with per-point ε = r (margin loss).  A point is violated when one of them
    changes the prediction.  Returns counts over the points with r > 0."""
    mix = MixedClassifier(g, h, alpha).double()
    x = x.double()
    keep = radii > 0
    xs, r = x[keep], radii[keep].double() * (1 - 1e-6)
    n = int(keep.sum())
    if n == 0:
        return {"alpha": alpha, "points": len(x), "certified": 0, "violations": 0}
    with torch.no_grad():
        y = h(xs).argmax(1)
    gen = generator(seed)
    bad = torch.zeros(n, dtype=torch.bool)
    for k in range(n_perturb):
        d = torch.randn(n, 2, generator=gen, dtype=torch.float64)
        d = d / d.norm(dim=1, keepdim=True) * r[:, None]
        if k % 2:
            d = d * torch.rand(n, 1, generator=gen, dtype=torch.float64).sqrt()
        with torch.no_grad():
            bad |= mix(xs + as_images(d)).argmax(1) != y
    if pgd_steps:
        adv = pgd(mix, xs, y, eps=r, steps=pgd_steps, norm="l2", loss="margin", random_start=True, seed=seed)
        with torch.no_grad():
            bad |= mix(adv).argmax(1) != y
    return {"alpha": alpha, "points": len(x), "certified": n, "violations": int(bad.sum()),
            "mean_radius": float(radii[keep].mean())}


@torch.no_grad()
def theorem3_violations(g, h, sets: dict, y: torch.Tensor, batch_size: int = 500) -> dict:
    """Theorem 3 per input: the oracle mix (α = 0 where g is right, else 1) must be right wherever g or h
    is.  ``sets`` maps a name to inputs aligned with ``y`` (clean images, attacks on g, on h, ...).
    Returns, per set, g's, h's and the oracle's accuracy and the violations: the ``per_set`` part of
    :func:`certify.theorem3_accuracy`, where the theorem is evaluated."""
    return certify.theorem3_accuracy(g, h, sets, y, batch_size=batch_size)["per_set"]

