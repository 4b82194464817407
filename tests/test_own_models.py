"""Your own models (issue #29): RobustBench's zoo as g or h, α_θ for any pair (taps through hooks), the paper
profile's CIFAR-10 architectures on CPU, CIFAR-10's local copy, and the tested example of docs/own-models.md.

Everything runs offline: the RobustBench model is a stand-in checkpoint (random weights of the real architecture)
written into robustbench's own model-directory layout and loaded through the real ``robustbench.load_model``."""
from __future__ import annotations

import pickle
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from adasmooth import attacks, certify, data, domains, models, resolve, robustbench_zoo
from adasmooth.adaptive import AdaptiveMixedClassifier, attack_adaptive, calibrate_shift, train_mixing_network
from adasmooth.mixing import MixedClassifier
from adasmooth.mixing_net import for_models
from adasmooth.pipeline import cli, params
from adasmooth.taps import Tapped, default_taps, with_taps

# one torch thread: these batches of 2 gain nothing from intra-op threads, and lose much on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
RB_NAME = "Wong2020Fast"  # a PreAct ResNet-18 (11 M parameters) with its CIFAR-10 normalization inside
RB_SPEC = f"robustbench:cifar10/Linf/{RB_NAME}"

TINY_FACTORY = '''
import torch.nn as nn


class Tiny(nn.Module):
    """A plain classifier without forward_with_taps: conv stem, layer1, layer2, pooled linear head."""

    def __init__(self, width):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10))

    def forward(self, x):
        return self.head(self.layer2(self.layer1(self.stem(x))))


def make_g():
    return Tiny(8)


def make_h():
    return Tiny(4)
'''


def _standin(tmp_path) -> nn.Module:
    """Random weights of the real RobustBench architecture, saved where robustbench.load_model looks."""
    robustbench_zoo.import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(0)
    net = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf][RB_NAME]["model"]().eval()
    path = tmp_path / "cifar10" / "Linf" / f"{RB_NAME}.pt"
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return net


# ------------------------------------------------------------------ 1. RobustBench's zoo as g or h

def test_robustbench_standin_loads_through_the_real_package_keeps_its_normalization_and_mixes(tmp_path):
    pytest.importorskip("pyautoattack")
    try:
        robustbench_zoo.import_robustbench()
    except ImportError as e:
        pytest.skip(f"robustbench extra not installed: {e}")
    import sys

    found = sys.modules.get("pkg_resources")  # the stand-in for robustbench does not leak to others
    assert found is None or hasattr(found, "fixup_namespace_packages")
    standin = _standin(tmp_path)
    assert resolve.kind(RB_SPEC) == "robustbench"
    m, rec = resolve.model(RB_SPEC, robustbench_dir=tmp_path, device="cpu")
    weights = tmp_path / "cifar10" / "Linf" / f"{RB_NAME}.pt"
    assert rec["kind"] == "robustbench" and (rec["dataset"], rec["threat"], rec["name"]) == ("cifar10", "Linf", RB_NAME)
    assert rec["file"] == str(weights.resolve()) and rec["sha256"] == rec["files"][rec["file"]]
    assert resolve.is_unchanged(rec)
    assert (m.num_classes, m.in_channels) == (10, 3) and not m.training

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = m(x)
        assert torch.allclose(z, standin(x), atol=1e-5)  # the stand-in's weights, through load_model
        # its own input normalization stays inside: the bare PreAct ResNet on (x - μ)/σ, not on x
        base = type(m).__mro__[1]
        assert torch.allclose(z, base.forward(m, (x - m.mu) / m.sigma), atol=1e-5)
        assert not torch.allclose(z, base.forward(m, x), atol=1e-3)

        other = models.build("wrn", seed=3, depth=10, width=1, in_channels=3).eval()  # a small g
        mixed = MixedClassifier(other, m, alpha=0.3)
        logp = mixed(x)
    assert logp.shape == (2, 10)
    assert torch.allclose(logp.exp().sum(1), torch.ones(2), atol=1e-5)
    expect = torch.log(0.7 * F.softmax(other(x), 1) + 0.3 * F.softmax(z, 1)).detach()
    assert torch.allclose(logp, expect, atol=1e-5)

    weights.write_bytes(weights.read_bytes() + b"0")  # changed weights: the results are stale
    assert not resolve.is_unchanged(rec)


def test_robustbench_spec_errors_name_the_missing_file_the_fetch_command_and_what_is_allowed(tmp_path):
    with pytest.raises(ValueError, match=r"dataset must be one of \['cifar10', 'cifar100', 'imagenet'\]"):
        resolve.kind("robustbench:fashion-mnist/Linf/Wong2020Fast")
    with pytest.raises(ValueError, match=r"threat model must be one of \['Linf', 'L2', 'corruptions'\]"):
        resolve.kind("robustbench:cifar10/linf/Wong2020Fast")
    with pytest.raises(ValueError, match="robustbench:<dataset>/<threat>/<name>"):
        resolve.kind("robustbench:Wong2020Fast")
    try:
        robustbench_zoo.import_robustbench()
    except ImportError as e:
        pytest.skip(f"robustbench extra not installed: {e}")
    with pytest.raises(FileNotFoundError) as e:
        resolve.model(RB_SPEC, robustbench_dir=tmp_path, device="cpu")
    msg = str(e.value)
    assert str((tmp_path / "cifar10" / "Linf" / f"{RB_NAME}.pt")) in msg
    assert f"load_model('{RB_NAME}', model_dir='{tmp_path.resolve()}', dataset='cifar10', threat_model='Linf')" in msg
    assert not any(tmp_path.iterdir())  # nothing downloaded, no folder made
    with pytest.raises(ValueError, match=r"no model 'Wong2020Fst'.*close: Wong2020Fast"):
        resolve.model("robustbench:cifar10/Linf/Wong2020Fst", robustbench_dir=tmp_path, device="cpu")


def test_robustbench_spec_is_a_model_parameter_of_the_cli_and_the_notebooks():
    assert cli.parse_param(f"g={RB_SPEC}") == ("g", RB_SPEC)  # not mistaken for a file path
    assert params._CHECKS["model"](RB_SPEC) and "robustbench:<dataset>/<threat>/<name>" in params._DESCRIBE["model"]
    ok = domains.model().ok
    assert ok(RB_SPEC, {"dataset": "cifar10"})
    assert not ok(RB_SPEC, {"dataset": "fashion-mnist"})  # a CIFAR-10 model in a Fashion-MNIST notebook
    assert not ok("robustbench:cifar10/Linf/", {"dataset": "cifar10"})


# ------------------------------------------------------------------ 2. α_θ for any pair (taps through hooks)

def test_tapped_reads_named_layers_with_hooks_and_leaves_the_forward_unchanged():
    import torchvision

    net = torchvision.models.resnet18(num_classes=10).eval()
    assert default_taps(net) == ("layer1", "layer2")
    t = Tapped(net)
    assert t.tap_channels == (64, 128) and (t.num_classes, t.in_channels) == (10, 3)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z, (f1, f2) = t.forward_with_taps(x)
        assert torch.equal(z, net(x)) and torch.equal(t(x), net(x))
        assert torch.allclose(f1, net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))
    assert f1.shape == (2, 64, 8, 8) and f2.shape == (2, 128, 4, 4)
    assert not net.layer1._forward_hooks  # hooks live only during forward_with_taps
    wrn = models.build("wrn", depth=10, width=1)  # has forward_with_taps: used as it is
    assert with_taps(wrn) is wrn
    with pytest.raises(ValueError, match=r"default tap layers.*taps=\(first, second\)"):
        Tapped(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))
    with pytest.raises(ValueError, match="taps must name two layers"):
        Tapped(net, taps=("layer1", "nope"))
    with pytest.raises(ValueError, match="tap layer 'fc' must output a feature map"):
        Tapped(net, taps=("layer1", "fc"))


def test_file_factory_pair_without_taps_trains_a_mixing_network_is_calibrated_and_attacked(tmp_path, monkeypatch):
    f = tmp_path / "tiny_pair.py"
    monkeypatch.chdir(tmp_path)
    assert resolve.kind("tiny_pair.py:make_g") == "import"  # no such file yet: a module path
    f.write_text(TINY_FACTORY)
    assert resolve.kind("tiny_pair.py:make_g") == "file"  # the file in the current folder
    torch.manual_seed(0)
    g, rec_g = resolve.model(f"{f}:make_g", device="cpu")
    h, _ = resolve.model(f"{f}:make_h", device="cpu")
    assert rec_g["kind"] == "import" and not hasattr(g, "forward_with_taps")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)

    net0 = for_models(g, h, width=8)
    assert (net0.g_taps, net0.h_taps) == ((8, 16), (4, 8))
    before = {k: v.clone() for k, v in net0.state_dict().items()}
    model, hist = train_mixing_network(g, h, x, y, net=net0, batch_size=4, steps_df=2, width=8, max_steps=3,
                                       device="cpu")
    assert hist["steps"] == 3 and all(np.isfinite(hist["loss"]))
    assert isinstance(model.g, Tapped) and model.g.model is g
    assert any(not torch.equal(before[k], v) for k, v in model.net.state_dict().items() if "weight" in k)

    cal = calibrate_shift(model, x, y, target_clean_acc=float((model(x).argmax(1) == y).float().mean()),
                          device="cpu")
    assert cal.within_tol
    adv = attack_adaptive(model, x[:4], y[:4], threat="full", eps=0.1, steps=3, seed=0)
    assert adv.shape == (4, 1, 28, 28) and (adv - x[:4]).abs().max() <= 0.1 + 1e-6
    assert not torch.equal(adv, x[:4])
    logp, alpha, _ = model(adv, return_alpha=True)
    assert logp.shape == (4, 10) and ((alpha >= 0) & (alpha <= 1)).all()
    assert torch.allclose(logp.exp().sum(1), torch.ones(4), atol=1e-5)


# ------------------------------------------------------------------ 3. the paper profile's CIFAR-10 path on CPU

@pytest.mark.parametrize("arch", ["preact_resnet18", "wrn34_10", "convnext_t"])
def test_paper_architectures_run_forward_backward_pgd_mixing_step_and_certify_on_cpu(arch):
    t0 = time.perf_counter()
    m = models.build(arch, seed=0, num_classes=10, in_channels=3)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32, generator=gen), torch.tensor([3, 7])
    m.train()
    z = m(x)  # forward and backward at batch 2
    assert z.shape == (2, 10)
    F.cross_entropy(z, y).backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    m.zero_grad(set_to_none=True)
    m.eval()

    mixed = MixedClassifier(m, m, alpha=0.5)  # one PGD step through h^α (g = h: one model's cost)
    adv = attacks.pgd(mixed, x, y, eps=8 / 255, steps=1, seed=0)
    assert adv.shape == x.shape and (adv - x).abs().max() <= 8 / 255 + 1e-6 and not torch.equal(adv, x)

    net = for_models(m, m, width=8)  # one training step of α_θ on the taps
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    with torch.no_grad():
        _, taps = m.forward_with_taps(x)
    assert tuple(t.shape[1] for t in taps) == m.tap_channels
    net.train()
    alpha, gamma = net(taps, taps, return_gamma=True)
    loss = F.binary_cross_entropy_with_logits(gamma, torch.tensor([0.0, 1.0]))
    w0 = net.linear.weight.detach().clone()
    loss.backward()
    opt.step()
    assert alpha.shape == (2,) and ((alpha > 0) & (alpha < 1)).all() and not torch.equal(w0, net.linear.weight)

    pred, radius = certify.Smooth(m, 10, sigma=0.25, device="cpu").certify(x[:1], n0=1, n=2, failure_prob=0.001,
                                                                           batch_size=2, seed=0)
    assert pred.shape == (1,) and radius.shape == (1,) and -1 <= int(pred) < 10 and float(radius) >= 0
    print(f"{arch}: {time.perf_counter() - t0:.1f} s")


# ------------------------------------------------------------------ CIFAR-10 data: a local copy, or a clear error

def test_cifar10_reads_a_local_copy_in_torchvision_layout(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    folder = tmp_path / tvd.CIFAR10.base_folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    for fname, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list:
        batch = {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [0, 1, 9]}
        (folder / fname).write_bytes(pickle.dumps(batch))
    (folder / tvd.CIFAR10.meta["filename"]).write_bytes(pickle.dumps({"label_names": data.CLASS_NAMES["cifar10"]}))
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # its md5s are those of the real files
    x, yy = data.load("cifar10", "test", root=tmp_path)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert yy.tolist() == [0, 1, 9]
    assert data.load("cifar10", "train", root=tmp_path)[0].shape == (15, 3, 32, 32)


def test_cifar10_missing_says_where_to_put_it_and_how_to_fetch_it(tmp_path):
    with pytest.raises(data.DataNotFoundError) as e:
        data.load("cifar10", "test", root=tmp_path)
    msg = str(e.value)
    assert "python -m adasmooth data fetch cifar10" in msg and "needs internet" in msg
    assert f"{tmp_path.resolve() / 'cifar-10-batches-py'}/" in msg and "test_batch" in msg
    assert "cifar-10-python.tar.gz" in msg
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ 4. docs/own-models.md

def _python_blocks(md: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", md, flags=re.S)


def test_docs_own_models_example_runs_on_small_models(tmp_path, monkeypatch):
    doc = (ROOT / "docs" / "own-models.md").read_text()
    assert "robustbench:cifar10/Linf/" in doc and "file.py:factory" in doc and "package.module:factory" in doc
    readme = (ROOT / "README.md").read_text()
    assert "docs/own-models.md" in readme
    blocks = [b for b in _python_blocks(doc) if "# tested example" in b]
    assert len(blocks) == 1, "docs/own-models.md must hold one python block marked '# tested example'"
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(blocks[0], "docs/own-models.md", "exec"), ns)
    assert isinstance(ns["model"], AdaptiveMixedClassifier) and isinstance(ns["model"].g, Tapped)
    assert ns["history"]["steps"] == 4
    n_val = len(ns["y_val"])  # both mixers at the target clean accuracy (to one validation image)
    assert abs(ns["shift"].accuracy - ns["target"]) <= 1 / n_val and abs(ns["alpha"].accuracy - ns["target"]) <= 1 / n_val
    for r in ns["results"].values():
        assert r["clean"].shape == (20,) and not (r["worst"] & ~r["clean"]).any()  # attacked ⊆ clean
    assert any(s["attack"].startswith("pgd-ce/full") for s in ns["results"]["alpha_theta"]["steps"])
    assert set(ns["test"]) >= {"only_a", "only_b", "p_value"}
