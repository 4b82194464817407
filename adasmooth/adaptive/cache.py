"""Mixing-network checkpoints in the zoo cache: load α_θ for a pair of zoo models, or train and cache it.

A checkpoint's name and metadata hold a hash of the mixing config and of both base checkpoints,
so a retrained base model never reuses a stale network.
"""
from __future__ import annotations

import logging
import platform
from pathlib import Path

import torch

from .. import checkpoint, data, zoo
from ..mixing_net import for_models
from ..runtime import __version__, get_device
from .model import AdaptiveMixedClassifier
from .train import MixingConfig, train_mixing_network, training_curve

log = logging.getLogger(__name__)


def _identity(g_name, h_name, cfg: MixingConfig, base_overrides, root) -> dict:
    metas = {}
    for role, name in (("g", g_name), ("h", h_name)):
        meta = zoo.metadata(name, base_overrides, root)
        if meta is None:
            raise checkpoint.CheckpointError(
                f"base model {name!r} is not cached in {zoo.cache_dir(root)}; train it first "
                f"(python -m adasmooth zoo train {name})")
        metas[role] = {"name": name, "config_hash": meta["config_hash"], "sha256": meta["sha256"]}
    return {"kind": "mixing-network", "g": metas["g"], "h": metas["h"], "mixing": cfg.to_dict()}


def mixing_stem(g_name: str, h_name: str, config: MixingConfig, *, base_overrides=None, root=None,
                net_root=None) -> Path:
    """Checkpoint path (without suffix) ``<zoo cache>/mixnet-<g>-<h>-<hash>``."""
    ident = _identity(g_name, h_name, config, base_overrides, root)
    folder = zoo.cache_dir(net_root if net_root is not None else root)
    return folder / f"mixnet-{g_name}-{h_name}-{checkpoint.config_hash(ident)}"


def get_mixing_network(g_name: str, h_name: str, config: MixingConfig | None = None, *,
                       train_if_missing: bool = True, root=None, net_root=None,
                       base_overrides: dict | None = None, device=None, progress: bool = False,
                       **kwargs) -> AdaptiveMixedClassifier:
    """Load (or train and cache) α_θ for zoo models g = ``g_name``, h = ``h_name``.

    The base models must already be cached in ``root`` (they are never trained here); the
    network's checkpoint lives in ``net_root`` (default: the same zoo cache).  The checkpoint's
    name and metadata hold a hash of the mixing config and of both base checkpoints, so a
    retrained base model never reuses a stale network; a corrupt or partial checkpoint raises
    ``CheckpointError``.  Returns the eval-mode ``AdaptiveMixedClassifier`` with a
    ``metadata`` attribute (training time, loss history summary).
    """
    cfg = config if config is not None else MixingConfig(**kwargs)
    device = get_device(device)
    if zoo.recipe(g_name).dataset != zoo.recipe(h_name).dataset:
        raise ValueError(f"g and h must share a dataset, got {zoo.recipe(g_name).dataset} and "
                         f"{zoo.recipe(h_name).dataset}")
    g = zoo.get(g_name, train_if_missing=False, overrides=base_overrides, root=root, device=device)
    h = zoo.get(h_name, train_if_missing=False, overrides=base_overrides, root=root, device=device)
    ident = _identity(g_name, h_name, cfg, base_overrides, root)
    s = mixing_stem(g_name, h_name, cfg, base_overrides=base_overrides, root=root, net_root=net_root)
    if not checkpoint.path_for(s, ".json").exists():
        if not train_if_missing:
            raise checkpoint.CheckpointError(f"mixing network {s.name} is not cached at {s}.pt")
        with checkpoint.exclusive(s):  # notebooks side by side: one trains, the other waits and loads it
            if not checkpoint.path_for(s, ".json").exists():
                _train_and_save(s, g, h, g_name, cfg, ident, device=device, progress=progress)
    state, meta = checkpoint.load(s, map_location="cpu")
    if meta.get("config") != ident:
        raise checkpoint.CheckpointError(f"checkpoint {s} was made with another configuration")
    net = for_models(g, h, width=cfg.width, blocks=cfg.blocks, bn_momentum=cfg.bn_momentum)
    net.load_state_dict(state, strict=True)
    model = AdaptiveMixedClassifier(g, h, net).to(device).eval()
    model.metadata = meta
    return model


def _train_and_save(s, g, h, g_name: str, cfg, ident: dict, *, device, progress) -> None:
    """Train the mixing network of checkpoint stem ``s`` (resumable from ``<s>.train-state``) and save it with
    its metadata (config, training time and curve, versions, device, threads)."""
    import torchvision

    dataset = zoo.recipe(g_name).dataset
    x, y = data.load(dataset, cfg.split)
    if cfg.train_subset:
        idx = data.balanced_subset(y, cfg.train_subset // data.info(dataset)["num_classes"], seed=cfg.seed)
        x, y = x[idx], y[idx]
    state_path = s.parent / (s.name + ".train-state")
    log.info("training mixing network %s on %s (%d images)", s.name, device, len(x))
    model, hist = train_mixing_network(g, h, x, y, cfg, device=device, progress=progress, state_path=state_path)
    meta = {"name": s.name, "config": ident, "config_hash": checkpoint.config_hash(ident),
            "train_seconds": round(hist["seconds"], 1), "steps": hist["steps"],
            "final_loss": hist["loss"][-1], "first_loss": hist["loss"][0],
            "curve": training_curve(hist),
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "python": platform.python_version(), "adasmooth": __version__},
            "device": str(device), "threads": torch.get_num_threads()}
    checkpoint.save(s, {k: v.detach().cpu() for k, v in model.net.state_dict().items()}, meta)
    checkpoint.remove(state_path)
