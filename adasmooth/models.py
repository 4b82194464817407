"""Classifiers with feature taps.

Every model takes inputs in [0, 1] (normalisation is inside), returns logits from
``forward`` and exposes ``forward_with_taps(x) -> (logits, [f1, f2])``: the outputs of its
first stage (stem + first block) and second stage, which the mixing network α_θ reads.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .mixing import check_input, param_dtype

MEANS = {1: (0.2860,), 3: (0.4914, 0.4822, 0.4465)}
STDS = {1: (0.3530,), 3: (0.2470, 0.2435, 0.2616)}


class Normalize(nn.Module):
    """(x - mean) / std per channel, with mean/std stored as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Base class: ``normalize -> stage1 -> stage2 -> head``; subclasses build the three parts."""

    num_classes: int
    in_channels: int
    tap_channels: tuple[int, int]
    input_size: tuple[int, int] | None = None  # (H, W) where the architecture fixes it (checked on forward)

    def __init__(self, num_classes: int, in_channels: int):
        super().__init__()
        if in_channels not in MEANS:
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.normalize = Normalize(MEANS[in_channels], STDS[in_channels])

    def forward_with_taps(self, x: torch.Tensor):
        check_input(x, self.in_channels, self.input_size, param_dtype(self), type(self).__name__)
        f1 = self.stage1(self.normalize(x))
        f2 = self.stage2(f1)
        return self.head(f2), [f1, f2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(x)[0]


class SmallCNN(Classifier):
    """conv32 -> conv64 -> fc128: the embedded default's architecture (trains on 2 CPU cores)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, side: int = 28):
        super().__init__(num_classes, in_channels)
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * (side // 4) ** 2, 128), nn.ReLU(),
                                  nn.Linear(128, num_classes))
        self.tap_channels = (width, 2 * width)
        self.input_size = (side, side)


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride=1, drop=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = drop
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = F.relu(self.bn2(out))
        if self.drop:
            out = F.dropout(out, self.drop, self.training)
        return self.conv2(out) + sc


def _stage(cin, cout, n, stride, drop=0.0):
    layers = [PreActBlock(cin, cout, stride, drop)] + [PreActBlock(cout, cout, 1, drop) for _ in range(n - 1)]
    return nn.Sequential(*layers)


class PreActResNet18(Classifier):
    """Pre-activation ResNet-18 (He et al. 2016), CIFAR variant. Taps: stem+layer1, layer2."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__(num_classes, in_channels)
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), _stage(64, 64, 2, 1))
        self.stage2 = _stage(64, 128, 2, 2)
        self.head = nn.Sequential(_stage(128, 256, 2, 2), _stage(256, 512, 2, 2), nn.BatchNorm2d(512),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))
        self.tap_channels = (64, 128)


class WideResNet(Classifier):
    """WideResNet-depth-width (Zagoruyko & Komodakis), e.g. WRN-34-10 for TRADES. Taps: block1, block2."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, depth: int = 34, width: int = 10):
        super().__init__(num_classes, in_channels)
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        ch = [16, 16 * width, 32 * width, 64 * width]
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False), _stage(ch[0], ch[1], n, 1))
        self.stage2 = _stage(ch[1], ch[2], n, 2)
        self.head = nn.Sequential(_stage(ch[2], ch[3], n, 2), nn.BatchNorm2d(ch[3]), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch[3], num_classes))
        self.tap_channels = (ch[1], ch[2])


class ConvNeXtT(Classifier):
    """torchvision's ConvNeXt-T (no pretrained weights offline), inputs resized to ``resize``.

    Taps: stem + stage 1 (96 ch), stage 2 (192 ch).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, resize: int = 224):
        super().__init__(num_classes, in_channels)
        from torchvision.models import convnext_tiny

        net = convnext_tiny(weights=None, num_classes=num_classes)
        if in_channels != 3:
            net.features[0][0] = nn.Conv2d(in_channels, 96, kernel_size=4, stride=4)
        self.resize = resize
        self.stage1 = nn.Sequential(_Resize(resize), net.features[0], net.features[1])
        self.stage2 = nn.Sequential(net.features[2], net.features[3])
        self.head = nn.Sequential(*net.features[4:], net.avgpool, net.classifier)
        self.tap_channels = (96, 192)


class _Resize(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, x):
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


ARCHITECTURES: dict[str, Callable[..., Classifier]] = {
    "small_cnn": SmallCNN,
    "preact_resnet18": PreActResNet18,
    "wrn34_10": lambda **kw: WideResNet(depth=34, width=10, **kw),
    "wrn": WideResNet,
    "convnext_t": ConvNeXtT,
}


def build(arch: str, seed: int | None = None, **kwargs) -> Classifier:
    """Instantiate architecture ``arch`` (a key of ``ARCHITECTURES``) with ``kwargs``.

    With ``seed``, the initial weights come from that seed (the global RNG is left untouched).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    if seed is None:
        return ARCHITECTURES[arch](**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHITECTURES[arch](**kwargs)
