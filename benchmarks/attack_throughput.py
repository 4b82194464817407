"""PGD-20 throughput on the mixed classifier h^α against g and h alone, and against ART's PGD.

Measured in one run on the embedded default (Fashion-MNIST, SmallCNN g = fmnist-standard, h =
fmnist-linf-at; untrained SmallCNNs of the same shape when the zoo is not cached, which cost the
same): PGD-20, ℓ∞ ε = 0.1, no random start, probability mixing at α = 0.7.  Prints images/s on
the mix, on g and on h, the ratio cost(mixed) / (cost(g) + cost(h)) (target ≤ 1.05; the two
models' sum is the floor) and ART's PGD time / ours on the same mixed model (target ≥ 1.0).
Every batch of ``--batch-size`` images is attacked on g, h, the mix and with ART back to back, in
alternating order, ``--repeats`` times; the ratios are the medians of the per-batch ratios (steady
on a shared machine), the ratio of the total times is printed beside them.

Usage: python benchmarks/attack_throughput.py [--n 500] [--batch-size 100] [--repeats 3] [--device cpu]
"""
import argparse
import time

import numpy as np
import torch

from adasmooth import MixedClassifier, data, zoo
from adasmooth.attacks import pgd, predict
from adasmooth.runtime import batches, get_device


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


def art_pgd(model, input_shape, *, eps, step, steps, batch_size, device):
    """ART's ProjectedGradientDescentPyTorch on ``model`` (no random start), as a function (x, y) -> x_adv."""
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=input_shape, nb_classes=10,
                            clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu")
    att = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=eps, eps_step=step, max_iter=steps,
                                          num_random_init=0, batch_size=batch_size, verbose=False)
    return lambda x, y: torch.from_numpy(att.generate(x.cpu().numpy(), y=y.cpu().numpy())).to(device)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
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

    targets = {"g": g, "h": h, "mix": mix, "art_mix": mix}
    art = art_pgd(mix, tuple(x.shape[1:]), eps=eps, step=step, steps=steps, batch_size=a.batch_size, device=device)

    def run(k, xb, yb):
        if k == "art_mix":
            return art(xb, yb)
        return pgd(targets[k], xb, yb, eps=eps, steps=steps, step_size=step, random_start=False)

    run("g", x[:8], y[:8])  # warm-up (allocator, kernels)
    total = {k: 0.0 for k in targets}
    advs = {k: torch.empty_like(x) for k in targets}
    ratios, vs_arts = [], []
    # fine interleaving: every batch is attacked on g, h, mix and with ART back to back (order
    # alternating), so that load changes on a shared machine hit all four alike
    for r in range(a.repeats):
        for i, sl in enumerate(batches(len(x), a.batch_size)):
            now = {}
            keys = list(targets) if (r + i) % 2 == 0 else list(targets)[::-1]
            for k in keys:
                now[k], advs[k][sl] = timed(lambda: run(k, x[sl], y[sl]), device)
                total[k] += now[k]
            ratios.append(now["mix"] / (now["g"] + now["h"]))
            vs_arts.append(now["art_mix"] / now["mix"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {total[k]:.1f}s" for k in targets) + " (cumulative)", flush=True)
    per_pass = {k: v / a.repeats for k, v in total.items()}  # seconds per pass over the n images
    acc = {k: (predict(mix if "mix" in k else {"g": g, "h": h}[k], v, a.batch_size) == y).float().mean().item()
           for k, v in advs.items()}
    print()
    print("| attack target | PGD-20 images/s | seconds | accuracy under it |")
    print("|---|---|---|---|")
    for k, label in (("g", "g alone"), ("h", "h alone"), ("mix", "mix h^α (ours)"), ("art_mix", "mix h^α (ART PGD)")):
        print(f"| {label} | {len(x) / per_pass[k]:.1f} | {per_pass[k]:.2f} | {100 * acc[k]:.2f} % |")
    ratio = per_pass["mix"] / (per_pass["g"] + per_pass["h"])
    vs_art = per_pass["art_mix"] / per_pass["mix"]
    print()
    print(f"cost(mixed) / (cost(g) + cost(h)) = {np.median(ratios):.3f} (median over {len(ratios)} interleaved "
          f"batches; ratio of totals {ratio:.3f})   (target <= 1.05)")
    print(f"ART PGD time / our PGD time on the mix = {np.median(vs_arts):.3f} (median; ratio of totals "
          f"{vs_art:.3f})   (target >= 1.0)")


if __name__ == "__main__":
    main()
