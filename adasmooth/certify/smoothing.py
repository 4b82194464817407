"""Randomized smoothing: Theorem 2's radius r^α_σ = (σ/2)[Φ⁻¹(α·h_y) - Φ⁻¹(α·h_y' + 1 - α)], the
Lipschitz constant √(2/π)/σ of a smoothed classifier, Clopper-Pearson bounds and Cohen et al.'s
:class:`Smooth` (PREDICT, CERTIFY and the batched Monte-Carlo estimate of h(x) = E[h̄(x+ξ)]).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import beta as beta_dist
from scipy.stats import binomtest, norm

from ..runtime import batches, generator, get_device, progress_bar
from .inputs import _alphas, _check_failure_prob, _positive, _probs, _top2

ABSTAIN = -1


def rs_radius(probs_h, alpha, sigma) -> torch.Tensor:
    """Theorem 2: r = (σ/2)[Φ⁻¹(α·h_y) - Φ⁻¹(α·h_y' + 1 - α)], per input (ℓ2).

    ``probs_h`` are the smoothed probabilities h_i(x) = E[h̄_i(x+ξ)]; at α = 1 this is Cohen et
    al.'s (σ/2)(Φ⁻¹(p_A) - Φ⁻¹(p_B)) (+∞ when h_y = 1).  0 where negative and where α < 1/2.
    """
    p = _probs(probs_h)
    sigma = _positive(sigma, "sigma")
    a = _alphas(alpha, p.shape[0], p)
    _, h_y, h_y2 = _top2(p)
    r = sigma / 2 * (torch.special.ndtri(a * h_y) - torch.special.ndtri(a * h_y2 + 1 - a))
    return torch.where((a >= 0.5) & (r > 0), r, torch.zeros_like(r))  # NaN (∞ - ∞) -> 0 too


def smoothed_lipschitz(sigma) -> float:
    """√(2/π)/σ: the ℓ2 Lipschitz constant of x ↦ E_ξ[h̄(x+ξ)], ξ ~ N(0, σ²I), for any h̄ ∈ [0, 1]."""
    return math.sqrt(2 / math.pi) / _positive(sigma, "sigma")

def lower_confidence_bound(k, n: int, failure_prob: float) -> np.ndarray:
    """One-sided (1-``failure_prob``) Clopper-Pearson lower bound on a binomial proportion:
    Beta⁻¹(failure_prob; k, n-k+1), 0 at k = 0."""
    k = np.asarray(k, dtype=np.int64)
    _check_failure_prob(failure_prob)
    if n < 1 or (k < 0).any() or (k > n).any():
        raise ValueError(f"counts must lie in [0, n] with n >= 1, got n={n}")
    with np.errstate(invalid="ignore"):
        lo = beta_dist.ppf(failure_prob, k, n - k + 1)
    return np.where(k == 0, 0.0, lo)


class Smooth:
    """Cohen et al.'s smoothed classifier of ``base`` (logits -> argmax) under N(0, σ²I) noise.

    Every method takes a batch x of shape (B, ...) and evaluates B inputs × n noise draws in
    forward passes of at most ``batch_size`` samples; the noise comes from a generator seeded with
    ``seed`` (same seed => same numbers).  ``base`` runs on ``device`` (default: its parameters'
    device, else :func:`runtime.get_device`).
    """

    ABSTAIN = ABSTAIN

    def __init__(self, base: Callable[[torch.Tensor], torch.Tensor], num_classes: int, sigma: float,
                 device=None):
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.base, self.num_classes, self.sigma = base, num_classes, _positive(sigma, "sigma")
        if device is None:
            params = list(base.parameters()) if hasattr(base, "parameters") else []
            device = params[0].device if params else get_device(None)
        self.device = torch.device(device)
        if hasattr(base, "eval"):
            base.eval()

    # -- sampling
    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int, batch_size: int = 1000, *, soft: bool = False,
               gen: torch.Generator | None = None, seed: int = 0, progress: bool = False,
               only: torch.Tensor | None = None) -> torch.Tensor:
        """Sums over n draws ξ ~ N(0, σ²I) of h̄(x+ξ), shape (B, C).

        ``soft=False``: h̄ = one-hot of argmax base (int64 vote counts); ``soft=True``: h̄ =
        softmax of base (float64 sums).  Blocks of k inputs × m draws (k·m ≤ batch_size) go through
        the model together.  ``only`` (a bool mask of the B inputs): the rows of those inputs, exactly as the
        full call returns them (every block's noise is still drawn, so the generator walks the same stream, but
        a block without a selected input skips its forward pass); the other rows stay 0.
        """
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
        x = x.to(self.device)
        gen = gen if gen is not None else generator(seed, self.device)
        b, c = x.shape[0], self.num_classes
        m = min(n, batch_size)
        k = max(1, batch_size // m)
        out = torch.zeros(b, c, dtype=torch.float64 if soft else torch.int64, device=self.device)
        if only is not None:
            only = torch.as_tensor(only, dtype=torch.bool).cpu()
            if only.shape != (b,):
                raise ValueError(f"only must be a bool mask of the {b} inputs, got shape {tuple(only.shape)}")
        steps = [(blk, d) for blk in batches(b, k) for d in batches(n, m)]
        for blk, d in progress_bar(steps, progress=progress, desc="noise", leave=False):
            xb = x[blk]
            kb, mb = xb.shape[0], d.stop - d.start
            rep = xb.unsqueeze(1).expand(kb, mb, *xb.shape[1:]).reshape(kb * mb, *xb.shape[1:])
            noise = torch.randn(rep.shape, generator=gen, device=self.device, dtype=rep.dtype)
            if only is not None and not bool(only[blk].any()):
                continue
            z = self.base(rep + self.sigma * noise)
            if z.shape[-1] != c:
                raise ValueError(f"base returned {z.shape[-1]} classes, num_classes is {c}")
            hbar = F.softmax(z.double(), 1) if soft else F.one_hot(z.argmax(1), c)
            out[blk] += hbar.view(kb, mb, c).sum(1).to(out.dtype)
        return out

    def probabilities(self, x: torch.Tensor, n: int, batch_size: int = 1000, *, soft: bool = False,
                      seed: int = 0, progress: bool = False) -> torch.Tensor:
        """Monte-Carlo estimate of h(x) = E_ξ[h̄(x+ξ)] from n draws (float64 (B, C), rows sum to 1).

        The default h̄ is the one-hot vote of the base model (Cohen et al.'s smoothed classifier,
        as the authors' Fig. SM1 code uses); ``soft=True`` uses its softmax.  Both satisfy
        Assumption 2 (h̄ ∈ [0, 1]), so both have Lipschitz constant :func:`smoothed_lipschitz`.
        """
        s = self.sample(x, n, batch_size, soft=soft, seed=seed, progress=progress)
        return s.double() / n

    # -- Cohen et al.'s PREDICT and CERTIFY
    def predict(self, x: torch.Tensor, n: int, failure_prob: float, batch_size: int = 1000, *, seed: int = 0,
                progress: bool = False) -> torch.Tensor:
        """PREDICT: the top class of n votes, or ABSTAIN (-1) where the two-sided binomial test of
        its count against the runner-up's (p = 1/2) has p-value > ``failure_prob``.  int64 (B,) on CPU."""
        _check_failure_prob(failure_prob)
        counts = self.sample(x, n, batch_size, seed=seed, progress=progress).cpu()
        top = counts.topk(2, dim=1)
        pred = top.indices[:, 0].clone()
        for i, (c1, c2) in enumerate(top.values.tolist()):
            if binomtest(c1, c1 + c2, 0.5).pvalue > failure_prob:
                pred[i] = ABSTAIN
        return pred

    def certify(self, x: torch.Tensor, n0: int, n: int, failure_prob: float, batch_size: int = 1000, *,
                seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """CERTIFY: ĉ_A from n0 votes; p̲_A = Clopper-Pearson (1-``failure_prob``) lower bound of its count
        among n fresh votes; returns (ĉ_A, σΦ⁻¹(p̲_A)), or (ABSTAIN, 0) where p̲_A < 1/2.  CPU int64 / float64 (B,)."""
        _check_failure_prob(failure_prob)
        gen = generator(seed, self.device)
        c_a = self.sample(x, n0, batch_size, gen=gen, progress=progress).argmax(1)
        counts = self.sample(x, n, batch_size, gen=gen, progress=progress)
        n_a = counts.gather(1, c_a[:, None]).squeeze(1).cpu().numpy()
        p_a = lower_confidence_bound(n_a, n, failure_prob)
        ok = p_a >= 0.5
        pred = torch.where(torch.from_numpy(ok), c_a.cpu(), torch.full_like(c_a.cpu(), ABSTAIN))
        radius = torch.from_numpy(np.where(ok, self.sigma * norm.ppf(np.where(ok, p_a, 0.5)), 0.0))
        return pred, radius


def bounded_probs(probs_h, n: int, failure_prob: float = 0.001) -> torch.Tensor:
    """Sound stand-ins for Monte-Carlo estimates of h from n votes (Cohen et al.'s CERTIFY bound).

    Row-wise: p̲_A = Clopper-Pearson (1-``failure_prob``) lower bound of the top class's count, put at the
    top class, and 1 - p̲_A (an upper bound for every other class, since they sum to ≤ 1 - h_A) at the
    estimated runner-up; 0 elsewhere.  With probability ≥ 1 - failure_prob, h_A ≥ p̲_A and h_i ≤ 1 - p̲_A,
    so Theorems 1 and 2 evaluated on these rows give valid, finite radii.  float64 (N, C).
    """
    p = _probs(probs_h)
    if p.shape[1] < 2:
        raise ValueError(f"probs_h needs at least 2 classes, got {p.shape[1]}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (noise draws per input) must be an int >= 1, got {n!r}")
    n = int(n)
    _check_failure_prob(failure_prob)
    top = p.topk(2, dim=1)
    k = torch.round(top.values[:, 0] * n).long().clamp(0, n).numpy()
    lo = torch.from_numpy(lower_confidence_bound(k, n, failure_prob)).to(p)
    out = torch.zeros_like(p)
    out.scatter_(1, top.indices[:, :1], lo[:, None])
    out.scatter_(1, top.indices[:, 1:2], (1 - lo)[:, None])
    return out
