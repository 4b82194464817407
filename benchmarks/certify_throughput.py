"""Throughput of batched randomized-smoothing CERTIFY (adasmooth.certify.Smooth.certify).

Prints, in one run and on the same inputs and device:
  1. noise samples/s of ``Smooth.certify`` (B inputs x (n0 + n) draws, batched across inputs);
  2. the model's raw forward throughput on pre-made noisy batches of the same size
     (ratio 1/2, target >= 0.9: certify adds little beyond the forward passes);
  3. a Cohen-style loop (locuslab/smoothing core.py: one input at a time, numpy vote counts and a
     statsmodels bound per input) (ratio 1/3, target >= 3).

Usage: python benchmarks/certify_throughput.py [--model fmnist-gauss-0.25] [--inputs 100] [--n0 100]
       [--n 1000] [--batch-size 1000] [--device cpu]
The model must be cached (``python -m adasmooth zoo train fmnist-gauss-0.25``); ``--untrained``
times an untrained network of the same architecture instead (throughput does not depend on weights).
"""
import argparse
import math
import time

import numpy as np
import torch
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from adasmooth import data, zoo
from adasmooth.certify import ABSTAIN, Smooth
from adasmooth.runtime import get_device


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def cohen_certify(model, x, sigma, n0, n, failure_prob, batch_size, num_classes, device):
    """The reference CERTIFY, one input at a time (as locuslab/smoothing's ``Smooth.certify``)."""
    def votes(xi, num):
        counts = np.zeros(num_classes, dtype=np.int64)
        for _ in range(math.ceil(num / batch_size)):
            bs = min(batch_size, num)
            num -= bs
            batch = xi.repeat((bs, 1, 1, 1))
            pred = model(batch + torch.randn_like(batch) * sigma).argmax(1)
            counts += np.bincount(pred.cpu().numpy(), minlength=num_classes)
        return counts

    preds, radii = [], []
    for xi in x:
        xi = xi.to(device)
        c_a = int(votes(xi, n0).argmax())
        n_a = int(votes(xi, n)[c_a])
        p_a = proportion_confint(n_a, n, alpha=2 * failure_prob, method="beta")[0]
        preds.append(c_a if p_a >= 0.5 else ABSTAIN)
        radii.append(sigma * norm.ppf(p_a) if p_a >= 0.5 else 0.0)
    return torch.tensor(preds), torch.tensor(radii)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="fmnist-gauss-0.25")
    p.add_argument("--inputs", type=int, default=100)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--failure-prob", type=float, default=0.001,
                   help="probability that a Clopper-Pearson bound fails")
    p.add_argument("--device", default=None)
    p.add_argument("--untrained", action="store_true", help="time an untrained copy if the model is not cached")
    return p


def _raw_forward(model, x, sigma: float, total: int, batch_size: int, device) -> tuple[int, float]:
    """Forward passes on pre-made noisy batches, as many samples as certify drew: (passes, seconds)."""
    noisy = (x[:1].expand(batch_size, *x.shape[1:]) + sigma * torch.randn(batch_size, *x.shape[1:],
                                                                           device=device))
    passes = max(1, round(total / batch_size))
    with torch.no_grad():
        model(noisy)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(passes):
            model(noisy)
        _sync(device)
    t_raw = time.perf_counter() - t0
    return passes, t_raw


def main():
    a = _parser().parse_args()

    device = get_device(a.device)
    name = a.model
    if zoo.is_cached(name):
        model = zoo.get(name, train_if_missing=False, device=device)
    elif a.untrained:
        model = zoo.build(name).to(device).eval()
        name += " (untrained weights)"
    else:
        raise SystemExit(f"{name} is not cached; train it or pass --untrained")
    sigma = zoo.recipe(a.model).train["sigma"]
    x, y = data.load(zoo.recipe(a.model).dataset, "test")
    idx = data.balanced_subset(y, max(1, a.inputs // 10), seed=0)[: a.inputs]
    x, y = x[idx].to(device), y[idx]
    b, per_input = len(x), a.n0 + a.n
    total = b * per_input
    print(f"{name}, sigma={sigma}, device={device}, torch threads={torch.get_num_threads()}, "
          f"{b} inputs x (n0={a.n0} + n={a.n}) = {total:,} noise samples, batch_size={a.batch_size}", flush=True)

    smooth = Smooth(model, model.num_classes, sigma, device=device)
    smooth.certify(x[:2], 10, 50, a.failure_prob, a.batch_size)  # warm-up

    _sync(device)
    t0 = time.perf_counter()
    pred, rad = smooth.certify(x, a.n0, a.n, a.failure_prob, a.batch_size, seed=0)
    _sync(device)
    t_cert = time.perf_counter() - t0

    passes, t_raw = _raw_forward(model, x, sigma, total, a.batch_size, device)

    torch.manual_seed(0)
    _sync(device)
    t0 = time.perf_counter()
    pred_c, rad_c = cohen_certify(model, x, sigma, a.n0, a.n, a.failure_prob, a.batch_size, model.num_classes, device)
    _sync(device)
    t_cohen = time.perf_counter() - t0

    s_cert, s_raw, s_cohen = total / t_cert, passes * a.batch_size / t_raw, total / t_cohen
    print(f"certify (batched)        : {s_cert:12,.0f} samples/s  ({t_cert:.2f} s)")
    print(f"raw forward, same batches: {s_raw:12,.0f} samples/s  ({t_raw:.2f} s)")
    print(f"Cohen-style loop         : {s_cohen:12,.0f} samples/s  ({t_cohen:.2f} s)")
    print(f"ratio certify / raw forward : {s_cert / s_raw:.2f}  (target >= 0.9)")
    print(f"ratio certify / Cohen loop  : {s_cert / s_cohen:.2f}  (target >= 3)")
    yc = y.cpu()
    print(f"agreement of predictions (different noise draws): {(pred == pred_c).float().mean().item():.3f}; "
          f"certified accuracy at r=0: batched {((pred == yc) & (rad > 0)).float().mean().item():.3f}, "
          f"Cohen loop {((pred_c == yc) & (rad_c > 0)).float().mean().item():.3f}")


if __name__ == "__main__":
    main()
