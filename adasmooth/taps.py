"""Feature taps of any classifier, so that the mixing network α_θ can read g and h.

α_θ reads two intermediate feature maps ("taps") ``[f1, f2]`` of each base model through
``forward_with_taps(x) -> (logits, [f1, f2])`` and sizes itself from ``tap_channels = (c1, c2)``
(:mod:`adasmooth.mixing_net`).  The project's own classifiers (:mod:`adasmooth.models`) have both;
:class:`Tapped` gives them to any other ``nn.Module`` by recording the outputs of two named layers
with forward hooks, and :func:`with_taps` applies it only where a model lacks them.

Default layers (:data:`DEFAULT_TAPS`, the first pair a model has): ``layer1``/``layer2`` (torchvision and
RobustBench ResNets and PreAct ResNets), ``block1``/``block2`` (RobustBench's WideResNets), ``layer_0``/
``layer_1`` (DeepMind-style PreAct ResNets of RobustBench), ``stage1``/``stage2`` (adasmooth's classifiers),
``features.1``/``features.3`` (torchvision's ConvNeXt).  Any other model: name two layers,
``Tapped(model, taps=("encoder.stage1", "encoder.stage2"))`` (names as in ``model.named_modules()``).
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

DEFAULT_TAPS = (("layer1", "layer2"), ("block1", "block2"), ("layer_0", "layer_1"), ("stage1", "stage2"),
                ("features.1", "features.3"))
# input sides tried by the dry forward when ``input_size`` is not given (CIFAR, then MNIST-like)
DRY_SIDES = (32, 28)


def has_taps(model: nn.Module) -> bool:
    """Whether ``model`` already provides ``forward_with_taps`` and ``tap_channels``."""
    return callable(getattr(model, "forward_with_taps", None)) and getattr(model, "tap_channels", None) is not None


def default_taps(model: nn.Module) -> tuple[str, str]:
    """The first pair of :data:`DEFAULT_TAPS` that names two layers of ``model``; ``ValueError`` otherwise."""
    names = {n for n, _ in model.named_modules()}
    for pair in DEFAULT_TAPS:
        if all(p in names for p in pair):
            return pair
    top = [n for n, _ in model.named_children()]
    raise ValueError(f"{type(model).__name__} has none of the default tap layers "
                     f"{[list(p) for p in DEFAULT_TAPS]}; pass taps=(first, second) naming two of its layers "
                     f"(its top-level layers: {top})")


def _first_tensor(out, name: str) -> torch.Tensor:
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not torch.is_tensor(out) or out.ndim != 4:
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"tap layer {name!r} must output a feature map of shape (N, C, H, W), got {shape}; "
                         "choose another layer with taps=(first, second)")
    return out


def _in_channels(model: nn.Module) -> int | None:
    known = getattr(model, "in_channels", None)
    if isinstance(known, int):
        return known
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


class Tapped(nn.Module):
    """``model`` with ``forward_with_taps(x) -> (logits, [f1, f2])``: f1, f2 the outputs of layers ``taps``.

    ``forward(x)`` is ``model(x)`` (no hooks, same numbers).  ``tap_channels``, ``num_classes`` and
    ``in_channels`` come from one dry forward in eval mode without gradients on zeros of shape
    (1, C, input_size, input_size) (C: the first Conv2d's input channels; ``input_size`` None: 32, then 28).
    """

    def __init__(self, model: nn.Module, taps: tuple[str, str] | None = None, *, input_size: int | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        taps = default_taps(model) if taps is None else tuple(taps)
        modules = dict(model.named_modules())
        if len(taps) != 2 or any(t not in modules for t in taps):
            raise ValueError(f"taps must name two layers of {type(model).__name__} (as in model.named_modules()), "
                             f"got {taps!r}; its top-level layers: {[n for n, _ in model.named_children()]}")
        self.model, self.taps = model, taps
        c = _in_channels(model)
        if c is None:
            raise ValueError(f"{type(model).__name__} has no Conv2d to read its input channels from; "
                             "set model.in_channels before wrapping it")
        self.in_channels = c
        self.tap_channels, self.num_classes = self._dry_forward(c, input_size)

    @torch.no_grad()
    def _dry_forward(self, c: int, input_size: int | None):
        p = next(self.model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        was = self.model.training
        self.model.eval()
        errors = []
        try:
            for side in ([input_size] if input_size else DRY_SIDES):
                try:
                    z, (f1, f2) = self.forward_with_taps(torch.zeros(1, c, side, side, device=device))
                except (RuntimeError, ValueError) as e:
                    if "tap layer" in str(e):
                        raise
                    errors.append(f"{side}x{side}: {e}")
                    continue
                log.debug("taps %s of %s: %s channels", self.taps, type(self.model).__name__, (f1.shape[1], f2.shape[1]))
                return (int(f1.shape[1]), int(f2.shape[1])), int(z.shape[-1])
        finally:
            self.model.train(was)
        raise ValueError(f"the dry forward of {type(self.model).__name__} failed on inputs of shape (1, {c}, S, S) "
                         f"({'; '.join(errors)}); pass input_size=<image side>")

    def forward_with_taps(self, x: torch.Tensor):
        """(logits, [f1, f2]): ``model(x)`` and the outputs of the two tap layers in that same forward."""
        got: dict[str, torch.Tensor] = {}
        modules = dict(self.model.named_modules())
        handles = [modules[name].register_forward_hook(
            lambda _m, _inp, out, name=name: got.setdefault(name, _first_tensor(out, name))) for name in self.taps]
        try:
            z = self.model(x)
        finally:
            for hd in handles:
                hd.remove()
        missing = [t for t in self.taps if t not in got]
        if missing:
            raise ValueError(f"tap layer(s) {missing} of {type(self.model).__name__} did not run in its forward; "
                             "choose layers that its forward calls")
        return z, [got[t] for t in self.taps]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def with_taps(model: nn.Module, taps: tuple[str, str] | None = None, *, input_size: int | None = None) -> nn.Module:
    """``model`` itself when it has ``forward_with_taps`` and ``tap_channels`` (and no ``taps`` are asked for),
    else :class:`Tapped` ``(model, taps)``."""
    if taps is None and has_taps(model):
        return model
    return Tapped(model, taps, input_size=input_size)
