"""What the first cell of every notebook does, in one place.

:func:`setup` checks every parameter against its allowed values (:mod:`adasmooth.parameters`: papermill runs
notebooks by hand too), seeds every generator, picks the device, loads the notebook's models (zoo names,
``package.module:factory``, ``path/file.py:factory`` or ``robustbench:<dataset>/<threat>/<name>``,
:mod:`adasmooth.resolve`) and its class-balanced
test images, in that order, so the same seed gives the same models and images in every notebook.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from . import data, parameters, resolve, runtime

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """A notebook's device, its models (in the order asked for) with their input records (for
    ``results.write(inputs=...)``), the ``resolve.model`` keyword arguments ``load`` (for models the
    notebook loads later) and its test images ``x``, ``y`` (None when it asked for none)."""

    device: torch.device
    load: dict
    models: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    num_classes: int | None = None


def setup(name: str, params: dict, *, models=("g", "h"), images: bool = True) -> Setup:
    """The first cell of notebook ``name`` with its parameters ``params`` (its ``globals()``):
    ``models`` names the parameters that hold model specs (loaded in that order); with ``images``,
    ``params["n_eval"]`` class-balanced test images of ``params["dataset"]`` (seed ``params["seed"]``)."""
    parameters.check_notebook(name, params)
    runtime.seed_everything(params["seed"])
    device = runtime.get_device(params.get("device"))
    load = dict(zoo_overrides=params.get("zoo_overrides") or {}, zoo_root=params.get("zoo_root"), device=device,
                train_if_missing=params.get("train_missing", True), progress=params.get("progress", False))
    out = Setup(device=device, load=load)
    for m in models:
        model, record = resolve.model(params[m], **load)
        out.models.append(model)
        out.inputs.append(record)
    named = "; " + ", ".join(f"{m} = {params[m]}" for m in models) if models else ""
    if images:
        dataset = params["dataset"]
        x_test, y_test = data.load(dataset, "test")
        out.num_classes = data.info(dataset)["num_classes"]
        idx = data.balanced_subset(y_test, params["n_eval"] // out.num_classes, seed=params["seed"])
        out.x, out.y = x_test[idx].to(device), y_test[idx].to(device)
        print(f"{len(out.y)} test images of {dataset} on {device}{named}")
    else:
        print(f"on {device}{named}")
    return out
