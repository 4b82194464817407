"""Command line: ``python -m adasmooth zoo list|train|verify|ship``, ``reproduce``, ``cache check|verify``,
``summary``, ``app``, ``notebooks sync``."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import app, attack_cache, data, learned, pipeline, results, shipped, zoo
from .pipeline import cache_tools
from .runtime import data_root


def _zoo_list(args) -> int:
    print(results.format_zoo_table(zoo.table(root=args.cache, dataset=None if args.all_datasets else "fashion-mnist",
                                     overrides=_overrides(args))))
    return 0


def _overrides(args):
    import json

    if not args.overrides:
        return None
    ov = json.loads(args.overrides)
    if not isinstance(ov, dict):
        raise ValueError(f"--overrides must be a JSON object, got {args.overrides!r}")
    return ov


def _zoo_train(args) -> int:
    from . import checkpoint, results, zoo

    ov = _overrides(args)

    todo = zoo.DEFAULT_ZOO if args.all else args.names
    if not todo:
        print("name a zoo model or pass --all", file=sys.stderr)
        return 2
    mixers = [n for n in todo if n in learned.RECIPES]
    todo = [n for n in todo if n not in learned.RECIPES]
    for n in todo:
        zoo.recipe(n)  # fail early on unknown names
    for n in todo:  # a checkpoint that fails its sha256: retrained (a shipped one: restored, or --force)
        st = zoo.status(n, ov, root=args.cache)
        if st in ("corrupt", "partial"):
            try:
                zoo.discard_corrupt([n], overrides=ov, root=args.cache, force=args.force)
            except checkpoint.CheckpointError as e:
                print(f"{n}: {e}", file=sys.stderr)
                return 1
            print(f"{n}: cached checkpoint was {st} (failed its sha256 check): deleted, retraining it")
    cached = {n for n in todo if zoo.is_cached(n, ov, root=args.cache) and not args.force}
    for n in todo:
        if n in cached:
            print(f"{n}: cached")
        elif args.force:
            checkpoint.remove(zoo.stem(n, ov, root=args.cache))
    metas = zoo.train_many(todo, overrides=ov, root=args.cache, device=args.device, jobs=args.jobs,
                           progress=args.progress)
    for n in todo:
        if n not in cached:
            print(f"{n}: {metas[n]['metrics']}")
    for n in mixers:  # learned mixers need their base models cached
        r = learned.recipe(n)
        zoo.train_many([r.g, r.h], overrides=ov, root=args.cache, device=args.device, jobs=1, progress=args.progress)
        m = learned.train(n, root=args.cache, base_overrides=ov, device=args.device, progress=args.progress)
        print(f"{n}: head {m.metadata['head']['val']}")
    print(results.format_zoo_table(zoo.table(root=args.cache, overrides=ov)))
    return 0


def _zoo_verify(args) -> int:
    from pathlib import Path

    if args.cache is not None and not Path(args.cache).is_dir():
        raise FileNotFoundError(f"--cache {args.cache}: no such zoo cache folder")
    rows = shipped.verify(args.cache)
    for r in rows:
        print(f"{r['status']:8s} {'shipped' if r['shipped'] else 'cached ':8s} {r['kind']:24s} {r['file']}")
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        print(f"{len(bad)} of {len(rows)} files fail their check; a shipped one is restored with "
              f"'git checkout -- data/zoo/FILE', a cached one is retrained by 'zoo train'", file=sys.stderr)
    return 1 if bad else 0


def _zoo_ship(args) -> int:
    files = shipped.ship(args.cache, training_threads=args.threads)
    print(f"{shipped.manifest_path(args.cache)}: {len(files)} files")
    return 0


def _manual_placement(name: str, root) -> str:
    """Where torchvision's dataset class for ``name`` looks for its files under ``root``, and which."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, data.DATASETS[name][0])
    if hasattr(cls, "base_folder"):  # CIFAR-10/100: the extracted archive's folder
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return (f"download {cls.url} on a machine with internet, extract it and copy its folder to "
                f"{Path(root) / cls.base_folder}/ (files: {', '.join(files)})")
    files = [f for f, _ in getattr(cls, "resources", [])]
    mirrors = getattr(cls, "mirrors", [])
    return (f"download {', '.join(files) or 'the raw files'}"
            f"{' from ' + mirrors[0] if mirrors else ''} on a machine with internet and copy them, gunzipped, "
            f"to {Path(root) / cls.__name__ / 'raw'}/")


def _data_fetch(args) -> int:
    import urllib.error

    data._check_name(args.name)
    try:  # a corrupt idx file: recopied from Debian's package, or removed so that it is downloaded again
        for note in data.check_files(args.name, download=True):
            print(note)
    except data.DataCorruptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split in ("train", "test"):
        try:
            x, _ = data.load(args.name, split, download=True)
        except data.DataCorruptError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and not str(e).startswith("Error downloading"):
                raise  # torchvision's MNIST-style classes wrap failed mirrors in this RuntimeError
            root = data_root()
            print(f"error: cannot download {args.name} ({(str(e).strip().splitlines() or [type(e).__name__])[0]}): "
                  f"this machine cannot reach the download.\n"
                  f"To place the files by hand, {_manual_placement(args.name, root)}; "
                  f"then 'python -m adasmooth data fetch {args.name}' (or any load) finds them there.",
                  file=sys.stderr)
            return 2
        print(f"{args.name} {split}: {tuple(x.shape)}")
    return 0


def _reproduce(args) -> int:
    return pipeline.main(args)


def _cache_check(args) -> int:
    rep = cache_tools.check(args.profile, only=args.only)
    print(rep.line())
    for stem, k in rep.missing.items():
        print(f"missing: {stem}: {k}.json (and what depends on it)")
    if args.prune:
        if rep.missing or args.only:
            print("--prune needs a complete check of every notebook (no --only, nothing missing): nothing removed")
            return 1
        stale = rep.unasked()
        for p in stale:
            p.unlink()
        print(f"removed {len(stale)} entries that no notebook of profile {args.profile} asks for")
    return 1 if rep.missing else 0


def _cache_verify(args) -> int:
    rep = cache_tools.verify(args.profile, only=args.only, fraction=args.sample, seed=args.seed,
                             keys=args.keys or None)
    n = sum(len(v) for v in rep.verified.values())
    print(f"{attack_cache.stats['read']} cached answers read, {n} recomputed: {attack_cache.stats['identical']} "
          f"identical, {attack_cache.stats['differing_images']} differing images in all (seed {args.seed})")
    if args.keys and n < len(set(args.keys)):
        print(f"not asked by the profile's notebooks: {sorted(set(args.keys) - {k for v in rep.verified.values() for k in v})}")
        return 1
    return 0


def _app(args) -> int:
    return app.serve(profile=args.profile, ip=args.ip, port=args.port, grid_from=args.grid_from,
                     allow_remote=args.allow_remote)


def _summary(args) -> int:
    path = pipeline.rewrite_summary(args.profile)
    print(path)
    if pipeline.update_readme(args.profile, path.parent):  # the README's generated results blocks (default profile)
        print(f"rewrote the results blocks of {pipeline.PROJECT / 'README.md'}")
    return 0


def _notebooks_sync(args) -> int:
    from . import parameters, pipeline

    if args.check:
        stale = parameters.out_of_sync(pipeline.notebook_dir())
        for src in stale:
            print(f"{src.name}: its parameters cell differs from adasmooth/parameters.py "
                  "(python -m adasmooth notebooks sync rewrites it)", file=sys.stderr)
        return 1 if stale else 0
    written = parameters.sync(pipeline.notebook_dir())
    for src in written:
        print(f"rewrote the parameters cell of {src.name}")
    if not written:
        print("every notebook's parameters cell matches adasmooth/parameters.py")
    return 0


def _zoo_commands(sub) -> None:
    """``zoo list|train|verify|ship``."""
    z = sub.add_parser("zoo", help="the model zoo").add_subparsers(dest="zoo_cmd", required=True)
    zl = z.add_parser("list", help="list recipes, cached or not, with metrics")
    zl.add_argument("--cache", default=None, help="cache folder (default: <data>/zoo)")
    zl.add_argument("--all-datasets", action="store_true")
    zl.add_argument("--overrides", default=None, help="JSON object of recipe overrides (tiny variants)")
    zl.set_defaults(func=_zoo_list)
    zt = z.add_parser("train", help="train and cache zoo models")
    zt.add_argument("names", nargs="*")
    zt.add_argument("--all", action="store_true", help="the whole embedded-default zoo")
    zt.add_argument("--force", action="store_true", help="retrain even if cached")
    zt.add_argument("--cache", default=None)
    zt.add_argument("--overrides", default=None, help="JSON object of recipe overrides, e.g. '{\"epochs\": 1}'")
    zt.add_argument("--device", default=None)
    zt.add_argument("--jobs", type=int, default=None,
                    help="CPU worker processes training models side by side (default: one per core)")
    zt.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    zt.set_defaults(func=_zoo_train)

    zv = z.add_parser("verify", help="check every cached and shipped checkpoint against its sha256")
    zv.add_argument("--cache", default=None)
    zv.set_defaults(func=_zoo_verify)
    zs = z.add_parser("ship", help="record the cache's checkpoints as shipped (writes data/zoo/SHIPPED.json)")
    zs.add_argument("--cache", default=None)
    zs.add_argument("--threads", type=int, default=1, help="torch threads the models were trained with")
    zs.set_defaults(func=_zoo_ship)


def _data_commands(sub) -> None:
    """``data fetch``."""
    d = sub.add_parser("data", help="datasets").add_subparsers(dest="data_cmd", required=True)
    df = d.add_parser("fetch", help="download a dataset through torchvision (needs internet)")
    df.add_argument("name")
    df.set_defaults(func=_data_fetch)


def _reproduce_command(sub) -> None:
    """``reproduce``: every notebook through papermill."""
    r = sub.add_parser("reproduce", help="run every notebook through papermill")
    r.add_argument("--profile", default="default", choices=["smoke", "default", "paper"])
    r.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 02,04")
    r.add_argument("--device", default=None)
    r.add_argument("--force", action="store_true", help="rerun notebooks whose results are current")
    r.add_argument("--jobs", type=int, default=None,
                   help="notebooks run side by side on a CPU (default: one per core; 1 on a GPU)")
    r.add_argument("--retrain", action="store_true",
                   help="train every model from scratch into results/<profile>-retrain/zoo, run the notebooks there "
                        "and compare each retrained model with the shipped one (retrain_comparison.md)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter of every selected notebook that declares it (repeatable; VALUE is read as "
                        "JSON or a Python literal, else as a string), e.g. -p n_eval=200 -p g=my_models.py:make_g")
    r.add_argument("--verify-fraction", type=float, default=0.1,
                   help="fraction of the cached attack answers each notebook reads that are recomputed and compared "
                        "image by image (at least the first of each notebook; 1.0: recompute everything; 0: none)")
    r.add_argument("--verify-seed", type=int, default=0, help="seed of the verified sample")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    r.set_defaults(func=_reproduce)


def _cache_commands(sub) -> None:
    """``cache check|verify``."""
    c = sub.add_parser("cache", help="the attack cache (data/attack-cache)").add_subparsers(dest="cache_cmd",
                                                                                          required=True)
    cc = c.add_parser("check", help="is every attack question of a profile's notebooks cached? (calibrations run, "
                                    "attacks do not; exit 1 listing what is missing)")
    cv = c.add_parser("verify", help="recompute a seeded sample of the cached answers (or the entries named) that "
                                     "a profile's notebooks read, and compare them image by image")
    cc.add_argument("--prune", action="store_true", help="remove the entries no notebook of the profile asks for")
    cv.add_argument("keys", nargs="*", help="entry names (file names without .json) to recompute")
    cv.add_argument("--sample", type=float, default=0.1, help="fraction of the entries read to recompute")
    cv.add_argument("--seed", type=int, default=0)
    for x, func in ((cc, _cache_check), (cv, _cache_verify)):
        x.add_argument("--profile", default="default", choices=["smoke", "default", "paper"])
        x.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 04,05")
        x.set_defaults(func=func)


def _app_command(sub) -> None:
    """``app``: the α explorer as a Voilà web app."""
    a = sub.add_parser("app", help="serve the α explorer (notebook 07) as a read-only web app with Voilà")
    a.add_argument("--profile", default="default", choices=["smoke", "default", "paper"],
                   help="whose parameters and recorded grid (results/<profile>/07_alpha_explorer.json) to show")
    a.add_argument("--ip", default="127.0.0.1", help="address to bind (default: this machine only; any other "
                                                     "address needs --allow-remote)")
    a.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --ip: served behind a Voilà token ($JUPYTER_TOKEN, else a random one "
                        "printed in the URL)")
    a.add_argument("--port", type=int, default=8866)
    a.add_argument("--grid-from", default=None, help="another results JSON of notebook 07 to show (checked before "
                                                     "serving)")
    a.set_defaults(func=_app)


def _summary_command(sub) -> None:
    """``summary``: summary.md (and the README blocks) from the recorded results."""
    s = sub.add_parser("summary", help="rewrite results/<profile>/summary.md from the recorded results (no notebook runs); "
                       "for the default profile also README.md's generated results blocks")
    s.add_argument("--profile", default="default", choices=["smoke", "default", "paper"])
    s.set_defaults(func=_summary)


def _notebooks_command(sub) -> None:
    """``notebooks sync``: the parameters cells from their declarations."""
    n = sub.add_parser("notebooks", help="the numbered notebooks").add_subparsers(dest="notebooks_cmd", required=True)
    s = n.add_parser("sync", help="rewrite each notebook's parameters cell from adasmooth/parameters.py (other cells "
                                  "untouched)")
    s.add_argument("--check", action="store_true", help="write nothing; exit 1 naming the notebooks out of sync")
    s.set_defaults(func=_notebooks_sync)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m adasmooth")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="cmd", required=True)

    for add in (_zoo_commands, _data_commands, _reproduce_command, _cache_commands, _app_command, _summary_command,
                _notebooks_command):
        add(sub)

    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PermissionError as e:  # a folder or file this user cannot write: one line naming it
        print(f"error: cannot write {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
