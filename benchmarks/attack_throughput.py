"""PGD-20 throughput on the mixed classifier h^α against g and h alone, and against ART's PGD.

Measured in one run on the embedded default (Fashion-MNIST, SmallCNN g = fmnist-standard, h =
fmnist-linf-at; untrained SmallCNNs of the same shape when the zoo is not cached, which cost the
same): PGD-20, ℓ∞ ε = 0.1, no random start, probability mixing at α = 0.7.  Prints images/s on
the mix, on g and on h, the ratio cost(mixed) / (cost(g) + cost(h)) (target ≤ 1.05; the two
models' sum is the floor) and ART's PGD time / ours on the same mixed model (target ≥ 1.0).
Times are the best of ``--repeats`` interleaved rounds; the ratios are also given as the median
of the per-round ratios (each from back-to-back runs), which is steadier on a shared machine.

Usage: python benchmarks/attack_throughput.py [--n 500] [--batch-size 250] [--repeats 3] [--device cpu]
"""
import argparse
import time

import numpy as np
import torch

from adasmooth import MixedClassifier, data, zoo
from adasmooth.attacks import pgd, predict
from adasmooth.runtime import get_device


def load(name, device):
    if zoo.is_cached(name):
        return zoo.get(name, train_if_missing=False, device=device), "cached zoo model"
    torch.manual_seed(0)
    return zoo.build(name).to(device).eval(), "untrained (zoo not cached; same cost)"


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def art_pgd(model, x, y, *, eps, step, steps, batch_size, device):
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                            clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu")
    att = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=eps, eps_step=step, max_iter=steps,
                                          num_random_init=0, batch_size=batch_size, verbose=False)
    return torch.from_numpy(att.generate(x.cpu().numpy(), y=y.cpu().numpy())).to(device)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--device", default=None)
    a = p.parse_args()
    device = get_device(a.device)
    g, src_g = load("fmnist-standard", device)
    h, src_h = load("fmnist-linf-at", device)
    mix = MixedClassifier(g, h, a.alpha).to(device).eval()
    x, y = data.load("fashion-mnist", "test")
    idx = data.balanced_subset(y, a.n // 10, seed=0)
    x, y = x[idx].to(device), y[idx].to(device)
    eps, steps = 0.1, 20
    step = 2.5 * eps / steps
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads; g: {src_g}, h: {src_h}; "
          f"n = {len(x)}, batch {a.batch_size}, PGD-{steps} ℓ∞ ε = {eps}, step {step:g}, α = {a.alpha}", flush=True)

    ours = {name: (lambda m=m: pgd(m, x, y, eps=eps, steps=steps, step_size=step, random_start=False,
                                   batch_size=a.batch_size))
            for name, m in (("g", g), ("h", h), ("mix", mix))}
    ours["art_mix"] = lambda: art_pgd(mix, x, y, eps=eps, step=step, steps=steps, batch_size=a.batch_size,
                                      device=device)
    ours["g"]()  # warm-up (allocator, kernels)
    best = {k: float("inf") for k in ours}
    advs, ratios, vs_arts = {}, [], []
    for r in range(a.repeats):
        now = {}
        for k, fn in ours.items():
            now[k], advs[k] = timed(fn, device)
            best[k] = min(best[k], now[k])
        ratios.append(now["mix"] / (now["g"] + now["h"]))
        vs_arts.append(now["art_mix"] / now["mix"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in now.items())
              + f"; mix/(g+h) {ratios[-1]:.3f}, ART/ours {vs_arts[-1]:.3f}", flush=True)

    acc = {k: (predict(mix if "mix" in k else {"g": g, "h": h}[k], v, a.batch_size) == y).float().mean().item()
           for k, v in advs.items()}
    print()
    print("| attack target | PGD-20 images/s | seconds | accuracy under it |")
    print("|---|---|---|---|")
    for k, label in (("g", "g alone"), ("h", "h alone"), ("mix", "mix h^α (ours)"), ("art_mix", "mix h^α (ART PGD)")):
        print(f"| {label} | {len(x) / best[k]:.1f} | {best[k]:.2f} | {100 * acc[k]:.2f} % |")
    ratio = best["mix"] / (best["g"] + best["h"])
    vs_art = best["art_mix"] / best["mix"]
    print()
    print(f"cost(mixed) / (cost(g) + cost(h)) = {ratio:.3f} best-of, {np.median(ratios):.3f} median of rounds"
          f"   (target <= 1.05)")
    print(f"ART PGD time / our PGD time on the mix = {vs_art:.3f} best-of, {np.median(vs_arts):.3f} median of rounds"
          f"   (target >= 1.0)")


if __name__ == "__main__":
    main()
