"""Certified accuracy of the mixed classifier h^α under Theorems 1 and 2 (Fig. SM1 on the default zoo).

h = a Gaussian-augmentation zoo model smoothed with N(0, σ²I) (h_i(x) = mean over n draws of the
one-hot vote of the base model, or its softmax with --soft), g = fmnist-standard (clean softmax).
For σ in {0.25, 0.5} and α in {1, 0.76} it prints h^α's clean accuracy and the fraction of test
images that are correct and certified at ℓ2 radius r in {0, 0.25, 0.5, 1.0} (r = 0 means radius > 0)
under Theorem 1 (Lip = √(2/π)/σ) and Theorem 2, radii set to 0 where h is wrong, no abstention
(as Fig. SM1).  Each row comes twice: "plug-in" puts the Monte-Carlo estimate into the theorems, as the
paper does (a unanimous vote gives r = ∞ at α = 1); "CP 0.001" uses Clopper-Pearson bounds
(certify.bounded_probs), certificates that hold with probability ≥ 0.999.  It also prints Fig. SM1's matched comparison (σ = 0.5 mixed at the α whose clean
accuracy matches σ = 0.25 at α = 1) and, with --cohen, Cohen et al.'s CERTIFY at α = 1 for reference.

Usage: python benchmarks/certified_accuracy.py [--images 500] [--n 1000] [--cohen] [--soft]
       [--plot fig_sm1.png] [--out results.json] [--device cpu]
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from adasmooth import certify, checkpoint, data, zoo
from adasmooth.runtime import batches, get_device

RADII = [0.0, 0.25, 0.5, 1.0]
ALPHAS = [1.0, 0.76]
SIGMAS = [0.25, 0.5]


@torch.no_grad()
def softmax_probs(model, x, device, bs=1000):
    return torch.cat([F.softmax(model(x[sl].to(device)).double(), 1).cpu() for sl in batches(len(x), bs)])


def row(label, clean, cert_lip, cert_rs, n_inf):
    lip = "  ".join(f"{100 * v:8.2f}" for v in cert_lip)
    rs = "  ".join(f"{100 * v:8.2f}" for v in cert_rs)
    return f"{label:40s} {100 * clean:6.2f} | {lip} | {rs} | {n_inf:5d}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--n", type=int, default=1000, help="noise samples per image")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--soft", action="store_true", help="h̄ = softmax of the base model instead of its one-hot vote")
    p.add_argument("--cohen", action="store_true", help="also run Cohen et al.'s CERTIFY (n0=100, failure prob 0.001)")
    p.add_argument("--failure-prob", type=float, default=0.001,
                   help="failure probability of the Clopper-Pearson-bounded rows (certify.bounded_probs)")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--cache", default=None, help="zoo cache folder (default: the project's)")
    p.add_argument("--overrides", default=None, help="JSON recipe overrides (e.g. tiny test models)")
    return p


def _images_and_g(a, ov, device):
    """The balanced test images and g's class probabilities on them (every model must be cached)."""
    names = ["fmnist-standard"] + [f"fmnist-gauss-{s}" for s in SIGMAS]
    missing = [n for n in names if not zoo.is_cached(n, ov, root=a.cache)]
    if missing:
        raise SystemExit(f"not cached: {missing}; train them with python -m adasmooth zoo train ...")
    x, y = data.load("fashion-mnist", "test")
    idx = data.balanced_subset(y, a.images // 10, seed=a.seed)
    x, y = x[idx], y[idx]
    g = zoo.get("fmnist-standard", train_if_missing=False, overrides=ov, root=a.cache, device=device)
    probs_g = softmax_probs(g, x, device)
    print(f"{len(x)} balanced Fashion-MNIST test images, n = {a.n} noise samples, h̄ = "
          f"{'softmax' if a.soft else 'one-hot vote'}, device = {device}; g = fmnist-standard "
          f"(clean accuracy {100 * (probs_g.argmax(1) == y).double().mean().item():.2f} %)", flush=True)
    return x, y, probs_g


def _smoothed(a, x, y, ov, device, results: dict) -> dict:
    """σ -> the smoothed probabilities of the Gaussian-trained h; Cohen et al.'s CERTIFY into ``results``."""
    probs_h = {}
    for sigma in SIGMAS:
        name = f"fmnist-gauss-{sigma}"
        h = zoo.get(name, train_if_missing=False, overrides=ov, root=a.cache, device=device)
        t0 = time.perf_counter()
        probs_h[sigma] = certify.Smooth(h, 10, sigma, device=device).probabilities(
            x, a.n, a.batch_size, soft=a.soft, seed=a.seed)
        print(f"{name}: smoothed probabilities in {time.perf_counter() - t0:.1f} s", flush=True)
        if a.cohen:
            t0 = time.perf_counter()
            pred, rad = certify.Smooth(h, 10, sigma, device=device).certify(
                x, 100, a.n, 0.001, a.batch_size, seed=a.seed + 1)
            ok = pred == y
            results[f"cohen sigma={sigma}"] = {
                "abstain": (pred == certify.ABSTAIN).double().mean().item(),
                "certified": dict(zip(map(str, RADII), certify.certified_accuracy(rad, ok, RADII).tolist()))}
            print(f"  Cohen CERTIFY in {time.perf_counter() - t0:.1f} s", flush=True)
    return probs_h


def _print_cohen(results: dict, n: int) -> None:
    """Cohen et al.'s CERTIFY rows of ``results``: abstentions and certified accuracy per radius."""
    for key, val in results.items():
        if key.startswith("cohen"):
            print(f"{key:40s} CERTIFY (n0=100, n={n}, failure prob 0.001): abstain "
                  f"{100 * val['abstain']:.2f} %, certified " +
                  "  ".join(f"r={r}: {100 * v:.2f}" for r, v in val["certified"].items()))


def main():
    a = _parser().parse_args()
    ov = json.loads(a.overrides) if a.overrides else None

    device = get_device(a.device)
    x, y, probs_g = _images_and_g(a, ov, device)

    grid = np.linspace(0, 1.5, 151)
    results, curves_lip, curves_rs, clean_dots = {}, {}, {}, {}
    probs_h = _smoothed(a, x, y, ov, device, results)

    header = (f"{'h^alpha':40s} {'clean':>6s} | " + "  ".join(f"{'Lip ' + format(r, 'g'):>8s}" for r in RADII)
              + " | " + "  ".join(f"{'RS ' + format(r, 'g'):>8s}" for r in RADII) + " | RS=inf")
    print("\nClean and certified accuracy (%) at l2 radius r (r = 0: radius > 0); Lip = Theorem 1, "
          "RS = Theorem 2; RS=inf: images whose plug-in Theorem 2 radius is infinite (alpha = 1 and all "
          "n votes for one class, Phi^-1(1) = inf)\n" + header)

    def report(label, sigma, alpha):
        for mode, kw in (("plug-in", {}), (f"CP {a.failure_prob:g}", dict(n=a.n, failure_prob=a.failure_prob))):
            one(f"{label} {mode}", sigma, alpha, kw)

    def one(label, sigma, alpha, kw):
        res = certify.mixed_certificates(probs_g, probs_h[sigma], y, alpha, sigma, **kw)
        lip = certify.certified_accuracy(res["lip"], res["h_correct"], RADII)
        rs = certify.certified_accuracy(res["rs"], res["h_correct"], RADII)
        results[label] = {"sigma": sigma, "alpha": alpha, "clean": res["clean"],
                          "lip": dict(zip(map(str, RADII), lip.tolist())),
                          "rs": dict(zip(map(str, RADII), rs.tolist()))}
        curves_lip[label] = certify.certified_accuracy(res["lip"], res["h_correct"], grid)
        curves_rs[label] = certify.certified_accuracy(res["rs"], res["h_correct"], grid)
        clean_dots[label] = res["clean"]
        n_inf = int(torch.isinf(res["rs"]).sum())
        results[label]["rs_infinite"] = n_inf
        print(row(label, res["clean"], lip, rs, n_inf))

    for sigma in SIGMAS:
        for alpha in ALPHAS:
            report(f"sigma={sigma} alpha={alpha}", sigma, alpha)
    _print_cohen(results, a.n)

    # Fig. SM1's matched comparison: σ = 0.5 mixed with g at the α matching σ = 0.25's clean accuracy
    base_acc = (probs_h[0.25].argmax(1) == y).double().mean().item()
    alpha_m, acc_m = certify.match_alpha(probs_g, probs_h[0.5], y, base_acc)
    print(f"\nmatched (Fig. SM1): sigma=0.25 alpha=1 clean {100 * base_acc:.2f} % vs sigma=0.5 mixed at "
          f"alpha={alpha_m:.3f} clean {100 * acc_m:.2f} %")
    print(header)
    report("sigma=0.25 alpha=1 (baseline)", 0.25, 1.0)
    report(f"sigma=0.5 alpha={alpha_m:.3f}", 0.5, alpha_m)

    if a.plot:
        keep = [f"sigma=0.25 alpha=1 (baseline) CP {a.failure_prob:g}", f"sigma=0.5 alpha={alpha_m:.3f} CP {a.failure_prob:g}"]
        certify.plot_certified_accuracy(grid, {k: curves_lip[k] for k in keep}, {k: curves_rs[k] for k in keep},
                                        clean={k: clean_dots[k] for k in keep}, path=a.plot)
        print(f"plot written to {a.plot}")
    if a.out:
        checkpoint.atomic_write_json(a.out, {"images": len(x), "n": a.n, "soft": a.soft, "results": results})
        print(f"results written to {a.out}")


if __name__ == "__main__":
    main()
