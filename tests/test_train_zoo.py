import json
import subprocess
import sys

import pytest
import torch

from adasmooth import checkpoint, runtime, zoo
from adasmooth.train import TrainConfig, fit

from conftest import TINY


def _small(n=1000):
    from adasmooth import data
    x, y = data.load("fashion-mnist", "train")
    idx = data.balanced_subset(y, n // 10, seed=3)
    return x[idx], y[idx]


@pytest.mark.parametrize("cfg", [
    TrainConfig(recipe="standard", epochs=2, seed=1),
    TrainConfig(recipe="pgd", epochs=2, eps=0.1, attack_steps=2, seed=1),
    TrainConfig(recipe="pgd", epochs=2, eps=1.0, norm="l2", attack_steps=2, seed=1),
    TrainConfig(recipe="trades", epochs=2, eps=0.1, attack_steps=2, seed=1),
    TrainConfig(recipe="gaussian", epochs=2, sigma=0.25, seed=1),
])
def test_recipe_lowers_loss_and_beats_chance(cfg):
    x, y = _small()
    m = zoo.build("fmnist-standard")
    hist = fit(m, x, y, cfg, device="cpu")
    assert hist["loss"][-1] < hist["loss"][0]
    with torch.no_grad():
        acc = (m(x).argmax(1) == y).float().mean().item()
    assert acc > 0.5  # chance is 0.1


def test_same_seed_same_weights_other_seed_differs():
    x, y = _small(500)
    ws = []
    for seed in (7, 7, 8):
        m = zoo.build("fmnist-standard", seed=seed)
        fit(m, x, y, TrainConfig(recipe="pgd", epochs=1, eps=0.1, attack_steps=2, seed=seed), device="cpu")
        ws.append(torch.cat([p.flatten() for p in m.parameters()]))
    assert torch.equal(ws[0], ws[1])
    assert not torch.equal(ws[0], ws[2])


def test_resume_from_last_finished_epoch_gives_same_weights(tmp_path):
    x, y = _small(500)
    cfg = TrainConfig(recipe="standard", epochs=3, seed=2)
    ref = zoo.build("fmnist-standard", seed=0)
    fit(ref, x, y, cfg, device="cpu")
    # interrupted run: 2 epochs written to the state, then a fresh process resumes to 3
    state = tmp_path / "run.train-state"
    m1 = zoo.build("fmnist-standard", seed=0)
    fit(m1, x, y, TrainConfig(**{**cfg.to_dict(), "epochs": 3}), device="cpu", state_path=state)
    meta = checkpoint.read_metadata(state)
    assert meta["epoch"] == 3
    # simulate a crash after epoch 2 by rewriting the state with epoch 2 only
    part = tmp_path / "part.train-state"
    m2 = zoo.build("fmnist-standard", seed=0)
    calls = {"n": 0}

    class Stop(Exception):
        pass

    orig_save = checkpoint.save

    def save_then_stop(*a, **k):
        out = orig_save(*a, **k)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Stop
        return out

    checkpoint.save = save_then_stop
    try:
        with pytest.raises(Stop):
            fit(m2, x, y, cfg, device="cpu", state_path=part)
    finally:
        checkpoint.save = orig_save
    assert checkpoint.read_metadata(part)["epoch"] == 2
    m3 = zoo.build("fmnist-standard", seed=0)
    hist = fit(m3, x, y, cfg, device="cpu", state_path=part)
    assert len(hist["loss"]) == 3
    for a, b in zip(ref.parameters(), m3.parameters()):
        assert torch.equal(a, b)


def test_config_validation():
    with pytest.raises(ValueError, match="recipe must be one of"):
        TrainConfig(recipe="mixup")
    with pytest.raises(ValueError, match="needs eps > 0"):
        TrainConfig(recipe="pgd")
    with pytest.raises(ValueError, match="needs sigma > 0"):
        TrainConfig(recipe="gaussian")


def test_zoo_get_caches_and_records_metadata(tiny_zoo, zoo_cache):
    m = tiny_zoo("fmnist-standard")
    assert not m.training
    meta = zoo.metadata("fmnist-standard", overrides=TINY, root=zoo_cache)
    assert meta["recipe"] == "standard" and meta["seed"] == 0
    assert meta["config"]["train"]["epochs"] == TINY["epochs"]
    assert 0.5 < meta["metrics"]["clean"] <= 1.0 and meta["metrics"]["n_eval"] == 200
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["sha256"] == checkpoint.sha256_file(zoo.stem("fmnist-standard", TINY, zoo_cache).with_suffix(".pt"))
    # second get loads the same weights without retraining
    m2 = zoo.get("fmnist-standard", overrides=TINY, root=zoo_cache, train_if_missing=False)
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_robust_model_records_pgd_metric(h_model, zoo_cache):
    meta = zoo.metadata("fmnist-linf-at", overrides=TINY, root=zoo_cache)
    assert "robust" in meta["metrics"] and meta["metrics"]["robust"] < meta["metrics"]["clean"]


def test_checkpoint_cut_short_is_rejected(tiny_zoo, zoo_cache, tmp_path):
    tiny_zoo("fmnist-standard")
    src = zoo.stem("fmnist-standard", TINY, zoo_cache)
    dst = tmp_path / src.name
    for suf in (".pt", ".json"):
        dst.with_suffix(suf).write_bytes(src.with_suffix(suf).read_bytes())
    blob = dst.with_suffix(".pt").read_bytes()
    dst.with_suffix(".pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="sha256"):
        zoo.get("fmnist-standard", overrides=TINY, root=tmp_path)


def test_tampered_checkpoint_fails_hash(tiny_zoo, zoo_cache, tmp_path):
    tiny_zoo("fmnist-standard")
    src = zoo.stem("fmnist-standard", TINY, zoo_cache)
    dst = tmp_path / src.name
    state = torch.load(src.with_suffix(".pt"), weights_only=True)
    state["head.3.bias"] += 1.0
    torch.save(state, dst.with_suffix(".pt"))
    dst.with_suffix(".json").write_bytes(src.with_suffix(".json").read_bytes())
    with pytest.raises(checkpoint.CheckpointError, match="sha256"):
        zoo.get("fmnist-standard", overrides=TINY, root=tmp_path)


def test_missing_checkpoint_without_training_names_command(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="python -m adasmooth zoo train fmnist-trades"):
        zoo.get("fmnist-trades", root=tmp_path, train_if_missing=False)
    with pytest.raises(ValueError, match="unknown zoo model"):
        zoo.get("nope", root=tmp_path)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    checkpoint.atomic_write_json(target, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        checkpoint.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_cli_list_and_train(tmp_path):
    env_cmd = [sys.executable, "-m", "adasmooth", "zoo"]
    out = subprocess.run(env_cmd + ["list", "--cache", str(tmp_path)], capture_output=True, text=True, check=True)
    assert "fmnist-standard" in out.stdout and "False" in out.stdout
    bad = subprocess.run(env_cmd + ["train", "nope", "--cache", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown zoo model" in bad.stderr
    ov = ["--overrides", json.dumps({"train_subset": 500, "epochs": 1, "eval_n": 100})]
    tr = subprocess.run(env_cmd + ["train", "fmnist-gauss-0.25", "--cache", str(tmp_path), "--no-progress"] + ov,
                        capture_output=True, text=True, check=True)
    assert "noisy" in tr.stdout
    out = subprocess.run(env_cmd + ["list", "--cache", str(tmp_path)] + ov, capture_output=True, text=True, check=True)
    row = [line for line in out.stdout.splitlines() if "fmnist-gauss-0.25" in line][0]
    assert "True" in row and "%" in row
    assert zoo.names()[:2] == ["fmnist-standard", "fmnist-linf-at"]


def test_train_many_side_by_side_equals_one_by_one(tmp_path, one_thread, monkeypatch):
    """Two one-thread worker processes give bit-identical checkpoints to training in this process
    with one thread, costliest recipe first; cached models are not retrained."""
    monkeypatch.setattr(runtime, "cpu_cores", lambda: 2)  # workers get 2 // 2 = 1 thread on any machine
    ov = dict(TINY, train_subset=600, epochs=1, eval_n=50)
    names = ["fmnist-standard", "fmnist-gauss-0.25"]
    assert zoo.training_cost("fmnist-linf-at") > zoo.training_cost("fmnist-standard")
    with pytest.raises(ValueError, match="jobs"):
        zoo.train_many(names, overrides=ov, root=tmp_path / "x", device="cpu", jobs=0)
    side = zoo.train_many(names, overrides=ov, root=tmp_path / "side", device="cpu", jobs=2)
    one = zoo.train_many(names, overrides=ov, root=tmp_path / "one", device="cpu", jobs=1)
    for n in names:
        a = zoo.get(n, overrides=ov, root=tmp_path / "side", train_if_missing=False)
        b = zoo.get(n, overrides=ov, root=tmp_path / "one", train_if_missing=False)
        for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(v, w), (n, k)
        assert side[n]["metrics"]["clean"] == one[n]["metrics"]["clean"]
    stamp = checkpoint.path_for(zoo.stem(names[0], ov, tmp_path / "side"), ".pt").stat().st_mtime_ns
    zoo.train_many(names, overrides=ov, root=tmp_path / "side", device="cpu", jobs=2)
    again = zoo.train_many(names, overrides=ov, root=tmp_path / "side", device="cpu")  # all cached, jobs chosen
    assert again == side
    assert checkpoint.path_for(zoo.stem(names[0], ov, tmp_path / "side"), ".pt").stat().st_mtime_ns == stamp
