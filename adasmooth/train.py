"""Training recipes for base classifiers: standard, PGD-AT (Madry et al.; ℓ∞ or ℓ2), TRADES
(Zhang et al.) and Gaussian-noise augmentation (Cohen et al.) for randomized-smoothing bases.

- standard:  min_θ CE(f(x), y)
- pgd:       min_θ CE(f(x'), y), x' = PGD_ε(x) on CE
- trades:    min_θ CE(f(x), y) + β·KL(softmax f(x) ‖ softmax f(x')), x' maximises that KL
- gaussian:  min_θ CE(f(x + ξ), y), ξ ~ N(0, σ²I)

Each epoch draws its randomness (shuffling, attack starts, noise) from a generator seeded with
(seed, epoch), so a run resumed from the last finished epoch gives the same weights.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint, distributed
from .attacks import pgd
from .runtime import generator, get_device, progress_bar, seed_everything

log = logging.getLogger(__name__)

RECIPES = ("standard", "pgd", "trades", "gaussian")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all of it goes into the checkpoint's config hash)."""

    recipe: str = "standard"
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"          # "adam" | "sgd" (momentum 0.9)
    schedule: str = "onecycle"       # "onecycle" | "cosine" | "constant"
    eps: float = 0.0                 # attack radius for pgd / trades
    norm: str = "linf"
    attack_steps: int = 7
    step_size: float | None = None   # default 2.5·ε/steps
    trades_beta: float = 6.0
    sigma: float = 0.0               # gaussian recipe
    train_subset: int | None = None  # first-k balanced subset of the training set (tests)
    split: str = "train"             # "fit": the training set less the held-out validation slice
    seed: int = 0
    amp: bool = True                 # bf16 autocast, used on CUDA only

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.recipe in ("pgd", "trades") and self.eps <= 0:
            raise ValueError(f"recipe {self.recipe!r} needs eps > 0, got {self.eps}")
        if self.recipe == "gaussian" and self.sigma <= 0:
            raise ValueError(f"recipe 'gaussian' needs sigma > 0, got {self.sigma}")
        if self.split not in ("train", "fit"):
            raise ValueError(f"split must be 'train' or 'fit', got {self.split!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("onecycle", "cosine", "constant"):
            raise ValueError(f"schedule must be 'onecycle', 'cosine' or 'constant', got {self.schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _optimizer(model, cfg: TrainConfig, steps_per_epoch: int):
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                              nesterov=True)
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                    pct_start=max(0.25, 2.0 / total))
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def _kl_to(p_clean):
    """Per-sample KL(p_clean ‖ softmax(z)) as an attack loss (TRADES inner maximisation)."""
    def loss(z, _y):
        return F.kl_div(F.log_softmax(z, 1), p_clean, reduction="none").sum(1)
    return loss


def batch_loss(model, xb, yb, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """The recipe's training loss on one batch (adversarial examples made in eval mode).

    ``model`` may be wrapped in DistributedDataParallel: attacks and no-grad passes then use the
    module inside, and only the passes of the training loss go through the wrapper.
    """
    if cfg.recipe == "standard":
        return F.cross_entropy(model(xb), yb)
    if cfg.recipe == "gaussian":
        noise = torch.randn(xb.shape, generator=g, device=xb.device, dtype=xb.dtype) * cfg.sigma
        return F.cross_entropy(model(xb + noise), yb)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=xb.device).item())
    base = distributed.unwrap(model)
    model.eval()
    if cfg.recipe == "pgd":
        adv = pgd(base, xb, yb, eps=cfg.eps, steps=cfg.attack_steps, norm=cfg.norm,
                  step_size=cfg.step_size, seed=seed)
        model.train()
        return F.cross_entropy(model(adv), yb)
    # TRADES: start near x (0.001·N(0,1)), maximise KL to the clean prediction
    with torch.no_grad():
        p_clean = F.softmax(base(xb), 1)
    start = torch.clamp(xb + 0.001 * torch.randn(xb.shape, generator=g, device=xb.device), 0, 1)
    adv = pgd(base, start, yb, eps=cfg.eps, steps=cfg.attack_steps, norm=cfg.norm,
              step_size=cfg.step_size, random_start=False, loss=_kl_to(p_clean), seed=seed)
    adv = torch.max(torch.min(adv, xb + cfg.eps), xb - cfg.eps).clamp(0, 1) if cfg.norm == "linf" else adv
    model.train()
    z = model(xb)
    kl = F.kl_div(F.log_softmax(model(adv), 1), F.softmax(z, 1), reduction="batchmean")
    return F.cross_entropy(z, yb) + cfg.trades_beta * kl


def _epoch(net, x, y, perm, cfg: TrainConfig, g, opt, sched, bar, *, world: int, use_amp: bool, device,
           progress: bool) -> tuple[float, int]:
    """One epoch's steps over the batches of ``perm`` (this rank's part of each under torchrun); returns the
    summed loss and the number of images it is summed over."""
    total, count = 0.0, 0
    for i in bar:
        idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        weight = 1.0
        if world > 1:
            idx, weight = distributed.local_part(idx)
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = batch_loss(net, xb, yb, cfg, g)
        opt.zero_grad(set_to_none=True)
        (loss * weight).backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
        count += len(idx)
        if progress:
            bar.set_postfix(loss=f"{total / count:.4f}")
    return total, count


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *,
        device=None, progress: bool = False, state_path: str | Path | None = None) -> dict:
    """Train ``model`` in place on (x, y) with recipe ``cfg``; return ``{"loss": [...], "seconds"}``.

    When ``state_path`` is given, the training state (weights, optimiser, scheduler, finished
    epochs, losses) is written there atomically after each epoch and a later call resumes from it.

    Under torchrun (a process group of W > 1 ranks, see ``adasmooth.distributed``) the model is
    wrapped in DistributedDataParallel, ``cfg.batch_size`` is the global batch of which each rank
    takes every W-th item, rank r draws its noise and attack seeds from seed + r·2³², and only
    rank 0 writes the training state.  A single process is unchanged by this.
    """
    device = get_device(device)
    seed_everything(cfg.seed)
    model.to(device)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    opt, sched = _optimizer(model, cfg, steps_per_epoch)
    start_epoch, losses, seconds = 0, [], 0.0
    meta = checkpoint.resume(state_path, cfg.to_dict(), {"model": model, "optimizer": opt, "scheduler": sched},
                             map_location=device)
    if meta is not None:
        start_epoch, losses, seconds = meta["epoch"], meta["loss"], meta["seconds"]
        log.info("resuming %s from epoch %d", cfg.recipe, start_epoch)
    use_amp = cfg.amp and device.type == "cuda"
    world = distributed.world_size()
    net = distributed.wrap(model)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        g = generator(distributed.rank_seed(cfg.seed * 100_003 + epoch), device)
        perm = torch.randperm(n, generator=generator(cfg.seed * 100_003 + epoch)).to(x.device)
        model.train()
        bar = progress_bar(range(steps_per_epoch), progress=progress,
                           desc=f"{cfg.recipe} epoch {epoch + 1}/{cfg.epochs}", leave=False)
        total, count = _epoch(net, x, y, perm, cfg, g, opt, sched, bar, world=world, use_amp=use_amp, device=device,
                              progress=progress)
        if world > 1:
            total, count = distributed.all_reduce_sum(total, count)
            distributed.sync_buffers(model)  # every rank ends the epoch with rank 0's BN statistics
        losses.append(total / count)
        seconds += time.perf_counter() - t0
        log.info("%s epoch %d/%d loss %.4f (%.1fs)", cfg.recipe, epoch + 1, cfg.epochs, losses[-1], seconds)
        if state_path is not None and distributed.is_main():
            checkpoint.save(state_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "scheduler": sched.state_dict()},
                            {"config": cfg.to_dict(), "epoch": epoch + 1, "loss": losses, "seconds": seconds})
    model.eval()
    return {"loss": losses, "seconds": seconds}
