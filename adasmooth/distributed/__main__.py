"""Command line of :mod:`adasmooth.distributed`, plain or under torchrun::

    python -m adasmooth.distributed train NAME [--overrides JSON] [--cache DIR]
    python -m adasmooth.distributed eval-pgd NAME --eps E --steps K [--norm linf] [--images N] [--out FILE]
    torchrun --nproc_per_node 2 -m adasmooth.distributed train NAME ...

Not launched by torchrun, the same command runs as one process.  Only rank 0 prints and writes.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import torch.distributed

from .. import zoo
from . import cleanup, device, init_from_env, is_main, pgd_per_input, rank, world_size


def _cli_train(args) -> int:
    overrides = json.loads(args.overrides) if args.overrides else None
    if zoo.is_cached(args.name, overrides, args.cache) and not args.force:
        meta = zoo.metadata(args.name, overrides, args.cache)
    else:
        meta = zoo.train_model(args.name, overrides=overrides, root=args.cache, device=device(),
                               progress=args.progress and is_main())
    if is_main():
        print(json.dumps({"name": args.name, "world_size": world_size(), "metrics": meta["metrics"],
                          "checkpoint": str(zoo.stem(args.name, overrides, args.cache))}))
    return 0


def _cli_eval_pgd(args) -> int:
    from .. import checkpoint, data, zoo

    overrides = json.loads(args.overrides) if args.overrides else None
    r = zoo.recipe(args.name)
    k = data.info(r.dataset)["num_classes"]
    if args.images <= 0 or args.images % k:
        raise ValueError(f"--images must be a positive multiple of the {k} classes, got {args.images}")
    model = zoo.get(args.name, train_if_missing=False, overrides=overrides, root=args.cache, device=device())
    x, y = data.load(r.dataset, "test")
    idx = data.balanced_subset(y, args.images // k, seed=0)
    x, y = x[idx], y[idx]
    t0 = time.perf_counter()
    res = pgd_per_input(model, x, y, eps=args.eps, steps=args.steps, norm=args.norm, restarts=args.restarts,
                        chunk_size=args.chunk_size, seed=args.seed, progress=args.progress)
    seconds = time.perf_counter() - t0
    if is_main():
        out = {"name": args.name, "world_size": world_size(), "n": len(x), "eps": args.eps, "steps": args.steps,
               "norm": args.norm, "seed": args.seed, "chunk_size": args.chunk_size, "seconds": seconds,
               "clean_accuracy": res["clean"].float().mean().item(),
               "robust_accuracy": res["robust"].float().mean().item(),
               "per_input": {k: v.tolist() for k, v in res.items()}}
        if args.out:
            checkpoint.atomic_write_json(args.out, out)
        print(json.dumps({k: v for k, v in out.items() if k != "per_input"}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m adasmooth.distributed",
                                description="zoo training and sharded PGD, single-process or under torchrun")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("name", help="zoo model name")
    common.add_argument("--overrides", default=None, help='JSON of TrainConfig overrides, e.g. {"epochs": 1}')
    common.add_argument("--cache", default=None, help="zoo cache folder (default: <data>/zoo)")
    common.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    t = sub.add_parser("train", parents=[common], help="train and cache a zoo model (DDP under torchrun)")
    t.add_argument("--force", action="store_true", help="retrain even if cached")
    t.set_defaults(func=_cli_train)
    e = sub.add_parser("eval-pgd", parents=[common], help="PGD accuracy of a cached zoo model, sharded")
    e.add_argument("--eps", type=float, required=True)
    e.add_argument("--steps", type=int, required=True)
    e.add_argument("--norm", default="linf", choices=["linf", "l2"])
    e.add_argument("--restarts", type=int, default=1)
    e.add_argument("--images", type=int, default=1000, help="balanced test images (a multiple of the classes)")
    e.add_argument("--chunk-size", type=int, default=100)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, help="write per-input results here (JSON, rank 0)")
    e.set_defaults(func=_cli_eval_pgd)
    args = p.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    joined = not torch.distributed.is_initialized() and init_from_env()
    ok = False
    try:
        rc = args.func(args)
        ok = True
        return rc
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error (rank {rank()}): {e}", file=sys.stderr)
        return 2
    finally:
        if joined:  # leave a process group only if this call joined it; after an error, without waiting
            cleanup(wait=ok)


if __name__ == "__main__":
    sys.exit(main())
