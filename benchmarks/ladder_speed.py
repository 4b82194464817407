"""The levers of the attack-budget ladder's speed on a CPU core, as ratios measured in one run.

Times ``adaptive.attack_adaptive`` (PGD through α_θ, the ladder's commonest attack) on the shipped
``fmnist-adaptive`` for the default layout at the headline's attack batch (250, today's path), then channels_last
at 250 and channels_last at the ladder's batch (``comparison.convergence.LADDER_BATCH``), one torch thread, and
prints ms per image-step and each variant's speed relative to today's path; the outcomes are compared image by
image (the layout changes floating-point sums, so a marginal image may flip).

Usage: python benchmarks/ladder_speed.py [--n 250] [--steps 10] [--repeats 2]
"""
import argparse
import time

import torch

from adasmooth import learned
from adasmooth.adaptive import attack_adaptive
from adasmooth.attacks import predict
from adasmooth.comparison import Budget, test_images
from adasmooth.comparison.convergence import LADDER_BATCH


def _time(model, x, y, steps, bs, repeats):
    best, adv = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        adv = attack_adaptive(model, x, y, eps=0.1, steps=steps, alpha_weight=0.2, batch_size=bs)
        best = min(best, time.perf_counter() - t0)
    return best, (predict(model, adv, bs) == y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=250)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(1)
    model = learned.get("fmnist-adaptive", device="cpu")
    x, y, _ = test_images("fashion-mnist", 1000, Budget(), "cpu")
    x, y = x[:a.n], y[:a.n]
    rows = [("default layout, batch 250 (today)", model, 250)]
    cl = learned.get("fmnist-adaptive", device="cpu").to(memory_format=torch.channels_last)
    rows += [("channels_last, batch 250", cl, 250), (f"channels_last, batch {LADDER_BATCH} (the ladder)", cl, LADDER_BATCH)]
    base = None
    print(f"PGD through α_θ, {a.n} images x {a.steps} steps, one thread (best of {a.repeats})")
    for name, m, bs in rows:
        secs, ok = _time(m, x, y, a.steps, bs, a.repeats)
        if base is None:
            base, ref = secs, ok
        print(f"{name:40s} {1000 * secs / (a.n * a.steps):6.3f} ms/img-step  speed x{base / secs:4.2f}  "
              f"robust {int(ok.sum())}/{a.n}, {int((ok != ref).sum())} images differ from today's path")


if __name__ == "__main__":
    main()
