"""Two-process speed-up of torch.distributed on this machine: training and sharded PGD evaluation.

    python benchmarks/distributed_speedup.py [--train-images 3000] [--eval-images 1000] [--steps 10] [--repeats 1]

Runs the same worker three ways and prints the ratios of their in-process timings (startup
excluded): one process with one thread, one process with two threads (the usual way to use two
cores), and ``torchrun --nproc_per_node 2`` with one thread per process (gloo on CPU).  Training is
one epoch of ℓ∞ PGD-AT (the fmnist-linf-at recipe, ε = 0.1, 3 attack steps) on a Fashion-MNIST
subset; evaluation is sharded PGD through ``adasmooth.distributed.pgd_per_input`` on a cached zoo
model (fmnist-linf-at at ε = 0.1, else fmnist-standard at ε = 0.02, else the model just trained).
Other jobs sharing the cores make the numbers noisy: the limit on 2 cores is 2x.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args) -> None:
    import torch

    from adasmooth import data, distributed, models, train, zoo

    distributed.init_from_env()
    x, y = data.load("fashion-mnist", "train")
    idx = data.balanced_subset(y, args.train_images // 10, seed=0)
    xt, yt = data.load("fashion-mnist", "test")
    ev = data.balanced_subset(yt, args.eval_images // 10, seed=0)
    torch.manual_seed(0)
    model = models.build("small_cnn")
    cfg = train.TrainConfig(recipe="pgd", epochs=1, eps=0.1, attack_steps=3, step_size=0.04, lr=2e-3,
                            batch_size=128, seed=0)
    distributed.barrier()
    t0 = time.perf_counter()
    train.fit(model, x[idx], y[idx], cfg, device="cpu")
    distributed.barrier()
    t_train = time.perf_counter() - t0
    evaluated, eps = "the model just trained", 0.1
    for name, e in (("fmnist-linf-at", 0.1), ("fmnist-standard", 0.02)):  # cached: the same model in every run
        if zoo.is_cached(name):
            model, evaluated, eps = zoo.get(name, train_if_missing=False, device="cpu"), name, e
            break
    t0 = time.perf_counter()
    res = distributed.pgd_per_input(model, xt[ev], yt[ev], eps=eps, steps=args.steps, chunk_size=50, seed=0)
    distributed.barrier()
    t_eval = time.perf_counter() - t0
    if distributed.is_main():
        Path(args.out).write_text(json.dumps({
            "world": distributed.world_size(), "threads": torch.get_num_threads(), "train_s": t_train,
            "eval_s": t_eval, "robust": res["robust"].float().mean().item(),
            "evaluated": f"{evaluated} (eps {eps:g})"}))
    distributed.cleanup()


def launch(args, nproc: int | None, threads: int) -> dict:
    out = Path(tempfile.mkdtemp()) / "r.json"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    me = [__file__, "--worker", "--out", str(out), "--train-images", str(args.train_images),
          "--eval-images", str(args.eval_images), "--steps", str(args.steps)]
    cmd = [sys.executable] + me if nproc is None else \
        [str(Path(sys.executable).parent / "torchrun"), "--standalone", f"--nproc_per_node={nproc}"] + me
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-images", type=int, default=3000)
    p.add_argument("--eval-images", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10, help="PGD steps of the evaluation")
    p.add_argument("--repeats", type=int, default=1, help="rounds over the configurations (minimum time counts)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    configs = {"1 process x 1 thread": (None, 1), "1 process x 2 threads": (None, 2),
               "2 processes x 1 thread (torchrun, gloo)": (2, 1)}
    runs: dict = {}
    for _ in range(args.repeats):  # interleaved rounds; the fastest of each configuration counts
        for k, (nproc, threads) in configs.items():
            r = launch(args, nproc, threads)
            if k in runs:
                r["train_s"], r["eval_s"] = min(r["train_s"], runs[k]["train_s"]), min(r["eval_s"], runs[k]["eval_s"])
            runs[k] = r
    print(f"\nPGD-AT training: {args.train_images} images, 1 epoch; sharded PGD-{args.steps}: "
          f"{args.eval_images} images")
    print(f"{'configuration':42s} {'train s':>8s} {'eval s':>8s} {'robust acc':>10s}")
    for k, r in runs.items():
        print(f"{k:42s} {r['train_s']:8.2f} {r['eval_s']:8.2f} {r['robust']:10.3f}")
    one, two_t, ddp = runs.values()
    print(f"\nspeed-up of 2 processes over 1 process x 1 thread:  training {one['train_s'] / ddp['train_s']:.2f}x, "
          f"sharded PGD {one['eval_s'] / ddp['eval_s']:.2f}x")
    print(f"speed-up of 2 processes over 1 process x 2 threads: training {two_t['train_s'] / ddp['train_s']:.2f}x, "
          f"sharded PGD {two_t['eval_s'] / ddp['eval_s']:.2f}x")
    print(f"PGD evaluated {ddp['evaluated']}; robust accuracy equal to one process: {one['robust'] == ddp['robust']}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
