"""The trainer of α_θ: its hyper-parameters (``MixingConfig``), ``train_mixing_network`` and the
training curve it records.

g and h are frozen; each step minimises the composite loss (:mod:`adasmooth.adaptive.loss`) on
clean inputs (ᾱ = 0) and on their training attacks (ᾱ = 1, :func:`adasmooth.adaptive.attacks.training_attack`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .. import checkpoint
from ..attacks import loss_name
from ..mixing_net import MixingNetwork, for_models
from ..runtime import generator, get_device, progress_bar, seed_everything
from ..taps import with_taps
from .attacks import training_attack
from .loss import composite_loss
from .model import AdaptiveMixedClassifier

log = logging.getLogger(__name__)


@dataclass
class MixingConfig:
    """Hyper-parameters of one mixing-network run (all of it goes into the checkpoint's hash)."""

    eps: float = 0.1
    norm: str = "linf"
    epochs: int = 1
    batch_size: int = 128           # clean images per step (plus as many attacked ones)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_frac: float = 0.04       # share of the steps with a linear warm-up (then cosine)
    grad_clip: float = 10.0
    c_ce: float = 0.0
    c_bce: float = 1.5
    c_prod: float = 0.2
    clean_weight: float = 1.0       # per-sample weight of clean inputs in the loss (attacked: 1)
    eps_low: float = 0.4            # ε' = ε·U(eps_low, eps_high)
    eps_high: float = 1.1
    steps_df: int = 20              # PGD steps = round(χ²(steps_df))
    step_factor: float = 5.0        # step size = step_factor·ε'/steps
    w_max: float = 0.4              # attacker's α-term weight w ~ U(0, w_max)
    momentum_max: float = 0.0       # training-attack momentum μ ~ U(0, momentum_max) (published: 0.9)
    attack_losses: tuple = ("ce",)  # training-attack base losses, one drawn per step (ce, margin, dlr)
    width: int = 64
    blocks: int = 1
    # momentum of the head's BatchNorm running statistics (used by training attacks and at
    # evaluation). The published 0.01 averages over ~1000s of updates; in runs of a few hundred
    # steps it lags the drifting γ_raw far behind, so we default to 0.1.
    bn_momentum: float = 0.1
    train_subset: int | None = None  # class-balanced subset of the training set
    split: str = "fit"              # training images: the training set less the validation slice
    seed: int = 0
    amp: bool = True                # bf16 autocast, used on CUDA only

    def __post_init__(self):
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {self.norm!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must lie in [0, 1), got {self.warmup_frac}")
        if min(self.c_ce, self.c_bce, self.c_prod) < 0:
            raise ValueError("c_ce, c_bce and c_prod must be >= 0")
        if not 0 <= self.eps_low <= self.eps_high:
            raise ValueError(f"need 0 <= eps_low <= eps_high, got ({self.eps_low}, {self.eps_high})")
        if not 0 <= self.w_max <= 1:
            raise ValueError(f"w_max must lie in [0, 1], got {self.w_max}")
        self.attack_losses = tuple(self.attack_losses)
        for loss in self.attack_losses or ("",):
            loss_name(loss)  # ValueError naming the allowed losses
        if not 0 <= self.momentum_max < 1:
            raise ValueError(f"momentum_max must lie in [0, 1), got {self.momentum_max}")
        if self.split not in ("train", "fit"):
            raise ValueError(f"split must be 'train' or 'fit', got {self.split!r}")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must lie in (0, 1], got {self.bn_momentum}")

    def to_dict(self) -> dict:
        """The config as JSON types (tuples as lists), as it is stored in a checkpoint's metadata."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _scheduler(opt, total: int, warmup_frac: float):
    warm = max(1, int(round(warmup_frac * total)))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_mixing_network(g: nn.Module, h: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         config: MixingConfig | None = None, *, net: MixingNetwork | None = None, device=None,
                         progress: bool = False, state_path: str | Path | None = None, save_every: int = 50,
                         max_steps: int | None = None, **kwargs) -> tuple[AdaptiveMixedClassifier, dict]:
    """Train α_θ on (x, y) with g, h frozen; return ``(model, {"loss", "ce", "bce", "seconds", "steps"})``.

    Each step takes ``batch_size`` clean images (ᾱ = 0) and their training attacks (ᾱ = 1),
    minimises the composite loss with AdamW (linear warm-up, cosine decay), clips the gradient
    norm, and uses bf16 autocast on CUDA only.  The head's BatchNorm running statistics are
    initialised from the first batch (then an exponential average with ``bn_momentum``).
    Step k draws its randomness from a generator seeded with (seed, k), so a run resumed from
    ``state_path`` (written atomically every ``save_every`` steps) gives the same weights.
    ``kwargs`` build a ``MixingConfig`` when ``config`` is None; ``max_steps`` stops early.  g and h
    without ``forward_with_taps`` are read through :class:`adasmooth.taps.Tapped` (default tap layers).
    """
    cfg = _config(config, kwargs, x, y)
    g, h = with_taps(g), with_taps(h)
    device = get_device(device)
    seed_everything(cfg.seed)
    if net is None:
        net = for_models(g, h, width=cfg.width, blocks=cfg.blocks)
    net.bn.momentum = cfg.bn_momentum
    model = AdaptiveMixedClassifier(g, h, net).to(device)
    n = x.shape[0]
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"need at least batch_size={cfg.batch_size} training images, got {n}")
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(opt, total, cfg.warmup_frac)
    hist = _resume(state_path, cfg, net, opt, sched, device)
    use_amp = cfg.amp and device.type == "cuda"
    last = total if max_steps is None else min(total, max_steps)
    bar = progress_bar(range(hist["steps"], last), progress=progress, desc="mixing network", leave=False)
    t0 = time.perf_counter()
    perm, perm_epoch = None, -1
    for k in bar:
        epoch, i = divmod(k, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = torch.randperm(n, generator=generator(cfg.seed * 100_003 + epoch)), epoch
        idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        xb, yb = x[idx].to(device), y[idx].to(device)
        loss, parts = _train_step(model, net, opt, sched, cfg, xb, yb, k, use_amp, device)
        _record(hist, k, loss, parts)
        if progress:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if state_path is not None and ((k + 1) % save_every == 0 or k + 1 == last):
            t0 = _save_state(state_path, cfg, net, opt, sched, hist, t0)
    hist["seconds"] += time.perf_counter() - t0
    model.eval()
    return model, hist


def _config(config: MixingConfig | None, kwargs: dict, x: torch.Tensor, y: torch.Tensor) -> MixingConfig:
    if config is not None and kwargs:
        raise ValueError("pass either config or keyword hyper-parameters, not both")
    cfg = config if config is not None else MixingConfig(**kwargs)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    return cfg


def _resume(state_path, cfg: MixingConfig, net, opt, sched, device) -> dict:
    """The history to continue from: a fresh one, or the one saved at ``state_path`` (which also restores
    the network, optimizer and scheduler)."""
    hist = {"loss": [], "ce": [], "bce": [], "seconds": 0.0, "steps": 0}
    meta = checkpoint.resume(state_path, cfg.to_dict(), {"net": net, "optimizer": opt, "scheduler": sched},
                             map_location=device)
    if meta is not None:
        hist = meta["history"]
        log.info("resuming the mixing network from step %d", hist["steps"])
    return hist


def _train_step(model: AdaptiveMixedClassifier, net: MixingNetwork, opt, sched, cfg: MixingConfig,
                xb: torch.Tensor, yb: torch.Tensor, k: int, use_amp: bool, device):
    """Step k: attack the batch, minimise the composite loss on clean and attacked images; returns
    ``(loss, parts)`` of :func:`composite_loss`."""
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
        adv = training_attack(model, xb, yb, eps=cfg.eps, norm=cfg.norm, seed=cfg.seed * 1_000_003 + k,
                              eps_range=(cfg.eps_low, cfg.eps_high), steps_df=cfg.steps_df,
                              step_factor=cfg.step_factor, w_max=cfg.w_max,
                              momentum_max=cfg.momentum_max, losses=cfg.attack_losses)
        model.train()
        if k == 0:  # the head's running statistics start from the first batch's, not (0, 1)
            net.bn.reset_running_stats()
            net.bn.momentum, momentum = None, net.bn.momentum
        logp, _, gamma = model(torch.cat([xb, adv]), return_alpha=True)
        if k == 0:
            net.bn.momentum = momentum
    m = len(yb)
    pseudo = torch.cat([torch.zeros(m, device=device), torch.ones(m, device=device)])
    weight = torch.cat([torch.full((m,), cfg.clean_weight, device=device), torch.ones(m, device=device)])
    loss, parts = composite_loss(logp, torch.cat([yb, yb]), gamma, pseudo, c_ce=cfg.c_ce, c_bce=cfg.c_bce,
                                 c_prod=cfg.c_prod, weight=weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    return loss, parts


def _record(hist: dict, k: int, loss: torch.Tensor, parts: dict):
    hist["loss"].append(loss.item())
    hist["ce"].append(parts["ce"].mean().item())
    hist["bce"].append(parts["bce"].mean().item())
    hist["steps"] = k + 1


def _save_state(state_path, cfg: MixingConfig, net, opt, sched, hist: dict, t0: float) -> float:
    """Add the time since ``t0`` to the history, write the resumable state atomically; returns the new t0."""
    hist["seconds"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    checkpoint.save(state_path, {"net": net.state_dict(), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict()},
                    {"config": cfg.to_dict(), "history": hist})
    return t0


def training_curve(hist: dict, points: int = 25) -> dict:
    """The training curve recorded with a mixing network: the composite loss and its CE and BCE parts,
    averaged over ``points`` consecutive windows of steps (``step`` is each window's last step)."""
    n = len(hist["loss"])
    if n == 0:
        return {"step": [], "loss": [], "ce": [], "bce": []}
    edges = sorted({round(i * n / points) for i in range(1, points + 1)} | {n})
    out, start = {"step": [], "loss": [], "ce": [], "bce": []}, 0
    for end in edges:
        if end <= start:
            continue
        out["step"].append(end)
        for k in ("loss", "ce", "bce"):
            vals = hist[k][start:end]
            out[k].append(sum(vals) / len(vals))
        start = end
    return out
