"""One-command reproduction: run the numbered notebooks through papermill with a profile's parameters.

``python -m adasmooth reproduce --profile smoke|default|paper [--only 02,04] [--force]`` does, in order:

1. validate every selected notebook's parameters against the ones its ``parameters`` cell declares
   (``papermill.inspect_notebook``): an unknown name, an ill-typed value or a value outside the
   parameter's domain (``domains``) is an error before any kernel starts or any model is trained
   (papermill itself only warns);
2. train the zoo models the profile names that are not cached yet (timed, outside the kernels);
3. run each notebook (``papermill.execute_notebook``, cwd = the notebooks folder), unless its results are
   current: same parameters, same notebook code, same input files (the sha256 of every zoo checkpoint or
   model module it recorded).  Executed copies and results JSON go to ``results/<profile>/``; a failed
   notebook leaves its executed copy there for inspection.  On a CPU, steps 2 and 3 share one pool of
   worker processes (one per core): a notebook starts as soon as the zoo models it names are cached,
   and the work heading the longest chain goes first (:func:`schedule`);
4. write ``results/<profile>/summary.md`` with every table, figure and timing.

Parameter types come from the ``# type: ...`` comment of each parameter line (``int``, ``float``, ``str``,
``bool``, ``list``, ``dict``, ``None``, ``model`` = zoo name, ``package.module:factory``,
``path/to/file.py:factory`` or ``robustbench:<dataset>/<threat>/<name>``, ``models`` =
list of those, ``zoo`` = zoo name only; alternatives joined by ``|``), else from the type of the literal default.

The modules, each importing only those above it:

- :mod:`.params`: notebook discovery, the parameters' types and validation, fingerprints, the :class:`Plan`
  (and :data:`PROJECT`, looked up there at call time by the other modules: patch it there);
- :mod:`.execute`: one notebook through papermill, staged, and its :class:`Outcome`;
- :mod:`.scheduler`: notebooks one after the other or side by side in worker processes with the zoo training
  (:func:`schedule`);
- :mod:`.summary`: ``summary.md`` (:func:`write_summary`, :func:`rewrite_summary`) and the README hook;
- :mod:`.runlock`: one run at a time per results folder (a second one stops at once, naming the first's pid);
- :mod:`.interrupt`: SIGTERM handled like Ctrl-C (kernels stopped, staging removed, last good results kept);
- :mod:`.reproduce`: :func:`run` (plan, zoo, notebooks, summary) and :func:`prepare_zoo`;
- :mod:`.cli`: ``reproduce -p NAME=VALUE`` (:func:`parse_param`) and :func:`main`.

This module only re-exports their names (and the modules ``pipeline.profiles``, ``pipeline.zoo``, … that
callers reach through it).
"""
from __future__ import annotations

from .. import checkpoint, profiles, resolve, results, runtime, zoo  # noqa: F401  (reached as pipeline.zoo, …)
from .params import (PROJECT, Plan, _assigned_names, _is_model, check_parameters, declared_parameters,  # noqa: F401
                     discover, fingerprint, is_current, model_specs, notebook_dir, plan, select)
from .execute import KERNEL, KERNEL_QUIET, Outcome, _failure_line, run_notebook  # noqa: F401
from .scheduler import schedule, zoo_estimate  # noqa: F401
from .summary import _last_run, rewrite_summary, update_readme, write_summary  # noqa: F401
from .reproduce import prepare_zoo, run  # noqa: F401
from .cli import main, parse_param  # noqa: F401

