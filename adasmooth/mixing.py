"""The mixed classifier h^α(x) = log((1-α)·softmax(g(x)) + α·softmax(h(x))).

Computed as logsumexp([log(1-α) + log_softmax(g(x)), log(α) + log_softmax(h(x))]) so that
extreme logits and α ∈ {0, 1} stay finite.  :class:`MixedClassifier` also covers the paper's
ablation: mixing logits instead of probabilities, and an input-dependent weight R(x) = α_o·T(x).
The registry of named mixers (:data:`MIXERS`, :func:`register`) is what trade-off curves, the α
explorer, the notebook parameters and the figures read: a new constant-α mixer is one ``register`` call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class NonFiniteOutput(ValueError):
    """A model (g, h, the mixing network, an attacked model) returned NaN or inf on finite inputs."""


def check_finite(outputs: dict) -> None:
    """Raise :class:`NonFiniteOutput` naming the first of ``{name: output}`` that holds NaN or inf, and on how
    many inputs; one device sync when every output is finite."""
    flags = [torch.isfinite(z).all() for z in outputs.values()]
    if bool(flags[0] if len(flags) == 1 else torch.stack(flags).all()):
        return
    for (who, z), ok in zip(outputs.items(), flags):
        if not ok:
            bad = int((~torch.isfinite(z)).reshape(len(z), -1).any(1).sum()) if z.ndim else 1
            raise NonFiniteOutput(f"{who} returned non-finite outputs (NaN or inf) on {bad} of "
                                  f"{len(z) if z.ndim else 1} inputs")


def check_module(model, name: str, role: str) -> None:
    """Raise ``ValueError`` (the project's error for bad arguments) unless ``model`` is a ``torch.nn.Module``."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module ({role}), got {type(model).__name__}")


def param_dtype(model) -> torch.dtype | None:
    """The dtype of ``model``'s first floating-point parameter (None without one)."""
    params = model.parameters() if isinstance(model, nn.Module) else ()
    return next((p.dtype for p in params if p.is_floating_point()), None)


def _is_bool(alpha) -> bool:
    return isinstance(alpha, bool) or str(getattr(alpha, "dtype", "")) in ("bool", "torch.bool")


def check_alpha(alpha, name: str = "alpha") -> torch.Tensor | float:
    """Raise ``ValueError`` unless α is a number (or tensor of numbers) and every α lies in [0, 1]."""
    if _is_bool(alpha):
        raise ValueError(f"{name} must be a number in [0, 1] or a tensor of such, not a bool: got {alpha!r}")
    if alpha is None or isinstance(alpha, (str, bytes)):
        raise ValueError(f"{name} must be a number in [0, 1] or a tensor of such, got {alpha!r}")
    try:
        a = torch.as_tensor(alpha, dtype=torch.float64) if not torch.is_tensor(alpha) else alpha.detach().double()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a number in [0, 1] or a tensor of such, got {alpha!r}") from None
    if torch.isnan(a).any() or (a < 0).any() or (a > 1).any():
        shown = alpha if a.numel() == 1 else f"values in [{a.min().item():.4g}, {a.max().item():.4g}]"
        raise ValueError(f"{name} must lie in [0, 1], got {shown}")
    return alpha


def mix_log_probs(logp_g: torch.Tensor, logp_h: torch.Tensor, alpha) -> torch.Tensor:
    """log((1-α)·exp(logp_g) + α·exp(logp_h)) via logsumexp; α a float or a per-sample (N,) tensor.

    Where a weight is 0 its term is dropped exactly (log 0 = -inf would give NaN gradients).
    """
    a = torch.as_tensor(alpha, dtype=logp_g.dtype, device=logp_g.device)
    if a.ndim == 1:
        a = a[:, None]
    a = a.expand_as(logp_g)
    # log-weights, with 0-weights replaced by a finite value and masked below
    la = torch.log(torch.where(a > 0, a, torch.ones_like(a)))
    l1a = torch.log1p(-torch.where(a < 1, a, torch.zeros_like(a)))
    term_g = torch.where(a < 1, l1a + logp_g, torch.full_like(logp_g, -float("inf")))
    term_h = torch.where(a > 0, la + logp_h, torch.full_like(logp_h, -float("inf")))
    # torch.logsumexp is finite (with finite gradients) when one of the two terms is -inf
    return torch.logsumexp(torch.stack([term_g, term_h]), 0)


SPACES = ("prob", "logit")
WEIGHTS = ("one", "grad_g", "grad_ratio")
DUAL_NORMS = ("l1", "l2")
_TINY = 1e-12  # floor on ‖∇‖_* so that log T stays finite where a softmax saturates


def dual_norm_of(norm: str) -> str:
    """The dual of an attack norm: ℓ1 for ℓ∞ attacks, ℓ2 for ℓ2 attacks."""
    duals = {"linf": "l1", "l2": "l2"}
    if norm not in duals:
        raise ValueError(f"norm must be one of {tuple(duals)}, got {norm!r}")
    return duals[norm]


def _choice(value, allowed, name):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


class PairShape:
    """A mixer of g and h has g's input channels and class count (``num_classes``, ``in_channels``), and the
    input height and width of g or h where one of them knows it (``input_size``)."""

    @property
    def num_classes(self):
        return getattr(self.g, "num_classes", None)

    @property
    def in_channels(self):
        return getattr(self.g, "in_channels", None)

    @property
    def input_size(self):
        return getattr(self.g, "input_size", None) or getattr(self.h, "input_size", None)


def check_pair(g, h) -> None:
    """g and h must be modules that agree on the classes, input channels and input size they declare."""
    check_module(g, "g", "the accurate model")
    check_module(h, "h", "the robust model")
    kg, kh = getattr(g, "num_classes", None), getattr(h, "num_classes", None)
    if kg is not None and kh is not None and kg != kh:
        raise ValueError(f"h must have as many classes as g: g has {kg}, h has {kh}")
    cg, ch = getattr(g, "in_channels", None), getattr(h, "in_channels", None)
    if cg is not None and ch is not None and cg != ch:
        raise ValueError(f"h must take as many input channels as g: g takes {cg}, h takes {ch}")
    sg, sh = getattr(g, "input_size", None), getattr(h, "input_size", None)
    if sg is not None and sh is not None and tuple(sg) != tuple(sh):
        raise ValueError(f"h must take inputs of g's height and width: g takes {tuple(sg)}, "
                         f"h takes {tuple(sh)}")


def check_input(x, channels, size, dtype, who: str = "the model") -> None:
    """x must be an (N, C, H, W) batch of the model's channels and, where known, height/width and parameter
    dtype (``who`` names the module whose parameters set the dtype)."""
    want = f"(N, {channels if channels is not None else 'C'}, " + (f"{size[0]}, {size[1]})" if size else "H, W)")
    if (not torch.is_tensor(x) or x.ndim != 4 or (channels is not None and x.shape[1] != channels)
            or (size is not None and tuple(x.shape[-2:]) != tuple(size))):
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"x must have shape {want}" + (" for this model" if size else "") + f", got {shape}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"x must have dtype {dtype} (the dtype of {who}'s parameters), got {x.dtype}: "
                         f"convert it with x.to({dtype})")


class MixedClassifier(PairShape, nn.Module):
    """The mixed classifier h^α of g (accurate) and h (robust).

    With R = α_o·T(x), α_o = α/(1-α), the output is

    - ``space="prob"``:  log(g(x) + R·h(x)) - log(1 + R), g and h the softmax probabilities
      (log-probabilities; with T = 1, i.e. R = α_o, this is log((1-α)·g + α·h));
    - ``space="logit"``: (z_g + R·z_h)/(1 + R), z_g and z_h the logits.

    Both are the weighted mix with weight w = R/(1+R) = α·T/((1-α) + α·T) on h, so α = 0 gives g
    and α = 1 (R = ∞) gives h exactly.  ``R`` picks T(x): ``"one"`` (T = 1), ``"grad_g"``
    (T = ‖∇ₓ max_j g_j(x)‖_*) or ``"grad_ratio"`` (T = ‖∇ₓ max_j g_j(x)‖_* / ‖∇ₓ max_j h_j(x)‖_*),
    the gradients taken after the softmax when ``space="prob"`` and kept in the autograd graph
    (``create_graph``) so that attacks differentiate through R; ``dual_norm`` is ‖·‖_* ("l1" for
    ℓ∞ attacks, "l2" for ℓ2 attacks; see :func:`dual_norm_of`).  Gradient norms are floored at
    1e-12 so that T stays finite where a softmax saturates.

    ``alpha`` is a float or a per-sample tensor of shape (N,) (then every batch must have N
    inputs); ``forward(x, alpha=...)`` overrides it for one call.  g and h must be modules; x must match
    their channels, ``input_size`` (H, W, where one declares it) and parameter dtype; a model whose output
    holds NaN or inf raises :class:`NonFiniteOutput` naming it.
    """

    def __init__(self, g: nn.Module, h: nn.Module, alpha=0.5, space: str = "prob", R: str = "one",
                 dual_norm: str = "l1"):
        super().__init__()
        self.space = _choice(space, SPACES, "space")
        self.R = _choice(R, WEIGHTS, "R")
        self.dual_norm = _choice(dual_norm, DUAL_NORMS, "dual_norm")
        check_pair(g, h)
        self.g, self.h = g, h
        # class counts: known now from the attributes, else compared on the first forward (any α)
        self._classes_checked = all(getattr(m, "num_classes", None) is not None for m in (g, h))
        self.alpha = alpha

    @property
    def alpha(self):
        """The mixing weight α: a float or a per-sample (N,) tensor, checked to lie in [0, 1]."""
        return self._alpha_value

    @alpha.setter
    def alpha(self, value):
        self._alpha_value = check_alpha(value, "alpha")

    def extra_repr(self) -> str:
        a = self.alpha if not torch.is_tensor(self.alpha) else f"tensor{tuple(self.alpha.shape)}"
        return f"alpha={a}, space={self.space!r}, R={self.R!r}, dual_norm={self.dual_norm!r}"

    # ---- checks -------------------------------------------------------------------------------
    def _check_x(self, x):
        dtype, who = param_dtype(self.g), "g"
        if dtype is None:
            dtype, who = param_dtype(self.h), "h"
        check_input(x, self.in_channels, self.input_size, dtype, who)
        if not torch.isfinite(x).all():
            raise ValueError("x contains non-finite values (NaN or inf)")

    def _alpha(self, alpha, n, ref):
        """α as a python float (scalar case) or an (N,) tensor on ``ref``'s device."""
        alpha = self.alpha if alpha is None else check_alpha(alpha, "alpha")
        if not torch.is_tensor(alpha):
            return float(alpha)
        if alpha.ndim == 0:
            return float(alpha)
        if alpha.shape != (n,):
            raise ValueError(f"alpha must be a float or a tensor of shape ({n},) for this batch, "
                             f"got shape {tuple(alpha.shape)}")
        return alpha.to(device=ref.device, dtype=ref.dtype)

    def _who(self, name):
        return f"{name} ({type(getattr(self, name)).__name__})"

    def _call(self, name, x):
        """``self.<name>(x)``; torch's "mat1 and mat2" mismatch re-raised naming the model and x."""
        try:
            return getattr(self, name)(x)
        except RuntimeError as e:
            if "mat1 and mat2" not in str(e):
                raise
            raise ValueError(f"{self._who(name)} cannot take x of shape {tuple(x.shape)} and dtype {x.dtype} ({e}); "
                             f"an input_size attribute (H, W) on {name} has x checked up front") from e

    def _logits(self, x):
        z_g, z_h = self._call("g", x), self._call("h", x)
        check_finite({self._who("g"): z_g, self._who("h"): z_h})
        if z_g.shape != z_h.shape:
            raise ValueError(f"h must return as many classes as g: g gives {tuple(z_g.shape)}, "
                             f"h gives {tuple(z_h.shape)}")
        self._classes_checked = True
        return z_g, z_h

    def _check_other_end(self, z, other, x):
        """At α ∈ {0, 1} only one model runs; the first time, compare its class count with the other's
        (one input, no gradients, in eval mode so that no BatchNorm statistics move)."""
        modes = [(m, m.training) for m in other.modules()] if isinstance(other, nn.Module) else []
        try:
            for m, _ in modes:
                m.training = False
            with torch.no_grad():
                k_other = other(x[:1]).shape[1]
        finally:
            for m, mode in modes:
                m.training = mode
        k = z.shape[1]
        k_g, k_h = (k, k_other) if other is self.h else (k_other, k)
        if k_g != k_h:
            raise ValueError(f"h must return as many classes as g: g gives {k_g}, h gives {k_h}")
        self._classes_checked = True

    # ---- T(x) ---------------------------------------------------------------------------------
    def _norm(self, v):
        v = v.flatten(1)
        if self.dual_norm == "l1":
            return v.abs().sum(1)
        return (v.square().sum(1) + _TINY**2).sqrt()  # smooth at 0 (finite double-backward)

    def _score(self, z):
        """max_j of the mixed quantity: softmax probabilities (prob space) or logits."""
        return (F.softmax(z, 1) if self.space == "prob" else z).max(1).values

    def _logits_and_log_T(self, x):
        """(z_g, z_h, log T(x)); T's gradients are built with create_graph when grad is enabled."""
        keep = torch.is_grad_enabled()
        with torch.enable_grad():
            xi = x if x.requires_grad else x.detach().requires_grad_(True)
            z_g, z_h = self._logits(xi)
            need_h = self.R == "grad_ratio"
            (d_g,) = torch.autograd.grad(self._score(z_g).sum(), xi, create_graph=keep, retain_graph=True)
            log_t = torch.log(self._norm(d_g) + _TINY)
            if need_h:
                (d_h,) = torch.autograd.grad(self._score(z_h).sum(), xi, create_graph=keep, retain_graph=True)
                log_t = log_t - torch.log(self._norm(d_h) + _TINY)
        if not keep:
            z_g, z_h, log_t = z_g.detach(), z_h.detach(), log_t.detach()
        return z_g, z_h, log_t

    def log_T(self, x: torch.Tensor) -> torch.Tensor:
        """log T(x) per sample (zeros for ``R="one"``)."""
        self._check_x(x)
        if self.R == "one":
            return torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        return self._logits_and_log_T(x)[2]

    # ---- forward ------------------------------------------------------------------------------
    def _mix(self, z_g, z_h, w):
        if not torch.is_tensor(w):  # scalar w in (0, 1): one fused op (few small kernels per attack step)
            if self.space == "prob":
                return torch.logaddexp(F.log_softmax(z_g, 1) + math.log1p(-w), F.log_softmax(z_h, 1) + math.log(w))
            return torch.lerp(z_g, z_h, w)
        if self.space == "prob":
            return mix_log_probs(F.log_softmax(z_g, 1), F.log_softmax(z_h, 1), w)
        return (1 - w[:, None]) * z_g + w[:, None] * z_h

    def _end(self, model, x):
        name = "g" if model is self.g else "h"
        z = self._call(name, x)
        check_finite({self._who(name): z})
        return F.log_softmax(z, 1) if self.space == "prob" else z

    def forward(self, x: torch.Tensor, alpha=None) -> torch.Tensor:
        self._check_x(x)
        a = self._alpha(alpha, x.shape[0], x)
        if not torch.is_tensor(a) and a in (0.0, 1.0):  # the ends: exactly g or h, one model's cost
            model, other = (self.g, self.h) if a == 0.0 else (self.h, self.g)
            out = self._end(model, x)
            if not self._classes_checked:
                self._check_other_end(out, other, x)
            return out
        if self.R == "one":
            z_g, z_h = self._logits(x)
            return self._mix(z_g, z_h, a)
        z_g, z_h, log_t = self._logits_and_log_T(x)
        a_t = torch.as_tensor(a, dtype=log_t.dtype, device=log_t.device).expand_as(log_t)
        # w = R/(1+R) = σ(logit α + log T); α = 0 -> 0 and α = 1 -> 1 exactly, whatever T is
        inner = torch.where((a_t > 0) & (a_t < 1), a_t, torch.full_like(a_t, 0.5))
        w = torch.sigmoid(torch.log(inner) - torch.log1p(-inner) + log_t)
        w = torch.where(a_t <= 0, torch.zeros_like(w), torch.where(a_t >= 1, torch.ones_like(w), w))
        return self._mix(z_g, z_h, w)


# ---- the registry of constant-α mixers -----------------------------------------------------------
@dataclass(frozen=True)
class Mixer:
    """A named way to mix g and h with one scalar knob α: its space and weight R (:class:`MixedClassifier`)
    and its labels (``label`` in figures and widgets, ``short`` in the verdict table)."""

    name: str
    space: str
    R: str
    label: str
    short: str

    def build(self, g: nn.Module, h: nn.Module, alpha, *, norm: str = "linf") -> "MixedClassifier":
        """h^α of this mixer; the gradient-norm weights use the dual of the attack ``norm``."""
        return MixedClassifier(g, h, alpha, space=self.space, R=self.R, dual_norm=dual_norm_of(norm))


MIXERS: dict[str, Mixer] = {}
OPTIONS: dict[str, tuple[str, str]] = {}  # name -> (space, R), the options of the paper's ablation (Fig. 1 / SM2)
LABELS: dict[str, str] = {}               # name -> figure label


def register(name: str, space: str, R: str, label: str, short: str | None = None) -> Mixer:
    """Add a constant-α mixer under ``name`` (trade-off curves, the explorer, the parameter domains and
    the figures then know it); returns it."""
    if name in MIXERS:
        raise ValueError(f"mixer {name!r} is already registered")
    _choice(space, SPACES, "space")
    _choice(R, WEIGHTS, "R")
    m = MIXERS[name] = Mixer(name, space, R, label, short or label)
    OPTIONS[name], LABELS[name] = (space, R), label
    return m


def get(name: str) -> Mixer:
    """The registered mixer ``name`` (ValueError naming the registered ones otherwise)."""
    if name not in MIXERS:
        raise ValueError(f"mixer must be one of {tuple(MIXERS)}, got {name!r}")
    return MIXERS[name]


register("prob", "prob", "one", "R = 1, SoftMax", "R = 1 probs")              # the winner
register("logit", "logit", "one", "R = 1, no SoftMax", "R = 1 logits")
register("prob_grad_g", "prob", "grad_g", "R = α_o‖∇g‖*, SoftMax", "R = α‖∇g‖")
register("prob_grad_ratio", "prob", "grad_ratio", "R = α_o‖∇g‖*/‖∇h‖*, SoftMax", "R = α‖∇g‖/‖∇h‖")
register("logit_grad_g", "logit", "grad_g", "R = α_o‖∇g‖*, no SoftMax", "R = α‖∇g‖ logits")
register("logit_grad_ratio", "logit", "grad_ratio", "R = α_o‖∇g‖*/‖∇h‖*, no SoftMax", "R = α‖∇g‖/‖∇h‖ logits")
