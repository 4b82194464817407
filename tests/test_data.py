import pytest
import torch

from adasmooth import data


def test_fashion_mnist_offline_shapes_range_labels():
    x, y = data.load("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert sorted(y.unique().tolist()) == list(range(10))
    assert torch.bincount(y).tolist() == [1000] * 10
    xt, yt = data.load("fashion-mnist", "train")
    assert xt.shape == (60000, 1, 28, 28) and len(yt) == 60000


def test_load_uses_files_under_root(tmp_path):
    # the first call copies Debian's files into root; the copy alone then suffices
    x1, y1 = data.load("fashion-mnist", "test", root=tmp_path)
    assert (tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").exists()
    x2, y2 = data.load("fashion-mnist", "test", root=tmp_path)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_missing_dataset_error_names_dataset_and_command(tmp_path):
    with pytest.raises(data.DataNotFoundError) as e:
        data.load("cifar10", "test", root=tmp_path)
    msg = str(e.value)
    assert "cifar10" in msg and "python -m adasmooth data fetch cifar10" in msg


def test_missing_fashion_mnist_names_apt_command(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(data.DataNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        data.load("fashion-mnist", "test", root=tmp_path)


def test_bad_names():
    with pytest.raises(ValueError, match="dataset name must be one of"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("fashion-mnist", "validation")


def test_balanced_subset_is_deterministic_and_balanced():
    _, y = data.load("fashion-mnist", "test")
    a = data.balanced_subset(y, 200, seed=0)
    b = data.balanced_subset(y, 200, seed=0)
    c = data.balanced_subset(y, 200, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(a) == 2000 and len(a.unique()) == 2000
    assert torch.bincount(y[a]).tolist() == [200] * 10
    with pytest.raises(ValueError, match="per_class"):
        data.balanced_subset(y, 2000)


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_notebooks_side_by_side_copy_the_debian_files_at_once(tmp_path):
    """Two notebooks of a fresh clone may copy Debian's Fashion-MNIST into data/ at the same moment: every copy
    goes through its own temporary file, so all succeed and the files are whole (a shared temporary name made
    one of them fail in a fresh-clone `make reproduce`)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        for fut in [pool.submit(data._install_debian_fashion_mnist, tmp_path) for _ in range(6)]:
            fut.result()  # raises what a copy raised
    raw = tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    x, y = data.load("fashion-mnist", "test", root=tmp_path)
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
