"""The model zoo: named recipes, trained on first use and cached as hash-checked checkpoints.

Imports point down: zoo uses train, evaluate (the metrics a checkpoint records), checkpoint, data,
models, runtime and the distributed primitives; nothing among those imports zoo, and zoo imports nothing built
on it: :mod:`adasmooth.learned` registers its learned mixers' names (:func:`provide`) so that :func:`get` serves
them too, and :func:`discard_corrupt` reads the shipped manifest (:func:`shipped_files`) itself.

``get(name)`` returns an eval-mode model.  A cached checkpoint is found by the recipe's config
hash (recipe + overrides), so tiny test variants never collide with the real models.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from . import checkpoint, data, distributed, models, runtime
from .evaluate import checkpoint_metrics
from .runtime import __version__, data_root, get_device, progress_bar
from .train import TrainConfig, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """A zoo entry: dataset, architecture, training config, and the metrics recorded after training."""

    name: str
    dataset: str
    arch: str
    train: dict
    arch_kwargs: dict = field(default_factory=dict)
    eval_n: int | None = None            # test images for metrics (None: the whole test set)
    eval_attack_steps: int = 20
    floors: dict = field(default_factory=dict)  # metric -> minimum, checked and recorded
    description: str = ""

    def config(self, overrides: dict | None = None) -> dict:
        """The full configuration that identifies a checkpoint."""
        tr = dict(self.train)
        ov = dict(overrides or {})
        allowed = [f.name for f in fields(TrainConfig)] + ["eval_n"]
        unknown = [k for k in ov if k not in allowed]
        if unknown:
            raise ValueError(f"unknown override key(s) {unknown} for zoo model {self.name!r}; "
                             f"allowed keys: {', '.join(allowed)}")
        eval_n = ov.pop("eval_n", self.eval_n)
        tr.update(ov)

        return {"name": self.name, "dataset": self.dataset, "arch": self.arch, "arch_kwargs": self.arch_kwargs,
                "train": TrainConfig(**tr).to_dict(), "eval_n": eval_n,
                "eval_attack_steps": self.eval_attack_steps}


# Fashion-MNIST models train on the "fit" split: the validation slice stays unseen for calibration.
_FM = dict(optimizer="adam", lr=2e-3, batch_size=128, schedule="onecycle", split="fit")
# ℓ2 radius for Fashion-MNIST: CIFAR-10's ℓ2 0.5 is 0.29x the ℓ2 length of its ℓ∞ 8/255 corner
# (8/255·√3072 = 1.74); the same ratio on the ℓ∞ 0.1 corner of 28x28 (0.1·28 = 2.8) gives 0.8,
# which we round up to 1.0 so that ℓ2-AT is clearly more robust than the standard model.
FMNIST_L2_EPS = 1.0

RECIPES: dict[str, Recipe] = {}


def _add(r: Recipe):
    RECIPES[r.name] = r


_add(Recipe("fmnist-standard", "fashion-mnist", "small_cnn", dict(_FM, recipe="standard", epochs=5),
            floors={"clean": 0.90}, description="g: standard training"))
_add(Recipe("fmnist-linf-at", "fashion-mnist", "small_cnn",
            dict(_FM, recipe="pgd", epochs=4, eps=0.1, norm="linf", attack_steps=3, step_size=0.04),
            floors={"clean": 0.82, "robust": 0.70}, description="h: ℓ∞ PGD-AT, ε = 0.1"))
_add(Recipe("fmnist-l2-at", "fashion-mnist", "small_cnn",
            dict(_FM, recipe="pgd", epochs=3, eps=FMNIST_L2_EPS, norm="l2", attack_steps=3, step_size=0.4),
            description="h: ℓ2 PGD-AT, ε = 1.0"))
_add(Recipe("fmnist-trades", "fashion-mnist", "small_cnn",
            dict(_FM, recipe="trades", epochs=3, eps=0.1, norm="linf", attack_steps=3, step_size=0.04,
                 trades_beta=6.0),
            description="h: TRADES, ε = 0.1, β = 6"))
for _s in (0.12, 0.25, 0.5, 1.0):
    _add(Recipe(f"fmnist-gauss-{_s}", "fashion-mnist", "small_cnn",
                dict(_FM, recipe="gaussian", epochs=3, sigma=_s),
                description=f"randomized-smoothing base: Gaussian augmentation σ = {_s}"))

DEFAULT_ZOO = [n for n in RECIPES]  # the embedded default: everything above

_C10 = dict(optimizer="sgd", lr=0.1, weight_decay=5e-4, batch_size=128, schedule="onecycle")
_add(Recipe("cifar10-standard-rn18", "cifar10", "preact_resnet18", dict(_C10, recipe="standard", epochs=100),
            arch_kwargs={"in_channels": 3}, eval_n=1000, description="Fig. 1 g"))
_add(Recipe("cifar10-linf-at-rn18", "cifar10", "preact_resnet18",
            dict(_C10, recipe="pgd", epochs=100, eps=8 / 255, attack_steps=10, step_size=2 / 255),
            arch_kwargs={"in_channels": 3}, eval_n=1000, description="Fig. 1 h"))
_add(Recipe("cifar10-l2-at-rn18", "cifar10", "preact_resnet18",
            dict(_C10, recipe="pgd", epochs=100, eps=0.5, norm="l2", attack_steps=10, step_size=0.125),
            arch_kwargs={"in_channels": 3}, eval_n=1000, description="Fig. SM2b h"))
_add(Recipe("cifar10-convnext-t", "cifar10", "convnext_t",
            dict(_C10, recipe="standard", epochs=60, optimizer="adam", lr=1e-3, weight_decay=0.0),
            arch_kwargs={"in_channels": 3, "resize": 224}, eval_n=1000, description="Fig. SM2a g"))
_add(Recipe("cifar10-trades-wrn34", "cifar10", "wrn34_10",
            dict(_C10, recipe="trades", epochs=100, eps=8 / 255, attack_steps=10, step_size=2 / 255),
            arch_kwargs={"in_channels": 3}, eval_n=1000, description="Fig. SM2a h"))
for _s in (0.12, 0.25, 0.5, 1.0):
    _add(Recipe(f"cifar10-gauss-{_s}-rn18", "cifar10", "preact_resnet18",
                dict(_C10, recipe="gaussian", epochs=100, sigma=_s), arch_kwargs={"in_channels": 3},
                eval_n=1000, description=f"Fig. SM1 RS base σ = {_s}"))


def names(dataset: str | None = None) -> list[str]:
    """Recipe names, optionally only those of ``dataset``."""
    return [n for n, r in RECIPES.items() if dataset is None or r.dataset == dataset]


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


def cache_dir(root: str | Path | None = None) -> Path:
    return Path(root) if root is not None else Path(data_root()) / "zoo"


def stem(name: str, overrides: dict | None = None, root: str | Path | None = None) -> Path:
    """Checkpoint path (without suffix) of ``name`` with ``overrides``."""
    cfg = recipe(name).config(overrides)
    return cache_dir(root) / f"{name}-{checkpoint.config_hash(cfg)}"


def build(name: str, seed: int | None = None) -> models.Classifier:
    """An untrained model of recipe ``name`` (initialised from ``seed`` when given)."""
    r = recipe(name)
    info = data.info(r.dataset)
    kw = {"num_classes": info["num_classes"], "in_channels": info["channels"], **r.arch_kwargs}
    if r.arch == "small_cnn":
        kw.setdefault("side", info["side"])
    return models.build(r.arch, seed=seed, **kw)


def is_cached(name: str, overrides: dict | None = None, root=None) -> bool:
    s = stem(name, overrides, root)
    return checkpoint.path_for(s, ".json").exists() and checkpoint.path_for(s, ".pt").exists()


def status(name: str, overrides: dict | None = None, root=None) -> str:
    """``"ok"``, ``"missing"``, ``"partial"`` (metadata without weights or unreadable metadata) or
    ``"corrupt"`` (the weights fail their sha256) for the cached checkpoint of ``name``."""
    s = stem(name, overrides, root)
    meta_path, pt = checkpoint.path_for(s, ".json"), checkpoint.path_for(s, ".pt")
    if not meta_path.exists():
        return "missing"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return "partial"
    if not pt.exists():
        return "partial"
    return "ok" if checkpoint.sha256_file(pt) == meta.get("sha256") else "corrupt"


# names that a module built on the zoo serves through :func:`get` (adasmooth.learned registers its learned mixers):
# name -> loader(root=, base_overrides=, device=)
PROVIDERS: dict = {}


def provide(name: str, loader) -> None:
    """Let :func:`get` return ``loader(root=, base_overrides=, device=)`` for ``name`` (a learned mixer)."""
    if name in RECIPES:
        raise ValueError(f"{name!r} is already a zoo recipe")
    PROVIDERS[name] = loader


SHIPPED_MANIFEST = "SHIPPED.json"  # the shipped checkpoints' manifest in the zoo folder (adasmooth.shipped writes it)


def shipped_files(root=None) -> dict:
    """``{file name: {"sha256", "kind", ...}}`` of the shipped files in the zoo folder ({} when nothing is shipped)."""
    p = cache_dir(root) / SHIPPED_MANIFEST
    return json.loads(p.read_text())["files"] if p.exists() else {}


def _project_relative(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(runtime.project_root()))
    except ValueError:
        return str(path)


def discard_corrupt(names, *, overrides: dict | None = None, root=None, force: bool = False) -> list[str]:
    """Delete the corrupt or partial cached checkpoints of ``names`` (so that they are retrained) and return
    those names.  A shipped one (``data/zoo/SHIPPED.json``) is kept and raises ``CheckpointError`` with how
    to restore it, unless ``force``."""
    ship = shipped_files(root)
    out = []
    for n in dict.fromkeys(names):
        st = status(n, overrides, root)
        if st not in ("corrupt", "partial"):
            continue
        pt = checkpoint.path_for(stem(n, overrides, root), ".pt")
        if pt.name in ship and not force:
            raise checkpoint.CheckpointError(
                f"shipped checkpoint {_project_relative(pt)} of zoo model {n!r} is {st} (fails its sha256 check); "
                f"restore it with: git checkout -- {_project_relative(pt)}   "
                f"(or retrain it: python -m adasmooth zoo train {n} --force)")
        log.warning("zoo model %s: cached checkpoint %s is %s (fails its sha256 check): deleting it to retrain it",
                    n, pt, st)
        checkpoint.remove(stem(n, overrides, root))
        out.append(n)
    return out


def metadata(name: str, overrides: dict | None = None, root=None) -> dict | None:
    """The cached checkpoint's metadata, or ``None`` when not cached."""
    try:
        return checkpoint.read_metadata(stem(name, overrides, root))
    except checkpoint.CheckpointError:
        return None


def get(name: str, *, train_if_missing: bool = True, overrides: dict | None = None, root=None,
        device=None, progress: bool = False) -> models.Classifier:
    """Return the eval-mode model ``name`` on ``device``, training and caching it on first use.

    A learned mixer's name (``learned.RECIPES``, e.g. ``fmnist-adaptive``, registered by :func:`provide`) returns its
    ``AdaptiveMixedClassifier`` (never trained here: ``python -m adasmooth zoo train NAME``).

    A corrupt or partial checkpoint raises ``CheckpointError`` (it is never used nor silently
    replaced); a missing one raises ``CheckpointError`` unless ``train_if_missing``.
    """
    device = get_device(device)
    if name in PROVIDERS:  # a learned mixer: its mixing network and validation-chosen head
        return PROVIDERS[name](root=root, base_overrides=overrides, device=device)
    s = stem(name, overrides, root)
    if not checkpoint.path_for(s, ".json").exists():
        if not train_if_missing:
            raise checkpoint.CheckpointError(
                f"zoo model {name!r} is not cached at {s}.pt; train it with: python -m adasmooth zoo train {name}")
        train_model(name, overrides=overrides, root=root, device=device, progress=progress)
    state, meta = checkpoint.load(s, map_location="cpu")
    if meta.get("config") != recipe(name).config(overrides):
        raise checkpoint.CheckpointError(f"checkpoint {s} was made with another configuration")
    model = build(name)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def train_model(name: str, *, overrides: dict | None = None, root=None, device=None,
                progress: bool = False) -> dict:
    """Train recipe ``name`` (resuming an interrupted run), evaluate it, cache it; return metadata."""
    device = get_device(device)
    r = recipe(name)
    cfg = r.config(overrides)
    tcfg = TrainConfig(**cfg["train"])
    x, y = data.load(r.dataset, tcfg.split)
    if tcfg.train_subset:
        idx = data.balanced_subset(y, tcfg.train_subset // data.info(r.dataset)["num_classes"], seed=tcfg.seed)
        x, y = x[idx], y[idx]
    model = build(name, seed=tcfg.seed)
    s = stem(name, overrides, root)
    state_path = s.parent / (s.name + ".train-state")
    log.info("training %s on %s (%d images)", name, device, len(x))
    hist = fit(model, x, y, tcfg, device=device, progress=progress, state_path=state_path)
    if not distributed.is_main():  # under torchrun only rank 0 evaluates and writes the checkpoint
        distributed.barrier()
        return checkpoint.read_metadata(s)
    t0 = time.perf_counter()
    metrics = checkpoint_metrics(model, r.dataset, cfg, device=device, progress=progress)
    metrics["train_seconds"] = round(hist["seconds"], 1)
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 1)
    metrics["final_loss"] = hist["loss"][-1]
    floors_ok = {k: metrics.get(k, -1.0) >= v for k, v in r.floors.items()}
    import torchvision

    meta = {"name": name, "recipe": tcfg.recipe, "config": cfg, "config_hash": checkpoint.config_hash(cfg),
            "seed": tcfg.seed, "metrics": metrics, "floors": r.floors, "floors_met": all(floors_ok.values()),
            "versions": {"adasmooth": __version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "python": platform.python_version()},
            "device": str(device), "threads": torch.get_num_threads()}
    model_cpu_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = checkpoint.save(s, model_cpu_state, meta)
    checkpoint.remove(state_path)
    if not meta["floors_met"]:  # expected of a reduced-budget variant (overrides: the smoke profile's tiny models)
        log.log(logging.INFO if overrides else logging.WARNING, "%s misses its quality floors %s: %s%s", name,
                r.floors, metrics, f" (expected of a reduced-budget variant: overrides {overrides})" if overrides else "")
    distributed.barrier()
    return meta


def training_cost(name: str) -> int:
    """Rough relative training cost of a recipe: epochs × forward-backward passes per batch
    (PGD-AT adds its attack steps, TRADES one more for the clean KL term)."""
    t = recipe(name).train
    extra = {"pgd": t.get("attack_steps", 0), "trades": t.get("attack_steps", 0) + 1}.get(t["recipe"], 0)
    return t["epochs"] * (1 + extra)


def train_in_worker(name: str, overrides: dict | None, root, threads: int) -> dict:
    """:func:`train_model` on the CPU with ``threads`` torch threads: the task a worker process runs
    (:func:`train_many`, and the pipeline's scheduler next to notebooks)."""
    torch.set_num_threads(threads)
    return train_model(name, overrides=overrides, root=root, device="cpu")


def train_many(names, *, overrides: dict | None = None, root=None, device=None, jobs: int | None = None,
               progress: bool = False) -> dict[str, dict]:
    """Train the recipes in ``names`` that are not cached; return {name: metadata} for all of them.

    On a CPU, ``jobs`` worker processes (default: one per core, at most one per model) train one
    model each at a time with cores // jobs threads, costliest recipes first: on 2 cores two
    one-thread processes train the zoo faster than one process with two threads.  On CUDA (or with
    ``jobs=1``) the models train one after the other in this process.  A model's numbers depend on
    its thread count, so the same machine and ``jobs`` give the same checkpoints.
    """
    names = list(dict.fromkeys(names))
    for n in names:
        recipe(n)  # fail early on unknown names
    discard_corrupt(names, overrides=overrides, root=root)  # retrained below (a shipped one: an error)
    todo = sorted((n for n in names if not is_cached(n, overrides, root)), key=training_cost, reverse=True)
    dev = get_device(device)
    jobs = max(1, min(len(todo), runtime.cpu_cores())) if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if dev.type != "cpu" or jobs == 1 or len(todo) <= 1:
        for n in todo:
            train_model(n, overrides=overrides, root=root, device=dev, progress=progress)
    else:
        threads = max(1, runtime.cpu_cores() // jobs)
        log.info("training %d zoo models in %d processes x %d threads", len(todo), jobs, threads)
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(train_in_worker, n, overrides, root, threads): n for n in todo}
            for f in progress_bar(as_completed(futs), progress=progress, total=len(futs), desc="zoo"):
                f.result()  # re-raises a worker's error
                log.info("trained %s", futs[f])
    return {n: metadata(n, overrides, root) for n in names}


def table(root=None, dataset: str | None = "fashion-mnist", overrides: dict | None = None) -> list[dict]:
    """One row per recipe: name, cached (True, False, ``"corrupt"`` or ``"partial"``: its weights fail their
    sha256 check, ``zoo train NAME`` retrains it) and, when it is sound, its recorded metrics."""
    rows = []
    for n in names(dataset):
        meta = metadata(n, overrides, root=root)
        st = status(n, overrides, root)
        row = {"name": n, "cached": st == "ok" or (st if st != "missing" else False),
               "description": recipe(n).description}
        if meta and st == "ok":
            row.update({k: v for k, v in meta["metrics"].items()})
            row["floors_met"] = meta["floors_met"]
        rows.append(row)
    return rows
