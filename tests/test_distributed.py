"""torch.distributed scale-out (two gloo processes under torchrun) and the CIFAR-10 `paper` configurations.

The two-process tests launch ``torchrun --standalone --nproc_per_node 2`` (one thread per process) and
compare with one process: training matches (accuracy; exactly-equivalent SGD steps), sharded PGD
returns the same per-input results, only rank 0 writes checkpoints.  Run as a script
(``torchrun ... tests/test_distributed.py OUT``) this file is the training/gathering worker.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adasmooth import checkpoint, data, distributed, models, profiles, train, zoo

TORCHRUN = Path(sys.executable).parent / "torchrun"
TINY = {"train_subset": 2000, "epochs": 2, "eval_n": 500}


def _run(args: list[str], *, nproc: int | None, timeout: float = 300) -> str:
    """Run ``python -m ...`` args plainly (nproc None) or under torchrun; return stdout."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for v in distributed.TORCHRUN_VARS:
        env.pop(v, None)
    cmd = ([sys.executable] if nproc is None else
           [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}"]) + args
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr[-4000:]}"
    return p.stdout


# --------------------------------------------------------------------------- worker (run under torchrun)
TRAIN_CLI = ["train", "fmnist-standard", "--overrides", json.dumps(TINY), "--no-progress"]
PGD_CLI = ["eval-pgd", "fmnist-standard", "--overrides", json.dumps(TINY), "--eps", "0.05", "--steps", "4",
           "--images", "120", "--chunk-size", "25", "--no-progress"]


def _worker(out: Path, *, pgd: bool = True) -> None:
    """Train a SmallCNN (SGD, uneven last batch) and a BatchNorm WRN (PGD-AT), gather odd shards, then
    run the command line's ``train`` (and ``eval-pgd``); each rank writes what it saw under ``out``."""
    from adasmooth.distributed.__main__ import main

    distributed.init_from_env()
    r = distributed.rank()
    saves = []
    real_save = checkpoint.save

    def counting_save(stem, *a, **k):
        saves.append(str(stem))
        return real_save(stem, *a, **k)

    checkpoint.save = counting_save
    try:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(203, 1, 28, 28, generator=g), torch.randint(0, 10, (203,), generator=g)
        torch.manual_seed(0)
        cnn = models.build("small_cnn")
        cfg = train.TrainConfig(epochs=2, batch_size=50, optimizer="sgd", lr=0.05, schedule="constant")
        hist = train.fit(cnn, x, y, cfg, device="cpu", state_path=out / "state")
        xw, yw = torch.rand(40, 3, 8, 8, generator=g), torch.randint(0, 10, (40,), generator=g)
        torch.manual_seed(0)
        wrn = models.build("wrn", depth=10, width=1, in_channels=3)
        train.fit(wrn, xw, yw, train.TrainConfig(recipe="pgd", eps=0.03, attack_steps=1, epochs=1, batch_size=16),
                  device="cpu")
        torch.manual_seed(0)  # the zoo model's initialisation
        assert main(TRAIN_CLI + ["--cache", str(out / "zoo")]) == 0
        zoo_saves = [s for s in saves if s.startswith(str(out / "zoo"))]
    finally:
        checkpoint.save = real_save
    if pgd:
        assert main(PGD_CLI + ["--cache", str(out / "zoo"), "--out", str(out / "pgd.json")]) == 0
    a, b = torch.arange(46.0).view(23, 2), torch.arange(23) % 3 - 1

    def fn(a, b, seed):
        return {"s": a.sum(1) + 1000 * seed, "pos": b > 0, "pair": (b * 2, a[:, :1])}

    gathered = {"big": distributed.sharded_map(fn, a, b, chunk_size=4, seed=7),
                "small": distributed.sharded_map(fn, a[:3], b[:3], chunk_size=5, seed=7)}  # rank 1 gets nothing
    torch.save({"cnn": cnn.state_dict(), "wrn": wrn.state_dict(), "loss": hist["loss"], "saves": saves,
                "zoo_saves": zoo_saves, "gathered": gathered, "world": distributed.world_size()},
               out / f"rank{r}.pt")
    distributed.cleanup()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two ranks under torchrun; the same in this process; sharded PGD as a plain single process."""
    ddp = tmp_path_factory.mktemp("ddp")
    _run([__file__, str(ddp)], nproc=2)
    single = tmp_path_factory.mktemp("single")
    _worker(single, pgd=False)
    _run(["-m", "adasmooth.distributed"] + PGD_CLI + ["--cache", str(ddp / "zoo"), "--out", str(single / "pgd.json")],
         nproc=None)
    load = lambda p: torch.load(p, weights_only=True)  # noqa: E731
    meta = lambda d: zoo.metadata("fmnist-standard", TINY, d / "zoo")  # noqa: E731
    return {"single": load(single / "rank0.pt"), "r0": load(ddp / "rank0.pt"), "r1": load(ddp / "rank1.pt"),
            "ddp_dir": ddp, "meta_single": meta(single), "meta_ddp": meta(ddp),
            "pgd1": json.loads((single / "pgd.json").read_text()), "pgd2": json.loads((ddp / "pgd.json").read_text())}


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_ddp_fit_equals_single_process_sgd_steps(runs):
    """Global batch split over ranks with weights W·n_r/n: the same SGD steps as one process."""
    s, r0 = runs["single"], runs["r0"]
    assert r0["world"] == 2 and s["world"] == 1
    assert _max_diff(s["cnn"], r0["cnn"]) < 1e-5
    assert r0["loss"] == pytest.approx(s["loss"], rel=1e-5)
    # the weights moved: the comparison is not trivially between two initialisations
    torch.manual_seed(0)
    assert _max_diff(models.build("small_cnn").state_dict(), r0["cnn"]) > 1e-3


def test_ddp_ranks_hold_identical_models_including_batchnorm_statistics(runs):
    r0, r1 = runs["r0"], runs["r1"]
    for part in ("cnn", "wrn"):
        assert all(torch.equal(r0[part][k], r1[part][k]) for k in r0[part]), part
    assert any("running_mean" in k for k in r0["wrn"])


def test_only_rank_zero_writes_training_state_and_checkpoints(runs):
    r0, r1, ddp = runs["r0"], runs["r1"], runs["ddp_dir"]
    assert r1["saves"] == []
    assert r0["saves"].count(str(ddp / "state")) == 2  # one training state per epoch
    assert len(r0["zoo_saves"]) == 3  # the zoo run: 2 epochs of training state, then the checkpoint
    state, meta = checkpoint.load(ddp / "state")
    assert meta["epoch"] == 2
    assert all(torch.equal(state["model"][k], r0["cnn"][k]) for k in r0["cnn"])
    files = sorted(p.name for p in (ddp / "zoo").iterdir())
    s = zoo.stem("fmnist-standard", TINY, ddp / "zoo")
    assert files == [s.name + ".json", s.name + ".pt"]  # one checkpoint; no train-state, no temporary files


def test_sharded_map_gathers_in_input_order_as_one_process(runs):
    a, b = torch.arange(46.0).view(23, 2), torch.arange(23) % 3 - 1
    chunk_seed = 7 + torch.arange(23) // 4
    for res in (runs["single"]["gathered"], runs["r0"]["gathered"], runs["r1"]["gathered"]):
        big, small = res["big"], res["small"]
        assert torch.equal(big["s"], a.sum(1) + 1000 * chunk_seed)
        assert big["pos"].dtype == torch.bool and torch.equal(big["pos"], b > 0)
        assert isinstance(big["pair"], tuple) and torch.equal(big["pair"][0], b * 2)
        assert torch.equal(big["pair"][1], a[:, :1])
        assert torch.equal(small["s"], a[:3].sum(1) + 7000) and torch.equal(small["pos"], b[:3] > 0)


def test_distributed_zoo_training_matches_single_process_accuracy(runs):
    s, d = runs["meta_single"]["metrics"], runs["meta_ddp"]["metrics"]
    assert s["clean"] > 0.5 and d["clean"] > 0.5  # both learnt (10 classes: chance 0.1)
    assert abs(s["clean"] - d["clean"]) <= 0.05
    assert abs(s["final_loss"] - d["final_loss"]) <= 0.1


def test_sharded_pgd_returns_the_single_process_per_input_results(runs):
    p1, p2 = runs["pgd1"], runs["pgd2"]
    assert p1["world_size"] == 1 and p2["world_size"] == 2 and p1["n"] == p2["n"] == 120
    assert p1["per_input"] == p2["per_input"]  # exact: correctness and float margins, in input order
    assert len(p2["per_input"]["margin"]) == 120
    assert p1["robust_accuracy"] < p1["clean_accuracy"]  # the attack did something
    assert all(m < 0 for m, ok in zip(p2["per_input"]["margin"], p2["per_input"]["robust"]) if not ok)


# --------------------------------------------------------------------------- sharding arithmetic (in process)
@pytest.mark.parametrize("n,chunk,world", [(0, 1, 2), (7, 1, 2), (23, 4, 2), (3, 5, 2), (100, 7, 3), (10, 3, 8)])
def test_shard_blocks_tile_the_inputs_in_rank_order_with_whole_chunks(n, chunk, world):
    blocks = [distributed.shard(n, chunk, rank_=r, world=world) for r in range(world)]
    assert [i for b in blocks for i in range(b.start, b.stop)] == list(range(n))
    for b in blocks:
        if b.stop > b.start:  # non-empty blocks start at a chunk boundary and hold whole chunks
            assert b.start % chunk == 0 and (b.stop == n or (b.stop - b.start) % chunk == 0)
    fair_chunks = math.ceil(math.ceil(n / chunk) / world)  # no rank gets more than its share of chunks
    assert max(b.stop - b.start for b in blocks) <= fair_chunks * chunk


def test_shard_and_local_part_reject_bad_arguments():
    with pytest.raises(ValueError, match="chunk_size"):
        distributed.shard(10, 0)
    with pytest.raises(ValueError, match="rank"):
        distributed.shard(10, 1, rank_=2, world=2)
    with pytest.raises(ValueError, match="n must"):
        distributed.shard(-1)
    with pytest.raises(ValueError, match="idx"):
        distributed.local_part(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="same length"):
        distributed.sharded_map(lambda a, b: a, torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("n,world", [(50, 2), (3, 2), (1, 2), (10, 3), (7, 1)])
def test_local_part_weights_make_the_mean_of_rank_means_the_global_mean(n, world):
    idx = torch.randperm(100, generator=torch.Generator().manual_seed(n))[:n]
    losses = torch.rand(100, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    parts = [distributed.local_part(idx, rank_=r, world=world) for r in range(world)]
    covered = torch.cat([p for p, _ in parts])
    assert set(covered.tolist()) == set(idx.tolist()) and all(len(p) > 0 for p, _ in parts)
    padded = torch.sort(covered).values
    ddp_grad_like = sum(w * losses[p].mean() for p, w in parts) / world  # DDP averages the ranks
    assert ddp_grad_like.item() == pytest.approx(losses[padded].mean().item(), rel=1e-12)
    if n >= world:
        assert ddp_grad_like.item() == pytest.approx(losses[idx].mean().item(), rel=1e-12)


def test_single_process_helpers_are_no_ops():
    assert not distributed.init_from_env()  # not launched by torchrun
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.rank_seed(123) == 123
    m = torch.nn.Linear(2, 2)
    assert distributed.wrap(m) is m and distributed.unwrap(m) is m
    assert distributed.all_reduce_sum(1.5, 2.0) == [1.5, 2.0]
    idx = torch.arange(5)
    part, w = distributed.local_part(idx)
    assert torch.equal(part, idx) and w == 1.0
    out = distributed.sharded_map(lambda a, seed: a * 0 + seed, torch.zeros(7), chunk_size=3, seed=5)
    assert out.tolist() == [5, 5, 5, 6, 6, 6, 7]


def test_eval_pgd_cli_refuses_unbalanced_image_counts_and_uncached_models(tmp_path, capsys):
    from adasmooth.distributed.__main__ import main

    base = ["eval-pgd", "fmnist-standard", "--cache", str(tmp_path), "--eps", "0.1", "--steps", "1"]
    assert main(base + ["--images", "15"]) == 2
    assert "--images must be a positive multiple of the 10 classes, got 15" in capsys.readouterr().err
    assert main(base + ["--images", "20"]) == 2
    assert "not cached" in capsys.readouterr().err and not any(tmp_path.iterdir())  # never trains


# --------------------------------------------------------------------------- the CIFAR-10 `paper` configurations
PAPER_RECIPES = zoo.names("cifar10")
_built: dict = {}


def _build(name):
    r = zoo.recipe(name)
    key = (r.arch, json.dumps(r.arch_kwargs, sort_keys=True))
    if key not in _built:
        _built[key] = zoo.build(name).eval()
    return _built[key]


def test_paper_recipes_cover_table_sm1_and_fig_sm1():
    recipes = {n: zoo.recipe(n) for n in PAPER_RECIPES}
    by = {(r.arch, r.train["recipe"], r.train.get("norm", "linf"), r.train.get("sigma", 0.0)): n
          for n, r in recipes.items()}
    # Fig. 1: standard vs ℓ∞-AT ResNet-18; SM2a: ConvNeXt-T vs TRADES WRN-34-10; SM2b: ℓ2-AT ResNet-18
    for key in [("preact_resnet18", "standard", "linf", 0.0), ("preact_resnet18", "pgd", "linf", 0.0),
                ("preact_resnet18", "pgd", "l2", 0.0), ("convnext_t", "standard", "linf", 0.0),
                ("wrn34_10", "trades", "linf", 0.0)]:
        assert key in by, key
    assert recipes[by[("preact_resnet18", "pgd", "linf", 0.0)]].train["eps"] == pytest.approx(8 / 255)
    assert recipes[by[("wrn34_10", "trades", "linf", 0.0)]].train["eps"] == pytest.approx(8 / 255)
    assert recipes[by[("preact_resnet18", "pgd", "l2", 0.0)]].train["eps"] == pytest.approx(0.5)
    sigmas = sorted(r.train["sigma"] for r in recipes.values() if r.train["recipe"] == "gaussian")
    assert sigmas == [0.12, 0.25, 0.5, 1.0]  # Fig. SM1's randomized-smoothing bases


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_recipe_configuration_validates(name):
    r = zoo.recipe(name)
    assert r.dataset == "cifar10"
    fields = {f.name for f in dataclasses.fields(train.TrainConfig)}
    assert set(r.train) <= fields, set(r.train) - fields
    cfg = r.config()
    assert train.TrainConfig(**cfg["train"]).to_dict() == cfg["train"]
    assert zoo.stem(name).name.startswith(name + "-")


ARCH_EXAMPLES = {zoo.recipe(n).arch: n for n in reversed(PAPER_RECIPES)}  # one recipe per architecture


@pytest.mark.parametrize("name", sorted(ARCH_EXAMPLES.values()))
def test_paper_models_build_with_cifar10_shapes(name):
    """A fake 2-image CIFAR-10 batch through each architecture (built once; the recipes share them)."""
    model = _build(name)
    assert isinstance(model, models.Classifier) and model.num_classes == 10 and model.in_channels == 3
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, (f1, f2) = model.forward_with_taps(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert (f1.shape[1], f2.shape[1]) == model.tap_channels
    assert f1.shape[0] == f2.shape[0] == 2
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.rand(2, 1, 32, 32))


def test_paper_architectures_match_table_sm1():
    cls = {n: type(_build(n)).__name__ for n in PAPER_RECIPES}
    assert {cls[n] for n in PAPER_RECIPES if "rn18" in n} == {"PreActResNet18"}
    assert cls["cifar10-convnext-t"] == "ConvNeXtT" and cls["cifar10-trades-wrn34"] == "WideResNet"
    wrn = _build("cifar10-trades-wrn34")
    assert 45e6 < sum(p.numel() for p in wrn.parameters()) < 48e6  # WRN-34-10: 46.2 M parameters


def test_paper_profile_names_only_cifar10_zoo_models():
    p = profiles.get("paper")
    assert all(nb["dataset"] == "cifar10" for nb in p.notebooks.values())
    named = {v for nb in p.notebooks.values() for k, v in nb.items()
             if k != "dataset" and isinstance(v, str) and v.startswith("cifar")}
    assert named and named <= set(PAPER_RECIPES), named - set(PAPER_RECIPES)


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_without_files_refuses_naming_what_is_missing_and_the_fetch_command(tmp_path, split):
    with pytest.raises(data.DataNotFoundError) as e:
        data.load("cifar10", split, root=tmp_path)
    msg = str(e.value)
    assert "'cifar10'" in msg and split in msg and str(tmp_path.resolve()) in msg
    assert "python -m adasmooth data fetch cifar10" in msg
    assert not any(tmp_path.iterdir())  # nothing downloaded or created


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
