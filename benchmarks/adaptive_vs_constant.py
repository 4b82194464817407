"""Adaptive smoothing vs a constant α at the same clean accuracy (the supplement's Table SM2 setting).

Trains (or loads) the mixing network α_θ for zoo models g and h, calibrates both the adaptive
model h^{α_θ} (head shift) and the constant mixture h^α (α) to the same clean accuracy on a
balanced test subset, then prints PGD-``steps`` accuracy of both:

- constant α: worst case over CE and margin PGD on h^α;
- adaptive: ``full`` (gradients through α_θ, attacker's α-term; worst over CE and margin, and
  over the attacker's α-term weight w ∈ {0, alpha_weight}) and the per-sample worst case over
  ``full`` and ``detached``.

Usage: python benchmarks/adaptive_vs_constant.py [--g fmnist-standard] [--h fmnist-linf-at]
       [--target 0.89] [--n 1000] [--train-subset 10000] [--net-cache DIR] [--out results.json]
The base models must be cached (python -m adasmooth zoo list); they are never trained here.
"""
import argparse
import json
import sys
import time

import torch

from adasmooth import checkpoint, data, zoo
from adasmooth.adaptive import (MixingConfig, calibrate_constant_alpha, calibrate_shift, get_mixing_network,
                                robust_accuracy_adaptive)
from adasmooth.attacks import pgd
from adasmooth.mixing import MixedClassifier
from adasmooth.runtime import get_device


@torch.no_grad()
def accuracy(model, x, y, bs=500):
    return sum((model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item() for i in range(0, len(x), bs)) / len(x)


def robust_constant(model, x, y, eps, steps, norm, losses, seed, batch_size):
    """Per-sample worst case over PGD with each loss; returns (accuracy, {loss: accuracy})."""
    ok = torch.ones(len(x), dtype=torch.bool, device=x.device)
    per = {}
    for loss in losses:
        adv = pgd(model, x, y, eps=eps, steps=steps, norm=norm, loss=loss,
                  seed=seed, batch_size=batch_size)
        with torch.no_grad():
            hit = torch.cat([model(adv[i:i + 500]).argmax(1) == y[i:i + 500] for i in range(0, len(x), 500)])
        per[loss] = hit.float().mean().item()
        ok &= hit
    return ok.float().mean().item(), per


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--g", default="fmnist-standard")
    p.add_argument("--h", default="fmnist-linf-at")
    p.add_argument("--cache", default=None, help="zoo cache of the base models (default: data/zoo)")
    p.add_argument("--net-cache", default=None, help="where the mixing network is cached (default: --cache)")
    p.add_argument("--base-overrides", type=json.loads, default=None,
                   help="JSON overrides of the base recipes (e.g. the tiny test models)")
    p.add_argument("--target", type=float, default=None, help="clean accuracy target (default: midway g/h)")
    p.add_argument("--n", type=int, default=1000, help="balanced test subset size")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", default="linf")
    p.add_argument("--steps", type=int, default=20, help="PGD steps at evaluation")
    p.add_argument("--alpha-weight", type=float, default=0.2, help="attacker's w on BCE(γ, 1) under full")
    p.add_argument("--scale", type=float, default=None, help="evaluation Sigmoid scale (default: training 2)")
    p.add_argument("--alpha-range", type=float, nargs=2, default=(0.0, 1.0))
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps-df", type=int, default=20, help="training PGD steps ~ round(χ²(df))")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--bn-momentum", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default=None, help="write the numbers to this JSON file (atomically)")
    return p


def _report(a, n, losses, target, cal_const, rob_const, per_const, cal_ada, r, t_const, t_ada, meta) -> None:
    """The comparison table and the differences, printed."""
    print(f"\nPGD-{a.steps} {a.norm} ε = {a.eps:g}, losses {losses}, n = {n}, clean target {target:.4f}")
    print(f"| model | clean | PGD-{a.steps} (full) | PGD-{a.steps} (worst of full, detached) |")
    print("|---|---|---|---|")
    print(f"| constant α = {cal_const.value:.4f} | {cal_const.accuracy:.4f} | {rob_const:.4f} | {rob_const:.4f} |")
    print(f"| adaptive α_θ | {cal_ada.accuracy:.4f} | {r['full']:.4f} | {r['worst']:.4f} |")
    print(f"per attack: constant {json.dumps(per_const)}; adaptive {json.dumps(r['per_attack'])}")
    print(f"adaptive - constant: full {100 * (r['full'] - rob_const):+.1f} pt, "
          f"worst {100 * (r['worst'] - rob_const):+.1f} pt; "
          f"ratio full/constant {r['full'] / max(rob_const, 1e-12):.3f}, worst/constant "
          f"{r['worst'] / max(rob_const, 1e-12):.3f}")
    print(f"eval time: constant {t_const:.1f}s, adaptive {t_ada:.1f}s; mixing-network training "
          f"{meta['train_seconds']:.1f}s")


def _write(a, cfg, n, target, acc_g, acc_h, losses, cal_const, rob_const, per_const, cal_ada, model, r, meta):
    """The numbers as JSON in ``a.out`` (atomically)."""
    checkpoint.atomic_write_json(a.out, {
        "g": a.g, "h": a.h, "base_overrides": a.base_overrides, "threads": torch.get_num_threads(),
        "n": n, "target": target, "acc_g": acc_g, "acc_h": acc_h,
        "constant": {"alpha": cal_const.value, "clean": cal_const.accuracy, "robust": rob_const,
                     "per_attack": per_const},
        "adaptive": {"shift": cal_ada.value, "scale": float(model.net.scale), "clean": cal_ada.accuracy,
                     "full": r["full"], "worst": r["worst"], "detached": r["detached"],
                     "per_attack": r["per_attack"]},
        "attack": {"steps": a.steps, "eps": a.eps, "norm": a.norm, "losses": losses},
        "mixing_config": cfg.to_dict(), "train_seconds": meta["train_seconds"], "mixnet": meta["name"]})


def main():
    a = _parser().parse_args()
    device = get_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    for name in (a.g, a.h):
        if not zoo.is_cached(name, a.base_overrides, root=a.cache):
            print(f"{name} is not cached in {zoo.cache_dir(a.cache)}: train the zoo first "
                  f"(python -m adasmooth zoo train {name})", file=sys.stderr)
            return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}", flush=True)

    cfg = MixingConfig(eps=a.eps, norm=a.norm, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                       steps_df=a.steps_df, width=a.width, bn_momentum=a.bn_momentum, train_subset=a.train_subset,
                       seed=a.seed)
    t0 = time.perf_counter()
    model = get_mixing_network(a.g, a.h, cfg, root=a.cache, net_root=a.net_cache, base_overrides=a.base_overrides,
                               device=device, progress=a.progress)
    meta = model.metadata
    print(f"mixing network {meta['name']}: {meta['steps']} steps, train {meta['train_seconds']:.1f}s "
          f"(this call {time.perf_counter() - t0:.1f}s), loss {meta['first_loss']:.4f} -> {meta['final_loss']:.4f}",
          flush=True)

    dataset = zoo.recipe(a.g).dataset
    x, y = data.load(dataset, "test")
    idx = data.balanced_subset(y, a.n // data.info(dataset)["num_classes"], seed=0)
    x, y = x[idx].to(device), y[idx].to(device)
    g, h = model.g, model.h
    acc_g, acc_h = accuracy(g, x, y), accuracy(h, x, y)
    target = a.target if a.target is not None else round(0.5 * (acc_g + acc_h) * len(y)) / len(y)
    print(f"n = {len(y)}: clean acc(g) = {acc_g:.4f}, acc(h) = {acc_h:.4f}; target clean accuracy {target:.4f}")

    model.net.set_alpha_range(*a.alpha_range)
    if a.scale is not None:
        model.net.set_head(scale=a.scale)
    cal_ada = calibrate_shift(model, x, y, target, device=device)
    cal_const = calibrate_constant_alpha(g, h, x, y, target, device=device)
    const = MixedClassifier(g, h, alpha=cal_const.value).to(device).eval()
    print(f"calibrated: adaptive shift {cal_ada.value:.4f} (scale {float(model.net.scale):g}, α range "
          f"{model.net.alpha_range}) -> clean {cal_ada.accuracy:.4f}; constant α = {cal_const.value:.4f} "
          f"-> clean {cal_const.accuracy:.4f}", flush=True)
    with torch.no_grad():
        alphas = torch.cat([model(x[i:i + 500], return_alpha=True)[1] for i in range(0, len(x), 500)])
    print(f"adaptive α on clean inputs: mean {alphas.mean():.3f}, quartiles "
          f"{[round(v, 3) for v in alphas.quantile(torch.tensor([0.25, 0.5, 0.75], device=device)).tolist()]}")

    losses = ("ce", "margin")
    t1 = time.perf_counter()
    rob_const, per_const = robust_constant(const, x, y, a.eps, a.steps, a.norm, losses, a.seed, 250)
    t_const = time.perf_counter() - t1
    t1 = time.perf_counter()
    weights = tuple(sorted({0.0, a.alpha_weight}))
    r = robust_accuracy_adaptive(model, x, y, eps=a.eps, steps=a.steps, norm=a.norm, losses=losses,
                                 alpha_weights=weights, seed=a.seed, device=device, progress=a.progress)
    t_ada = time.perf_counter() - t1
    _report(a, len(y), losses, target, cal_const, rob_const, per_const, cal_ada, r, t_const, t_ada, meta)
    if a.out:
        _write(a, cfg, len(y), target, acc_g, acc_h, losses, cal_const, rob_const, per_const, cal_ada, model, r, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
