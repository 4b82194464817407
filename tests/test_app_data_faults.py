"""Faults around the data files, the web app's command line and a factory's recorded files: a truncated
Fashion-MNIST file is named corrupt (and recopied, or named with the command that restores it); ``app`` refuses a
non-loopback ``--ip`` without ``--allow-remote`` (and serves it behind a token with it) and a ``--grid-from`` that
is not a notebook-07 results JSON, before serving; a factory's results hash only the files it reads."""
import gzip
import json
import os
from types import SimpleNamespace

import pytest
import torch

from adasmooth import app, checkpoint, data, pipeline, resolve, results
from adasmooth.__main__ import main

DEBIAN = data.DEBIAN_FASHION_MNIST
needs_debian = pytest.mark.skipif(not (DEBIAN / "t10k-labels-idx1-ubyte.gz").is_file(),
                                  reason="Debian's dataset-fashion-mnist is not installed")
LABELS = "t10k-labels-idx1-ubyte"  # 10,008 bytes: 8 of header, 10,000 labels
GRID = pipeline.PROJECT / "results" / "default" / "07_alpha_explorer.json"


def _truncated_labels(raw, n=4000):
    raw.mkdir(parents=True, exist_ok=True)
    whole = gzip.decompress((DEBIAN / f"{LABELS}.gz").read_bytes())
    assert len(whole) == 10008
    (raw / LABELS).write_bytes(whole[:n])
    return whole


# ---------------------------------------------------------------- row 6: a truncated Fashion-MNIST file

def test_idx_problem_checks_magic_dimensions_and_length(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(5))
    assert data.idx_problem(f) is None and data.idx_problem(f, (5,)) is None
    assert data.idx_problem(f, (6,)) == "expected dimensions (6,), the header says (5,)"
    f.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(3))
    assert data.idx_problem(f, (5,)) == "expected 13 bytes, got 11"
    f.write_bytes(b"root:x:0:0")
    assert data.idx_problem(f, (5,)).startswith("not an idx file of unsigned bytes")
    f.write_bytes(b"")
    assert "got 0 bytes" in data.idx_problem(f, (5,))


@needs_debian
def test_a_truncated_copy_is_recopied_from_the_debian_package(tmp_path, caplog):
    whole = _truncated_labels(tmp_path / "FashionMNIST" / "raw")
    with caplog.at_level("WARNING", logger="adasmooth.data"):
        x, y = data.load("fashion-mnist", "test", root=tmp_path)
    assert (tmp_path / "FashionMNIST" / "raw" / LABELS).read_bytes() == whole
    assert x.shape == (10000, 1, 28, 28) and torch.bincount(y).tolist() == [1000] * 10
    assert (f"corrupt: {tmp_path / 'FashionMNIST' / 'raw' / LABELS} (expected 10008 bytes, got 4000); "
            f"recopied from {DEBIAN / LABELS}.gz") in caplog.text


@needs_debian
def test_a_truncated_copy_without_the_package_names_the_restore_command(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    _truncated_labels(tmp_path / "FashionMNIST" / "raw")
    with pytest.raises(data.DataCorruptError) as e:
        data.load("fashion-mnist", "test", root=tmp_path)
    assert str(e.value) == (f"corrupt: {tmp_path / 'FashionMNIST' / 'raw' / LABELS} (expected 10008 bytes, got 4000); "
                            f"restore with: {data.fetch_command('fashion-mnist')}")
    assert "\n" not in str(e.value) and (tmp_path / "FashionMNIST" / "raw" / LABELS).stat().st_size == 4000


@needs_debian
def test_data_fetch_repairs_a_truncated_copy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    whole = _truncated_labels(tmp_path / "FashionMNIST" / "raw")
    assert main(["data", "fetch", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert f"corrupt: {tmp_path / 'FashionMNIST' / 'raw' / LABELS} (expected 10008 bytes, got 4000); recopied" in out
    assert "fashion-mnist test: (10000, 1, 28, 28)" in out
    assert (tmp_path / "FashionMNIST" / "raw" / LABELS).read_bytes() == whole


@needs_debian
def test_data_fetch_names_a_truncated_debian_file_and_the_reinstall_command(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "debian"
    fake.mkdir()
    for f in data.IDX_FILES:
        (fake / f"{f}.gz").symlink_to(DEBIAN / f"{f}.gz")
    (fake / f"{LABELS}.gz").unlink()
    (fake / f"{LABELS}.gz").write_bytes((DEBIAN / f"{LABELS}.gz").read_bytes()[:3000])
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", fake)
    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path / "data"))
    assert main(["data", "fetch", "fashion-mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: corrupt: {fake / LABELS}.gz (cannot gunzip it: ") and "\n" not in err
    assert err.endswith("restore with: sudo apt-get install --reinstall -y dataset-fashion-mnist")
    assert not (tmp_path / "data" / "FashionMNIST" / "raw" / LABELS).exists()  # nothing half-copied left
    (fake / f"{LABELS}.gz").write_bytes(gzip.compress(gzip.decompress((DEBIAN / f"{LABELS}.gz").read_bytes())[:9000]))
    with pytest.raises(data.DataCorruptError, match=r"\(gunzipped: expected 10008 bytes, got 9000\); restore with"):
        data.check_files("fashion-mnist", tmp_path / "data")


def test_a_corrupt_mnist_file_is_removed_for_a_download_or_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / LABELS).write_bytes(b"\x00\x00\x08\x01" + (10000).to_bytes(4, "big") + bytes(10))
    with pytest.raises(data.DataCorruptError, match="expected 10008 bytes, got 18.*restore with: python -m adasmooth "
                                                    "data fetch mnist"):
        data.load("mnist", "test", root=tmp_path)
    notes = data.check_files("mnist", tmp_path, download=True)
    assert notes == [f"corrupt: {raw / LABELS} (expected 10008 bytes, got 18); removed, downloading it again"]
    assert not (raw / LABELS).exists()


# ---------------------------------------------------------------- rows 9 and 10: app's command line

def _no_server(monkeypatch):
    def boom(*a, **k):
        pytest.fail(f"a server was started: {a}")
    monkeypatch.setattr(app, "subprocess", SimpleNamespace(call=boom))


@pytest.mark.parametrize("ip", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_app_refuses_a_non_loopback_address_without_allow_remote(ip, monkeypatch, capsys):
    _no_server(monkeypatch)
    monkeypatch.setattr(app, "prepare", lambda *a, **k: pytest.fail("prepared before the address was checked"))
    assert main(["app", "--ip", ip]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --ip {ip!r} is not a loopback address")
    assert "--allow-remote" in err and "token" in err


def test_loopback_addresses_need_no_token():
    for ip in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert app.check_address(ip) is False
    assert app.check_address("0.0.0.0", allow_remote=True) is True


def test_allow_remote_serves_behind_a_token_printed_in_the_url(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(app, "subprocess", SimpleNamespace(call=lambda cmd, **k: calls.append((cmd, k)) or 0))
    monkeypatch.setattr(app, "prepare", lambda folder, **k: tmp_path / "07.ipynb")
    monkeypatch.delenv("JUPYTER_TOKEN", raising=False)
    assert main(["app", "--ip", "0.0.0.0", "--allow-remote", "--port", "9001"]) == 0
    (cmd, kw), = calls
    token = kw["env"]["JUPYTER_TOKEN"]
    assert len(token) >= 24 and "--Voila.auto_token=True" in cmd and "--Voila.ip=0.0.0.0" in cmd
    assert f":9001/?token={token}" in capsys.readouterr().out
    monkeypatch.setenv("JUPYTER_TOKEN", "mine")  # Jupyter's own variable is kept
    assert main(["app", "--ip", "0.0.0.0", "--allow-remote"]) == 0 and calls[1][1]["env"]["JUPYTER_TOKEN"] == "mine"
    assert main(["app"]) == 0 and "--Voila.auto_token=True" not in calls[2][0]  # this machine only: no token


def _bad_grids(tmp_path):
    doc = json.loads(GRID.read_text())
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    nocurve = tmp_path / "nocurve.json"
    nocurve.write_text(json.dumps(dict(doc, data={})))
    badrows = tmp_path / "badrows.json"
    badrows.write_text(json.dumps(dict(doc, data={"curve": [{"option": "prob", "alpha": "x"}]})))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(doc, params=dict(doc["params"], n_eval=17))))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    return {passwd: "is not a readable JSON file (Expecting value: line 1 column 1 (char 0))",
            listed: "is not a results JSON", nocurve: "holds no recorded grid (data.curve)",
            badrows: "data.curve must be a list of rows with 'option', 'alpha', 'clean' and 'attacked'",
            other: "was computed with other parameters (n_eval = 17 there, 200 here)",
            binary: "is not a readable JSON file", tmp_path: "is not a file"}


def test_app_refuses_a_grid_that_is_not_a_notebook_07_results_json_before_serving(tmp_path, monkeypatch, capsys):
    _no_server(monkeypatch)
    for path, problem in _bad_grids(tmp_path).items():
        assert main(["app", "--grid-from", str(path)]) == 2, path
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: grid_from: {path}") and problem in err, err
    assert not list(tmp_path.glob("*.ipynb"))


def test_app_refuses_etc_passwd_as_grid(monkeypatch, capsys):
    if not os.path.isfile("/etc/passwd"):
        pytest.skip("no /etc/passwd")
    _no_server(monkeypatch)
    assert main(["app", "--grid-from", "/etc/passwd"]) == 2
    err = capsys.readouterr().err
    assert err == "error: grid_from: /etc/passwd is not a readable JSON file (Expecting value: line 1 column 1 " \
                  "(char 0)); expected notebook 07's results JSON\n"


# ---------------------------------------------------------------- row 11: the files a factory's results hash

FACTORY = '''\
import torch
{decl}

def make():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
'''


def _stamped(tmp_path, rec):
    res = results.write(tmp_path / "out", "00_x", params={}, metrics={}, inputs=[rec])
    doc = results.read(res)
    doc["pipeline"] = {"fingerprint": "fp"}
    checkpoint.atomic_write_json(res, doc)
    return res


def test_a_factory_among_unrelated_json_files_stays_current(tmp_path):
    shared = tmp_path / "tmp"  # like /tmp: kernels write their connection files beside the factory
    shared.mkdir()
    (shared / "file.py").write_text(FACTORY.format(decl=""))
    (shared / "kernel-1.json").write_text('{"key": "a"}')
    _, rec = resolve.model(f"{shared / 'file.py'}:make", device="cpu")
    assert rec["files"] == {}
    res = _stamped(tmp_path, rec)
    assert pipeline.is_current(res, "fp")
    (shared / "kernel-1.json").write_text('{"key": "b"}')
    (shared / "kernel-2.json").write_text("{}")
    (shared / "other.pt").write_bytes(b"x")
    assert pipeline.is_current(res, "fp")  # an identical rerun is current
    (shared / "file.pt").write_bytes(b"weights named after it")
    assert not pipeline.is_current(res, "fp")  # the stated pattern: <stem>.<weights suffix> ...
    _, rec = resolve.model(f"{shared / 'file.py'}:make", device="cpu")
    assert list(rec["files"]) == [str(shared / "file.pt")]
    res = _stamped(tmp_path, rec)
    (shared / "file").mkdir()
    (shared / "file" / "cfg.yaml").write_text("a: 1")
    assert not pipeline.is_current(res, "fp")  # ... and any file in a folder named after it


def test_a_factory_hashes_exactly_the_files_it_declares(tmp_path):
    (tmp_path / "mine.py").write_text(FACTORY.format(decl='ADASMOOTH_FILES = ["w.npy", "more/*.bin", "absent.pt"]'))
    (tmp_path / "w.npy").write_bytes(b"1")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "a.bin").write_bytes(b"a")
    (tmp_path / "mine.pt").write_bytes(b"not declared")
    _, rec = resolve.model(f"{tmp_path / 'mine.py'}:make", device="cpu")
    assert rec["files"] == {str(tmp_path / "absent.pt"): None, str(tmp_path / "more" / "a.bin"):
                            checkpoint.sha256_file(tmp_path / "more" / "a.bin"),
                            str(tmp_path / "w.npy"): checkpoint.sha256_file(tmp_path / "w.npy")}
    res = _stamped(tmp_path, rec)
    (tmp_path / "mine.pt").write_bytes(b"changed, but not declared")
    (tmp_path / "x.json").write_text("{}")
    assert pipeline.is_current(res, "fp")
    for change in (lambda: (tmp_path / "w.npy").write_bytes(b"2"),
                   lambda: (tmp_path / "more" / "b.bin").write_bytes(b""),
                   lambda: (tmp_path / "absent.pt").write_bytes(b"")):
        res = _stamped(tmp_path, resolve.model(f"{tmp_path / 'mine.py'}:make", device="cpu")[1])
        change()
        assert not pipeline.is_current(res, "fp")


def test_an_ill_formed_declaration_is_a_one_line_error(tmp_path):
    (tmp_path / "bad.py").write_text(FACTORY.format(decl="ADASMOOTH_FILES = 'weights.pt'"))
    with pytest.raises(ValueError, match=r"bad.py: ADASMOOTH_FILES must be a literal list of paths or glob patterns"):
        resolve.model(f"{tmp_path / 'bad.py'}:make", device="cpu")
