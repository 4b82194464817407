"""The command line's side of ``python -m adasmooth reproduce`` (its arguments are declared in
``adasmooth/__main__.py``): ``-p NAME=VALUE`` values (:func:`parse_param`) and :func:`main`."""
from __future__ import annotations

import ast
import json
import sys

from .. import resolve
from . import interrupt
from .reproduce import run


def parse_param(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` of ``reproduce -p``: VALUE as JSON, else as a Python literal, else as a string; a
    relative ``path/to/file.py:factory`` is made absolute (the kernels run in the notebooks folder)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ValueError(f"-p takes NAME=VALUE (e.g. -p n_eval=200 or -p 'alphas=[0.0, 0.5, 1.0]'), got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
    if isinstance(value, str):
        value = resolve.absolute_file_spec(value)
    elif isinstance(value, list):
        value = [resolve.absolute_file_spec(v) if isinstance(v, str) else v for v in value]
    return name, value


def main(args) -> int:
    """Entry point of ``python -m adasmooth reproduce``; returns the exit status (1 when a notebook failed;
    130 after Ctrl-C and 143 after SIGTERM, which stop the run alike: :mod:`.interrupt`)."""
    extra = dict(parse_param(t) for t in getattr(args, "param", None) or [])
    try:
        with interrupt.sigterm_raises():
            outcomes = run(args.profile, only=args.only, force=args.force, device=args.device, progress=args.progress,
                           jobs=args.jobs, retrain=getattr(args, "retrain", False), params=extra,
                           verify_fraction=getattr(args, "verify_fraction", 0.1),
                           verify_seed=getattr(args, "verify_seed", 0))
    except KeyboardInterrupt as e:
        name = interrupt.signal_name(e)
        print(f"reproduce stopped by {name}: the running notebooks were stopped (kernels shut down, staging folders "
              "removed) and keep their last good results; summary.md was not rewritten", file=sys.stderr, flush=True)
        return interrupt.EXIT_STATUS[name]
    failed = [o.name + (f" (showing the result of {o.kept})" if o.kept else "") for o in outcomes
              if o.status == "failed"]
    out = outcomes[0].results.parent if outcomes else ""
    print(f"summary: {out}/summary.md" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
