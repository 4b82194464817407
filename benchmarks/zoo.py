"""Train the embedded-default zoo into a fresh cache folder and print each recipe's time and metrics.

Usage: python benchmarks/zoo.py [--cache DIR] [--keep]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from adasmooth import zoo


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one)")
    p.add_argument("--names", nargs="*", default=zoo.DEFAULT_ZOO)
    a = p.parse_args()
    cache = Path(a.cache or tempfile.mkdtemp(prefix="adasmooth-zoo-"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cache {cache}", flush=True)
    t_all = time.perf_counter()
    for n in a.names:
        t0 = time.perf_counter()
        if zoo.is_cached(n, root=cache):
            meta = zoo.metadata(n, root=cache)
        else:
            meta = zoo.train_model(n, root=cache)
        m = meta["metrics"]
        print(f"{n:18s} wall {time.perf_counter() - t0:7.1f}s  train {m['train_seconds']:7.1f}s  "
              f"{json.dumps({k: v for k, v in m.items() if k not in ('train_seconds',)})}  "
              f"floors_met={meta['floors_met']}", flush=True)
    print(f"total wall {time.perf_counter() - t_all:.1f}s")
    print(zoo.format_table(zoo.table(root=cache)))


if __name__ == "__main__":
    main()
