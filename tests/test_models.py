import pytest
import torch

from adasmooth import models


@pytest.mark.parametrize("arch,kw,shape,taps", [
    ("small_cnn", {"in_channels": 1}, (2, 1, 28, 28), [(2, 32, 14, 14), (2, 64, 7, 7)]),
    ("small_cnn", {"in_channels": 3, "side": 32}, (2, 3, 32, 32), [(2, 32, 16, 16), (2, 64, 8, 8)]),
    ("preact_resnet18", {"in_channels": 3}, (2, 3, 32, 32), [(2, 64, 32, 32), (2, 128, 16, 16)]),
    ("wrn", {"in_channels": 3, "depth": 10, "width": 2}, (2, 3, 32, 32), [(2, 32, 32, 32), (2, 64, 16, 16)]),
    ("convnext_t", {"in_channels": 3, "resize": 64}, (2, 3, 32, 32), [(2, 96, 16, 16), (2, 192, 8, 8)]),
])
def test_logits_and_taps(arch, kw, shape, taps):
    torch.manual_seed(0)
    m = models.build(arch, num_classes=10, **kw).eval()
    x = torch.rand(shape)
    logits, feats = m.forward_with_taps(x)
    assert logits.shape == (2, 10)
    assert [tuple(f.shape) for f in feats] == taps
    assert tuple(f.shape[1] for f in feats) == m.tap_channels
    assert torch.allclose(m(x), logits)


def test_wrn34_10_builds_with_expected_taps():
    m = models.build("wrn34_10", num_classes=10, in_channels=3)
    assert m.tap_channels == (160, 320)
    assert sum(p.numel() for p in m.parameters()) > 40e6  # WRN-34-10 has ~46M parameters


def test_normalisation_is_inside_the_model():
    m = models.SmallCNN()
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(m.normalize(x), (x - 0.2860) / 0.3530)


def test_bad_input_shape_and_arch():
    m = models.SmallCNN()
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1, 28, 28\) for this model, got \(2, 3, 28, 28\)"):
        m(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="arch must be one of"):
        models.build("vgg")
