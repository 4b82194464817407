"""Bad input fails early with a ValueError naming the parameter, the bad value and the allowed range.

Tiny models built in the tests (no zoo fixtures), so every test runs in well under a second.
"""
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from adasmooth import certify, pipeline
from adasmooth.__main__ import main
from adasmooth.attacks import pgd
from adasmooth.evaluate import accuracy
from adasmooth.mixing import MixedClassifier


def linear(k, seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [nn.BatchNorm2d(1)] if bn else []
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(16, k))


def x_toy(n=4):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))


class Counted(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.net, self.num_classes = linear(k), k

    def forward(self, x):
        return self.net(x)


def test_mixed_classifier_refuses_class_mismatch_bad_alpha_and_non_finite_x():
    x = x_toy()
    for a in (0.0, 0.3, 1.0):  # with num_classes attributes: at construction, whatever α
        with pytest.raises(ValueError, match="h must have as many classes as g: g has 5, h has 7"):
            MixedClassifier(Counted(5), Counted(7), a)
    for a in (0.0, 0.3, 1.0):  # without: on the first forward, the ends included
        for R in ("one", "grad_g"):
            with pytest.raises(ValueError, match="h must return as many classes as g.*5.*7"):
                MixedClassifier(linear(5), linear(7, 1), a, R=R)(x)
    # the check at an end leaves the other model's BatchNorm statistics and mode alone
    g, h = linear(5, bn=True), linear(5, 1, bn=True)
    before = h[0].running_mean.clone()
    out = MixedClassifier(g, h, 0.0)(x)
    torch.testing.assert_close(out, F.log_softmax(g(x), 1))
    assert h.training and torch.equal(h[0].running_mean, before)
    for bad in ("0.5", None, "alpha"):
        with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\].*got"):
            MixedClassifier(linear(5), linear(5, 1), bad)
    mix = MixedClassifier(linear(5), linear(5, 1), 0.5)
    for v in (float("nan"), float("inf")):
        bad_x = x.clone()
        bad_x[1, 0, 2, 2] = v
        with pytest.raises(ValueError, match="x contains non-finite values"):
            mix(bad_x)


def test_accuracy_refuses_non_finite_x_and_labels_outside_the_classes():
    model, x = linear(3), x_toy()
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\).*C = 3.*largest label 5"):
        accuracy(model, x, torch.tensor([0, 1, 2, 5]))
    with pytest.raises(ValueError, match=r"\[0, 3\).*smallest label -1"):
        accuracy(model, x, torch.tensor([0, -1, 2, 1]))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains non-finite values"):
        accuracy(model, bad, torch.tensor([0, 1, 2, 1]))
    assert 0.0 <= accuracy(model, x, torch.tensor([0, 1, 2, 1]), batch_size=3) <= 1.0


def test_pgd_refuses_bad_eps_steps_and_x_and_keeps_momentum_and_start():
    model, x, y = linear(3), x_toy(), torch.tensor([0, 1, 2, 1])
    for eps in (float("nan"), float("inf"), -0.1, torch.tensor([0.1, float("nan"), 0.1, 0.1])):
        with pytest.raises(ValueError, match=r"eps must be finite and >= 0 \(in \[0, inf\)\), got"):
            pgd(model, x, y, eps=eps, steps=2)
    with pytest.raises(ValueError, match=r"steps must be an int >= 1, got 2\.5"):
        pgd(model, x, y, eps=0.1, steps=2.5)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        pgd(model, x, y, eps=0.1, steps=0)
    bad = x.clone()
    bad[2, 0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="x contains non-finite values"):
        pgd(model, bad, y, eps=0.1, steps=2)
    far = torch.clamp(x + 0.5, 0, 1)
    adv = pgd(model, x, y, eps=0.1, steps=2, momentum=0.5, start=far)
    assert adv.shape == x.shape and (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_bounded_probs_names_failure_prob_and_n():
    votes = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1]])
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"failure_prob .* must lie in \(0, 1\), got") as e:
            certify.bounded_probs(votes, 100, failure_prob=bad)
        assert "alpha" not in str(e.value)
    with pytest.raises(ValueError, match=r"^n \(noise draws per input\) must be an int >= 1, got 100\.0"):
        certify.bounded_probs(votes, 100.0)
    assert certify.bounded_probs(votes, 100, failure_prob=0.01).shape == votes.shape


def test_cli_unknown_override_key_and_offline_data_fetch(tmp_path, monkeypatch, capsys):
    rc = main(["zoo", "train", "fmnist-standard", "--overrides", '{"epochz": 1}', "--cache", str(tmp_path),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "epochz" in err and "allowed keys" in err
    assert "epochs" in err and "attack_steps" in err and "eval_n" in err and "Traceback" not in err

    import torchvision.datasets.cifar as tv_cifar

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("ADASMOOTH_DATA", str(tmp_path))
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    rc = main(["data", "fetch", "cifar10"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach the download" in err
    assert str(tmp_path / "cifar-10-batches-py") in err and "data_batch_1" in err and "test_batch" in err


def test_select_refuses_an_only_string_naming_no_notebook():
    paths = [Path("01_intro.ipynb"), Path("02_mixing.ipynb")]
    for only in (",", " , ,", " "):
        with pytest.raises(ValueError, match="--only names no notebook"):
            pipeline.select(paths, only)
    assert pipeline.select(paths, "2,") == [paths[1]]
