"""Train the embedded-default zoo into a fresh cache folder and print each recipe's time and metrics.

Usage: python benchmarks/zoo.py [--cache DIR] [--jobs N] [--names ...]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from adasmooth import results, runtime, zoo


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one)")
    p.add_argument("--names", nargs="*", default=zoo.DEFAULT_ZOO)
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per CPU core)")
    a = p.parse_args()
    cache = Path(a.cache or tempfile.mkdtemp(prefix="adasmooth-zoo-"))
    print(f"torch {torch.__version__}, {runtime.cpu_cores()} CPU cores, jobs {a.jobs or 'auto'}, cache {cache}",
          flush=True)
    t_all = time.perf_counter()
    metas = zoo.train_many(a.names, root=cache, jobs=a.jobs)
    for n in a.names:
        meta = metas[n]
        m = meta["metrics"]
        print(f"{n:18s} train {m['train_seconds']:7.1f}s  eval {m['eval_seconds']:6.1f}s  "
              f"{json.dumps({k: v for k, v in m.items() if k not in ('train_seconds', 'eval_seconds')})}  "
              f"floors_met={meta['floors_met']}", flush=True)
    print(f"total wall {time.perf_counter() - t_all:.1f}s (all models, side by side)")
    print(results.format_zoo_table(zoo.table(root=cache)))


if __name__ == "__main__":
    main()
