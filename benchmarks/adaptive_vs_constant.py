"""Adaptive smoothing vs a constant α at the same clean accuracy: notebook 04's headline, from the command line.

Runs :func:`adasmooth.comparison.headline` (the code notebook 04 runs): each learned mixer (``learned.RECIPES``,
head chosen on the validation split) and the constant α chosen on the same split for the same target face the
same attack set (:func:`adasmooth.comparison.attack_set`: PGD through α_θ with CE and margin losses, transfers
from g and h, APGD-T, Square on a subset).  Prints the per-method table with 95 % intervals, the paired McNemar
tests and the attack time of each learned mixer relative to the constant α's (a ratio measured in this run).

Usage: python benchmarks/adaptive_vs_constant.py [--mixers fmnist-adaptive ...] [--n 1000] [--steps 20]
       [--apgd-iter 100] [--square-queries 5000] [--square-n 200] [--no-cache] [--out results.json]
The models are read from the zoo (data/zoo ships them); with the attack cache the numbers replay in seconds,
with --no-cache every attack runs again (about 40 CPU-minutes per learned mixer at the defaults).
"""
import argparse
import sys
import time

import torch

from adasmooth import checkpoint, comparison, results


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--g", default="fmnist-standard")
    p.add_argument("--h", default="fmnist-linf-at")
    p.add_argument("--mixers", nargs="+", default=["fmnist-adaptive"], help="learned mixers (learned.RECIPES)")
    p.add_argument("--n", type=int, default=1000, help="class-balanced test images")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", default="linf")
    p.add_argument("--steps", type=int, default=20, help="PGD steps")
    p.add_argument("--apgd-iter", type=int, default=100, help="APGD-T iterations (0: off)")
    p.add_argument("--square-queries", type=int, default=5000, help="Square's queries (0: off)")
    p.add_argument("--square-n", type=int, default=200, help="images Square runs on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250, help="images per attack batch (part of the cache key)")
    p.add_argument("--cache", default=None, help="zoo folder (default: data/zoo)")
    p.add_argument("--no-cache", action="store_true", help="recompute every attack (no attack cache)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default=None, help="write the headline's JSON here (atomically)")
    return p


def _attack_seconds(m: dict) -> float:
    return sum(s["seconds"] for s in m["steps"]) + (m["square"]["seconds"] if m.get("square") else 0.0)


def main() -> int:
    a = _parser().parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    budget = comparison.Budget(eps=a.eps, norm=a.norm, steps=a.steps, apgd_iter=a.apgd_iter,
                               square_queries=a.square_queries, square_n=a.square_n, seed=a.seed,
                               batch_size=a.batch_size)
    t0 = time.perf_counter()
    doc = comparison.headline(g=a.g, h=a.h, learned_names=a.mixers, n_test=a.n, budget=budget, root=a.cache,
                              use_cache=not a.no_cache, device=a.device, progress=a.progress)
    wall = time.perf_counter() - t0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; n = {doc['n']}, wall {wall:.1f} s")
    for title, tab in comparison.headline_tables(doc).items():
        print(f"\n{title}\n{results.markdown_table(tab)}")
    const = _attack_seconds(doc["methods"]["constant"])
    for name in a.mixers:
        print(f"{name}: {comparison.verdict(doc, name)['verdict']}; attack seconds {_attack_seconds(doc['methods'][name]):.1f}"
              f" vs constant {const:.1f} (recorded when computed; ratio {_attack_seconds(doc['methods'][name]) / max(const, 1e-9):.2f})")
    if a.out:
        checkpoint.atomic_write_json(a.out, results._finite(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
