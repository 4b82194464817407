"""Shared fixtures: tiny versions of the zoo models (trained in seconds into a temporary cache)
and a small slice of the Fashion-MNIST test set."""
import pytest
import torch

from adasmooth import data, zoo

torch.set_num_threads(2)

TINY = {"train_subset": 3000, "epochs": 2, "eval_n": 200}


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


@pytest.fixture(scope="session")
def tiny_zoo(zoo_cache):
    """``get(name)`` for tiny-budget versions of the zoo recipes (cached for the session)."""
    def get(name):
        return zoo.get(name, overrides=TINY, root=zoo_cache, device="cpu")
    return get


@pytest.fixture(scope="session")
def g_model(tiny_zoo):
    """A tiny accurate model g (standard training)."""
    return tiny_zoo("fmnist-standard")


@pytest.fixture(scope="session")
def h_model(tiny_zoo):
    """A tiny robust model h (ℓ∞ PGD-AT, ε = 0.1)."""
    return tiny_zoo("fmnist-linf-at")


@pytest.fixture(scope="session")
def test_batch():
    """200 class-balanced Fashion-MNIST test images (x in [0, 1], y int64)."""
    x, y = data.load("fashion-mnist", "test")
    idx = data.balanced_subset(y, 20, seed=0)
    return x[idx], y[idx]


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: tests of many tiny ops gain nothing from intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def empty_attack_cache(monkeypatch, tmp_path):
    """An empty attack cache under ``tmp_path`` (no verification, no progress file, fresh counters)."""
    from adasmooth import attack_cache

    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    for k in ("ADASMOOTH_VERIFY_FRACTION", "ADASMOOTH_VERIFY_SEED", "ADASMOOTH_VERIFY_CLAIMS",
              "ADASMOOTH_PROGRESS_FILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(attack_cache, "stats", {k: ([] if k.endswith("_keys") else 0) for k in attack_cache.stats})
    monkeypatch.setitem(attack_cache._state, "fresh", set())
    return tmp_path / "attack-cache"
