"""The runner's worker-process lever: one ladder rung attacked in one process, then by ``--jobs`` forked workers
side by side, as wall-time ratios measured in one run (each into its own empty attack cache).

Runs the strong family (``comparison.attack_set``, ``Budget(family="strong")``) on the shipped ``fmnist-adaptive``
at ``--steps`` per attack, on ``--n`` of the headline's test images split into ``--shards`` shards, first with
``jobs=1`` and then with ``jobs=--jobs``, one torch thread per process, and prints both wall times, the speed-up and
whether the per-image results are identical (they must be: the same shards, the same keys).  Run it with as many
free cores as ``--jobs``.

Usage: python benchmarks/runner_jobs.py [--n 100] [--steps 5] [--shards 2] [--jobs 2]
"""
import argparse
import os
import tempfile
import time
from dataclasses import replace

import torch

from adasmooth import learned
from adasmooth.attack_cache import fingerprint
from adasmooth.comparison import Budget, evaluate, test_images
from adasmooth.comparison.convergence import LADDER_BATCH


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(1)
    model = learned.get("fmnist-adaptive", device="cpu").to(memory_format=torch.channels_last)
    x, y, _ = test_images("fashion-mnist", 1000, Budget(), "cpu")
    x, y = x[:a.n], y[:a.n]
    budget = replace(Budget(apgd_iter=a.steps).with_steps(a.steps), batch_size=LADDER_BATCH)
    ident = fingerprint(model, extra={"benchmark": "runner_jobs"})
    out = {}
    for jobs in (1, a.jobs):
        with tempfile.TemporaryDirectory() as d:
            os.environ["ADASMOOTH_DATA"] = d
            t0 = time.perf_counter()
            res = evaluate(model, x, y, budget, identity=ident, shards=a.shards, jobs=jobs)
            out[jobs] = (time.perf_counter() - t0, res["worst"])
    (t1, w1), (tj, wj) = out[1], out[a.jobs]
    print(f"strong family at {a.steps} steps, {a.n} images in {a.shards} shards, {len(res['steps'])} attacks")
    print(f"one process:        {t1:7.1f} s")
    print(f"{a.jobs} worker processes: {tj:7.1f} s  speed x{t1 / tj:4.2f}  "
          f"attacked {int(wj.sum())}/{a.n}, {int((w1 != wj).sum())} images differ from one process")


if __name__ == "__main__":
    main()
