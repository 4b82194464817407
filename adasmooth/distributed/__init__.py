"""Scale-out on ``torch.distributed``: the same code runs as one process or under ``torchrun``.

One process per device, NCCL on CUDA and gloo on CPU.  Training (``train.fit``) wraps the model in
DistributedDataParallel and gives each of the W ranks its share of every global batch of the
epoch's permutation, so ``batch_size`` stays the global batch and the averaged gradient is the
gradient of the global batch mean.  Evaluation (attacks, certification) shards the N inputs over
ranks in fixed chunks of ``chunk_size`` inputs (chunk k always gets seed ``seed + k``) and gathers
the per-input results in input order: any world size returns what one process returns.

The command line is in ``adasmooth/distributed/__main__.py``: an entry point, the only part of
this package that uses the zoo; the package itself imports nothing above runtime and attacks, so
the zoo and the trainer can import it.
"""
from __future__ import annotations

import datetime
import logging
import math
import os
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..attacks import logit_margin, pgd
from ..runtime import get_device, progress_bar

log = logging.getLogger(__name__)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
RANK_SEED_STRIDE = 2**32  # rank r draws its training randomness from seed + r·2³²


# --------------------------------------------------------------------------- process group
def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group that ``torchrun`` describes in its environment variables.

    Returns ``True`` once a process group is joined, ``False`` (and does nothing) when the process
    was not launched by torchrun.  ``backend`` defaults to NCCL when CUDA is available, gloo otherwise;
    with NCCL each process uses the GPU ``LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    if not all(v in os.environ for v in TORCHRUN_VARS):
        return False
    if not dist.is_available():
        raise RuntimeError("launched by torchrun but this torch build has no torch.distributed")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl' or 'gloo', got {backend!r}")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    log.info("rank %d/%d joined the %s process group", rank(), world_size(), backend)
    return True


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def cleanup(wait: bool = True) -> None:
    """Leave the process group, if one was joined.

    With ``wait`` the ranks first meet at a barrier, so that none tears its connections down while
    another still uses them (gloo can abort the late rank); pass ``wait=False`` on an error path.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if wait and is_distributed():
                dist.barrier()
        finally:
            dist.destroy_process_group()


def device() -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` under NCCL, else :func:`runtime.get_device`."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return get_device(None)


def rank_seed(seed: int) -> int:
    """This rank's seed derived from ``seed`` (rank 0 keeps ``seed``: one process is unchanged)."""
    return int(seed) + rank() * RANK_SEED_STRIDE


# --------------------------------------------------------------------------- training helpers
def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when distributed, else ``model`` itself.

    DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts equal.
    """
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    p = next(model.parameters())
    ids = [p.device.index] if p.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def local_part(idx: torch.Tensor, *, rank_: int | None = None,
               world: int | None = None) -> tuple[torch.Tensor, float]:
    """This rank's share ``idx[rank::W]`` of a global batch, and the loss weight ``W·n_r/n``.

    DDP averages the W ranks' gradients; weighting rank r's batch-mean loss by W·n_r/n makes that
    average the gradient of the global batch mean even when n is not a multiple of W.  A global
    batch smaller than W is first padded by repeating its items (as DistributedSampler pads).
    """
    w = world_size() if world is None else world
    r = rank() if rank_ is None else rank_
    if not 0 <= r < w:
        raise ValueError(f"rank must lie in [0, {w}), got {r}")
    if len(idx) == 0:
        raise ValueError("idx must hold at least one index")
    if len(idx) < w:
        idx = idx.repeat(math.ceil(w / len(idx)))[:w]
    mine = idx[r::w]
    return mine, w * len(mine) / len(idx)


def sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank; no-op in one process.

    DDP broadcasts buffers before each forward pass, so after the last pass they still differ.
    """
    if not is_distributed():
        return
    for b in model.buffers():
        t = b.detach().to(_comm_device())
        dist.broadcast(t, src=0)
        b.data.copy_(t)


def all_reduce_sum(*values: float) -> list[float]:
    """Sum python numbers over ranks (float64); identity in a single process."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- sharded evaluation
def shard(n: int, chunk_size: int = 1, *, rank_: int | None = None, world: int | None = None) -> slice:
    """The contiguous block of ``range(n)`` that a rank handles, made of whole chunks.

    The ⌈n/chunk_size⌉ chunks are split in W contiguous runs of ⌈chunks/W⌉ (the last runs may be
    shorter or empty), so concatenating the ranks' blocks in rank order gives input order.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    w = world_size() if world is None else world
    r = rank() if rank_ is None else rank_
    if not 0 <= r < w:
        raise ValueError(f"rank must lie in [0, {w}), got {r}")
    per = math.ceil(math.ceil(n / chunk_size) / w) * chunk_size
    return slice(min(r * per, n), min((r + 1) * per, n))


def gather_ordered(local: Any, n: int, chunk_size: int = 1) -> Any:
    """Reassemble per-input results of :func:`shard`'s blocks into input order on every rank.

    ``local``: a tensor whose first dimension indexes this rank's inputs, or a tuple / list / dict
    of such tensors, or ``None`` on a rank whose block is empty.  Every tensor is padded to the
    longest block, all-gathered, trimmed and concatenated in rank order.  Returns ``local`` as is in
    a single process.
    """
    mine = shard(n, chunk_size)
    if not is_distributed():
        _check_length(local, mine.stop - mine.start)
        return local
    if local is not None:
        _check_length(local, mine.stop - mine.start)
    templates = [None] * world_size()
    dist.all_gather_object(templates, None if local is None else _template(local))
    template = next((t for t in templates if t is not None), None)
    if template is None:
        raise ValueError(f"no rank has results to gather (n={n})")
    if local is None:
        local = _empty_like(template)
    lengths = [shard(n, chunk_size, rank_=r).stop - shard(n, chunk_size, rank_=r).start
               for r in range(world_size())]
    return _map(lambda t: _gather_tensor(t, lengths), local)


def sharded_map(fn: Callable, *inputs: torch.Tensor, chunk_size: int = 100, seed: int | None = None,
                progress: bool = False) -> Any:
    """``fn`` applied chunk by chunk to this rank's shard of ``inputs``, gathered in input order.

    ``fn(*chunk_inputs)`` (plus ``seed=seed + k`` for chunk k when ``seed`` is given) returns a
    tensor, or a tuple / list / dict of tensors, with one row per input (an attack, a certification).
    Chunks and their seeds do not depend on the world size, so every world size gives the same
    per-input results; use the same ``chunk_size`` to compare runs.
    """
    if not inputs:
        raise ValueError("sharded_map needs at least one input tensor")
    n = len(inputs[0])
    if any(len(t) != n for t in inputs):
        raise ValueError(f"inputs must have the same length, got {[len(t) for t in inputs]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    block = shard(n, chunk_size)
    outs = []
    starts = range(block.start, block.stop, chunk_size)
    for start in progress_bar(starts, progress=progress and is_main(), desc="sharded", leave=False):
        part = slice(start, min(start + chunk_size, block.stop))
        kw = {} if seed is None else {"seed": seed + start // chunk_size}
        outs.append(fn(*(t[part] for t in inputs), **kw))
    local = _concat(outs) if outs else None
    if local is None and not is_distributed():
        raise ValueError("inputs must not be empty")
    return gather_ordered(local, n, chunk_size)


# --------------------------------------------------------------------------- result trees
def _map(f, obj):
    if isinstance(obj, torch.Tensor):
        return f(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map(f, o) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(f, v) for k, v in obj.items()}
    raise ValueError(f"results must be tensors or tuples/lists/dicts of tensors, got {type(obj).__name__}")


def _leaves(obj) -> list[torch.Tensor]:
    out = []
    _map(out.append, obj)
    return out


def _check_length(obj, n: int) -> None:
    for t in _leaves(obj):
        if t.ndim == 0 or len(t) != n:
            raise ValueError(f"every result must have {n} rows (one per input), got shape {tuple(t.shape)}")


def _concat(parts: list):
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, (tuple, list)):
        return type(first)(_concat([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    raise ValueError(f"results must be tensors or tuples/lists/dicts of tensors, got {type(first).__name__}")


def _template(obj):
    return _map(lambda t: ("tensor", tuple(t.shape[1:]), str(t.dtype).removeprefix("torch."), t.device.type), obj)


def _empty_like(template):
    if isinstance(template, tuple) and len(template) == 4 and template[0] == "tensor":
        _, shape, dtype, dev = template
        d = device() if dev == "cuda" else torch.device("cpu")
        return torch.empty((0, *shape), dtype=getattr(torch, dtype), device=d)
    if isinstance(template, (tuple, list)):
        return type(template)(_empty_like(t) for t in template)
    return {k: _empty_like(v) for k, v in template.items()}


def _comm_device() -> torch.device:
    return device() if dist.get_backend() == "nccl" else torch.device("cpu")


def _gather_tensor(t: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    dtype, dev = t.dtype, t.device
    x = t.detach().to(_comm_device())
    if dtype == torch.bool:  # gloo cannot all-gather bool
        x = x.to(torch.uint8)
    block = max(lengths)
    padded = torch.zeros((block, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[:len(x)] = x
    pieces = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(pieces, padded)
    out = torch.cat([p[:m] for p, m in zip(pieces, lengths)])
    return out.to(device=dev, dtype=dtype)


# --------------------------------------------------------------------------- command line
def pgd_per_input(model, x, y, *, eps: float, steps: int, norm: str = "linf", step_size=None,
                  restarts: int = 1, chunk_size: int = 100, seed: int = 0, progress: bool = False) -> dict:
    """Sharded PGD: per input, ``clean`` / ``robust`` correctness and the adversarial margin
    z_y - max_{i≠y} z_i of ``model`` at the PGD point (inputs in order, on every rank)."""
    dev = next(model.parameters()).device

    def one_chunk(xb, yb, seed):
        xb, yb = xb.to(dev), yb.to(dev)
        adv = pgd(model, xb, yb, eps=eps, steps=steps, norm=norm, step_size=step_size,
                  restarts=restarts, seed=seed)
        with torch.no_grad():
            z_clean, z_adv = model(xb), model(adv)
        return {"clean": (z_clean.argmax(1) == yb).cpu(), "robust": (z_adv.argmax(1) == yb).cpu(),
                "margin": logit_margin(z_adv.float(), yb).cpu()}

    return sharded_map(one_chunk, x, y, chunk_size=chunk_size, seed=seed, progress=progress)
