"""A few steps of every stage on one device, printing throughput (the helper of ``gpu_check.sh``).

    python benchmarks/gpu_check.py [--size full|tiny] [--device cuda|cpu] [--stage all|distributed|nproc]

Stages: zoo training steps (standard, ℓ∞ PGD-AT, TRADES, Gaussian; bf16 autocast on CUDA, as
``train.fit`` does), PGD-20, randomized-smoothing certification, mixing-network training steps
(when ``adasmooth.adaptive`` exists), and under torchrun a DDP training step plus sharded PGD.
``full`` uses the paper's CIFAR-10 architectures at 32x32 (≤ 5 min on one GPU); ``tiny`` uses
small stand-ins so that the script can be checked on a CPU in a minute.  Inputs are random
tensors of CIFAR-10's shape: throughput does not depend on the pixels.
"""
from __future__ import annotations

import argparse
import importlib.util
import time

import torch

from adasmooth import distributed, models, train
from adasmooth.attacks import pgd
from adasmooth.runtime import get_device

EPS = 8 / 255
# size -> batch, timed steps, input side, image counts, and the architectures standing in for
# the paper's ResNet-18 ("main"), TRADES WRN-34-10 and ConvNeXt-T
SIZES = {
    "full": dict(batch=256, steps=10, side=32, pgd_n=1000, cert_n=100, cert_samples=1000, mix_batch=128,
                 archs={"main": ("ResNet-18", "preact_resnet18", {}), "wrn": ("WRN-34-10", "wrn34_10", {}),
                        "convnext": ("ConvNeXt-T", "convnext_t", {"resize": 224})}),
    "tiny": dict(batch=4, steps=1, side=16, pgd_n=8, cert_n=2, cert_samples=16, mix_batch=2,
                 archs={"main": ("WRN-10-1", "wrn", {"depth": 10, "width": 1}),
                        "wrn": ("WRN-10-1", "wrn", {"depth": 10, "width": 1}),
                        "convnext": ("ConvNeXt-T@32", "convnext_t", {"resize": 32})}),
}


def _data(n: int, side: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, side, side, generator=g).to(device),
            torch.randint(0, 10, (n,), generator=g).to(device))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _report(stage: str, items: float, seconds: float, unit: str, device) -> None:
    if distributed.is_main():
        print(f"{stage:58s} {items / seconds:12.1f} {unit}/s   ({items:g} {unit} in {seconds:.2f} s on {device})",
              flush=True)


def _amp(device) -> str:
    return "bf16 AMP" if device.type == "cuda" else "fp32: AMP is CUDA-only"


def _model(size: dict, key: str, device):
    """(label, model) of architecture ``key`` of ``size``, seeded."""
    label, arch, kw = size["archs"][key]
    torch.manual_seed(0)
    return label, models.build(arch, num_classes=10, in_channels=3, **kw).to(device)


def check_training(size: dict, device) -> None:
    recipes = [("main", dict(recipe="standard")),
               ("main", dict(recipe="pgd", eps=EPS, attack_steps=10, step_size=2 / 255)),
               ("main", dict(recipe="gaussian", sigma=0.25)),
               ("wrn", dict(recipe="trades", eps=EPS, attack_steps=10, step_size=2 / 255)),
               ("convnext", dict(recipe="standard", optimizer="adam", lr=1e-3))]
    for key, kw in recipes:
        label, model = _model(size, key, device)
        batch = size["batch"] if key == "main" else max(2, size["batch"] // 4)
        x, y = _data(batch * (size["steps"] + 1), size["side"], device)
        cfg = train.TrainConfig(epochs=1, batch_size=batch, amp=True, schedule="constant", **kw)
        train.fit(model, x[:batch], y[:batch], cfg, device=device)  # warm-up step
        _sync(device)
        t0 = time.perf_counter()
        train.fit(model, x[batch:], y[batch:], cfg, device=device)
        _sync(device)
        _report(f"train {label} {kw['recipe']} ({_amp(device)})", batch * size["steps"],
                time.perf_counter() - t0, "img", device)
        del model


def check_pgd(size: dict, device) -> None:
    label, model = _model(size, "main", device)
    model.eval()
    x, y = _data(size["pgd_n"], size["side"], device, seed=1)
    pgd(model, x[:2], y[:2], eps=EPS, steps=1)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    adv = pgd(model, x, y, eps=EPS, steps=20, step_size=2 / 255, batch_size=500)
    _sync(device)
    assert (adv - x).abs().max() <= EPS + 1e-6
    _report(f"PGD-20 {label} (fp32)", size["pgd_n"], time.perf_counter() - t0, "img", device)


def check_certify(size: dict, device) -> None:
    if importlib.util.find_spec("adasmooth.certify") is None:
        print("certify: adasmooth.certify not found, skipped")
        return
    from adasmooth.certify import Smooth

    label, model = _model(size, "main", device)
    smooth = Smooth(model.eval(), 10, sigma=0.25, device=device)
    x, _ = _data(size["cert_n"], size["side"], device, seed=2)
    n, n0 = size["cert_samples"], max(1, size["cert_samples"] // 10)
    _sync(device)
    t0 = time.perf_counter()
    pred, radius = smooth.certify(x, n0=n0, n=n, failure_prob=0.001, batch_size=1000)
    _sync(device)
    assert pred.shape == radius.shape == (size["cert_n"],)
    _report(f"certify {label} σ=0.25 (noise samples)", size["cert_n"] * (n + n0), time.perf_counter() - t0,
            "sample", device)


def check_mixing(size: dict, device) -> None:
    if importlib.util.find_spec("adasmooth.adaptive") is None:
        print("mixing network: adasmooth.adaptive not found, skipped")
        return
    from adasmooth.adaptive import train_mixing_network

    (label, g), (_, h) = _model(size, "main", device), _model(size, "main", device)
    b, steps = size["mix_batch"], size["steps"]
    x, y = _data(b * (steps + 1), size["side"], device, seed=3)
    kw = dict(eps=EPS, epochs=1, batch_size=b, steps_df=10, device=device)
    train_mixing_network(g.eval(), h.eval(), x[:b], y[:b], **kw)  # warm-up step
    _sync(device)
    t0 = time.perf_counter()
    _, hist = train_mixing_network(g, h, x[b:], y[b:], **kw)
    _sync(device)
    _report(f"mixing-network train {label} x2 ({_amp(device)})", b * hist["steps"], time.perf_counter() - t0,
            "img", device)


def nproc(device_arg: str | None) -> int:
    """Processes for the distributed stage: one per GPU (at most 2), or 2 gloo processes on a CPU."""
    if get_device(device_arg).type == "cpu":
        return 2
    return max(1, min(2, torch.cuda.device_count()))


def check_distributed(size: dict, device_arg: str | None) -> None:
    """Under torchrun: one DDP training epoch and sharded PGD; checks that the ranks agree."""
    on_cpu = get_device(device_arg).type == "cpu"
    distributed.init_from_env(backend="gloo" if on_cpu else None)
    device = torch.device("cpu") if on_cpu else distributed.device()
    if on_cpu:  # share the cores between the ranks
        torch.set_num_threads(max(1, torch.get_num_threads() // distributed.world_size()))
    label, model = _model(size, "main", device)
    b = size["batch"]
    x, y = _data(b * max(2, size["steps"]), size["side"], device, seed=4)
    _sync(device)
    t0 = time.perf_counter()
    train.fit(model, x, y, train.TrainConfig(epochs=1, batch_size=b, schedule="constant"), device=device)
    _sync(device)
    t_train = time.perf_counter() - t0
    flat = torch.cat([p.detach().flatten().float() for p in model.state_dict().values()])
    ref = flat.clone()
    if distributed.is_distributed():
        torch.distributed.broadcast(ref, src=0)
    same = distributed.all_reduce_sum(float(not torch.equal(ref, flat)))[0] == 0  # every rank equals rank 0
    t0 = time.perf_counter()
    res = distributed.pgd_per_input(model.eval(), x, y, eps=EPS, steps=10, chunk_size=max(1, len(x) // 4))
    _sync(device)
    t_pgd = time.perf_counter() - t0
    w = distributed.world_size()
    if distributed.is_main():
        backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "none (1 process)"
        print(f"distributed: backend {backend}, world {w}, device {device}, ranks hold equal weights: {same}, "
              f"gathered {len(res['robust'])}/{len(x)} per-input results")
    _report(f"DDP train {label} x{w}", len(x), t_train, "img", device)
    _report(f"sharded PGD-10 {label} x{w}", len(x), t_pgd, "img", device)
    distributed.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--stage", choices=["all", "distributed", "nproc"], default="all")
    args = p.parse_args()
    size = SIZES[args.size]
    if args.stage == "nproc":
        return print(nproc(args.device))
    if args.stage == "distributed":
        return check_distributed(size, args.device)
    device = get_device(args.device)
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
              f"bf16 {torch.cuda.is_bf16_supported()}")
        torch.backends.cudnn.benchmark = True
    else:
        print(f"device: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    t0 = time.perf_counter()
    for check in (check_training, check_pgd, check_certify, check_mixing):
        check(size, device)
    print(f"all single-device stages: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
