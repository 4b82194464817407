"""Notebook 03: certified radii of h^α, Figure SM1.  h is a randomized-smoothing (RS) model with noise σ_h mixed
with an accurate g at the α whose clean accuracy matches a baseline RS model with a smaller σ (at α = 1); the
certified accuracy at ℓ2 radius r by Theorem 1 (Lipschitz bound) and Theorem 2 (RS bound), on a dense grid of
radii, with Clopper-Pearson-bounded class probabilities when ``failure_prob`` is set
(:func:`adasmooth.certify.mixed_certificates`)."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import torch

from .. import attack_cache, certify, notebook, parameters, results
from .base import Experiment, Figure, new

log = logging.getLogger(__name__)

STEM = "03_certified_radii"


def certified_radii(namespace: dict) -> Experiment:
    """Notebook 03 with its parameters ``namespace``: h's and the baseline's Monte-Carlo class probabilities
    (``n_samples`` noise draws per image), the matched α (unless ``alpha`` is given), the certified-accuracy
    curves on ``r_max``/200 steps, the crossing radius and each curve's largest certified radius."""
    p = parameters.bind(STEM, namespace)  # declared names only (adasmooth/parameters.py)
    nb = notebook.setup(STEM, namespace, models=("g", "h", "baseline"))  # g, h, baseline and the test images
    probs = _probabilities(p, nb)
    alpha, clean_mix, clean_b = _alpha(p, probs, nb.y)
    print(f"baseline (σ = {p.sigma_baseline:g}, α = 1): clean {100 * clean_b:.2f} %;  "
          f"h^α (σ = {p.sigma_h:g}, α = {alpha:.3f}): clean {100 * clean_mix:.2f} %")
    c = _curves(p, probs, nb.y, alpha)
    key_metrics = certify.key_metrics(c.key, c.mix, c.base)
    print(key_metrics)
    metrics = {"alpha": alpha, "clean_mix": clean_mix, "clean_baseline": clean_b,
               "clean_g": certify.mixed_accuracy(probs["g"], probs["h"], nb.y, 0.0),
               "clean_h": certify.mixed_accuracy(probs["g"], probs["h"], nb.y, 1.0), "n_eval": len(nb.y),
               "n_samples": p.n_samples, "max_radius_rs": max(float(v["rs"].max()) for v in c.cert.values()),
               **{f"cap_{kind}_{'mix' if label == c.mix else 'baseline'}": r for label, caps in c.caps.items()
                  for kind, r in caps.items()},
               **key_metrics}
    table = certify.radii_table(c.cert, c.key, p.radii_table)  # plus every crossing and largest certified radius
    return new(STEM, namespace, metrics=metrics, tables={"Certified accuracy (%) at ℓ2 radius r": table},
               data={"r_grid": c.r_grid, "lip": c.lip, "rs": c.rs}, inputs=nb.inputs,
               figures=[Figure(STEM, lambda: _draw(c, len(nb.y)), _caption(p, len(nb.y), c.caps))])


def _probabilities(p, nb) -> dict:
    """Class probabilities of g (softmax), of the RS classifier h (σ_h) and of the RS baseline (σ_baseline,
    noise seeded ``seed + 1``), per test image."""
    g_model, h_model, b_model = nb.models
    x, bs = nb.x, p.batch_size
    with torch.no_grad():
        probs_g = torch.cat([g_model(x[i:i + bs]).softmax(1) for i in range(0, len(x), bs)])
    probs_h = _votes(p, nb, h_model, "h", p.sigma_h, p.seed)
    probs_b = _votes(p, nb, b_model, "baseline", p.sigma_baseline, p.seed + 1)
    return {"g": probs_g, "h": probs_h, "baseline": probs_b}


def _votes(p, nb, model, name: str, sigma: float, seed: int) -> torch.Tensor:
    """The RS classifier's Monte-Carlo class probabilities, ``Smooth.sample`` vote counts / ``n_samples``; the
    counts are cached by content like the attacks (model weights, σ, draws, seed, batch, images), so the main job
    replays them and its verification recomputes a seeded sample of the images (``Smooth.sample(only=)``)."""
    x, bs = nb.x, p.batch_size
    entry = attack_cache.key({"what": "certify.Smooth.sample votes", "model": attack_cache.fingerprint(model),
                              "sigma": sigma, "n": p.n_samples, "seed": seed, "batch_size": bs,
                              "images": attack_cache.images_hash(x, nb.y)})
    smooth = certify.Smooth(model, nb.num_classes, sigma)
    counts, _, _ = attack_cache.cached_values(
        entry, lambda: smooth.sample(x, p.n_samples, bs, seed=seed, progress=p.progress), p.use_attack_cache,
        dtype=torch.int64, partial=lambda mask: smooth.sample(x, p.n_samples, bs, seed=seed, only=mask),
        what=f"noise votes of {name} (σ = {sigma:g}, {p.n_samples} draws) on {len(x)} images")
    return counts.double() / p.n_samples


def _alpha(p, probs: dict, y) -> tuple[float, float, float]:
    """α of h^α (``alpha``, or the one whose clean accuracy matches the baseline's), h^α's and the
    baseline's clean accuracy."""
    clean_b = certify.mixed_accuracy(probs["g"], probs["baseline"], y, 1.0)
    if p.alpha is None:
        alpha, clean_mix = certify.match_alpha(probs["g"], probs["h"], y, clean_b)
    else:
        alpha, clean_mix = p.alpha, certify.mixed_accuracy(probs["g"], probs["h"], y, p.alpha)
    return alpha, clean_mix, clean_b


def _curves(p, probs: dict, y, alpha: float) -> SimpleNamespace:
    """The certificates of h^α and of the baseline (labels ``mix``, ``base``), their certified-accuracy curves
    ``lip`` and ``rs`` on ``r_grid`` and the key radii read from them (:func:`adasmooth.certify.key_radii`)."""
    bound = dict(n=p.n_samples, failure_prob=p.failure_prob) if p.failure_prob is not None else {}
    mix, base = f"h^α (σ = {p.sigma_h:g}, α = {alpha:.2f})", f"RS baseline (σ = {p.sigma_baseline:g}, α = 1)"
    cert = {mix: certify.mixed_certificates(probs["g"], probs["h"], y, alpha, p.sigma_h, **bound),
            base: certify.mixed_certificates(probs["g"], probs["baseline"], y, 1.0, p.sigma_baseline, **bound)}
    r_grid = np.linspace(0, p.r_max, 201)
    lip = {k: certify.certified_accuracy(c["lip"], c["h_correct"], r_grid) for k, c in cert.items()}
    rs = {k: certify.certified_accuracy(c["rs"], c["h_correct"], r_grid) for k, c in cert.items()}
    key = certify.key_radii(r_grid, {"lip": lip, "rs": rs}, mix, base)
    # each curve's cap: the radius of a unanimous vote, the largest any image can reach with n_samples draws
    one = torch.zeros(1, probs["h"].shape[1], dtype=torch.float64)
    one[0, 0] = 1.0
    caps = {label: {k: float(certify.mixed_certificates(one, one, torch.zeros(1, dtype=torch.long), a, sigma,
                                                        **bound)[k][0]) for k in ("lip", "rs")}
            for label, a, sigma in ((mix, alpha, p.sigma_h), (base, 1.0, p.sigma_baseline))}
    return SimpleNamespace(mix=mix, base=base, cert=cert, r_grid=r_grid, lip=lip, rs=rs, key=key, caps=caps)


def _caption(p, n: int, caps: dict) -> str:
    """The figure's caption: images, no attack, the bands, noise draws, how the radii hold and each curve's cap
    (the radius of a unanimous vote: no image can be certified beyond it with this many draws)."""
    held = (f", radii hold with probability ≥ 1 - {p.failure_prob:g}" if p.failure_prob is not None
            else ", plug-in radii")
    cap = "; ".join(f"{label}: Lipschitz {c['lip']:.3g}, RS {c['rs']:.3g}" for label, c in caps.items())
    return results.caption(n=n, attacks="none (certified ℓ2 radii)", interval=f"{results.INTERVAL} bands",
                           extra=f"{p.n_samples} noise draws per image{held}; the largest radius {p.n_samples} "
                                 f"draws can certify (a unanimous vote): {cap}")


def _draw(c: SimpleNamespace, n: int):
    """Certified accuracy against the ℓ2 radius, Theorem 1 and Theorem 2 side by side."""
    return certify.plot_certified_accuracy(c.r_grid, c.lip, c.rs, clean={k: v["clean"] for k, v in c.cert.items()},
                                           key=c.key, n=n)
