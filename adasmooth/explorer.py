"""The α explorer: a slider for α and a choice of mixing option over cached model outputs.

Moving the slider recomputes h^α's clean accuracy *live* from the cached logits of g and h (no model
runs), looks the attacked accuracy up on a precomputed trade-off grid (:func:`evaluate.tradeoff_curve`,
linear between grid points), moves the point on the trade-off curve and redraws the per-class
confusion of h^α at that α.  Everything the widgets show is also an attribute (``clean_accuracy``,
``attacked_accuracy``, ``point``, ``confusion``, ``readout.value``, ``marker``, ``image.value``), so the
logic runs headless:
setting ``slider.value`` fires the observers synchronously without a kernel.
"""
from __future__ import annotations

import io
import logging
import textwrap

import numpy as np
import torch

from . import curves
from .mixing import LABELS, OPTIONS, MixedClassifier, check_alpha
from .runtime import batches, get_device

log = logging.getLogger(__name__)


@torch.no_grad()
def cached_logits(model, x: torch.Tensor, batch_size: int = 1000, device=None) -> torch.Tensor:
    """``model(x)`` in batches without gradients, returned on the CPU (N, C)."""
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else get_device(None)
    return torch.cat([model(x[sl].to(device)).cpu() for sl in batches(len(x), batch_size)])


class _Lookup(torch.nn.Module):
    """A 'model' whose input is a batch of row indices into cached logits (shape (N, 1, 1, 1))."""

    def __init__(self, z: torch.Tensor):
        super().__init__()
        self.z = z

    def forward(self, idx):
        return self.z[idx.flatten().long()]


def confusion_matrix(y: torch.Tensor, pred: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    flat = torch.as_tensor(y).long() * num_classes + torch.as_tensor(pred).long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes).numpy()


class AlphaExplorer:
    """Interactive view of h^α over α for the options of a precomputed trade-off grid.

    ``logits_g``, ``logits_h``: (N, C) clean logits of g and h on the images the grid was computed
    on, ``y`` their labels; ``rows``: :func:`evaluate.tradeoff_curve` rows (options with R = 1 only,
    since other weights need gradients of the models).  ``attack`` names the grid's attack in the
    readout.  ``widget`` is the ipywidgets box to display.
    """

    def __init__(self, logits_g: torch.Tensor, logits_h: torch.Tensor, y: torch.Tensor, rows: list[dict], *,
                 alpha: float = 0.5, option: str | None = None, class_names: list[str] | None = None,
                 attack: str = "attack"):
        import ipywidgets as w

        if logits_g.shape != logits_h.shape or logits_g.ndim != 2:
            raise ValueError(f"logits_g and logits_h must both be (N, C), got {tuple(logits_g.shape)} "
                             f"and {tuple(logits_h.shape)}")
        if y.shape != (logits_g.shape[0],):
            raise ValueError(f"y must have shape ({logits_g.shape[0]},), got {tuple(y.shape)}")
        check_alpha(alpha, "alpha")
        self.y = y.cpu().long()
        self.num_classes = logits_g.shape[1]
        self.class_names = list(class_names or range(self.num_classes))
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names must have {self.num_classes} names, got {len(self.class_names)}")
        self.curves = curves.by_option(rows)
        for opt in self.curves:
            if OPTIONS.get(opt, (None, None))[1] != "one":
                raise ValueError(f"rows hold option {opt!r}; the explorer computes live only the R = 1 options "
                                 f"{[o for o, (_, r) in OPTIONS.items() if r == 'one']}")
        option = option or next(iter(self.curves))
        if option not in self.curves:
            raise ValueError(f"option must be one of {list(self.curves)}, got {option!r}")
        self.attack = attack
        self._idx = torch.arange(len(self.y), dtype=torch.float32).view(-1, 1, 1, 1)
        g, h = _Lookup(logits_g.detach().cpu().float()), _Lookup(logits_h.detach().cpu().float())
        self._mixed = {o: MixedClassifier(g, h, 0.0, space=OPTIONS[o][0], R="one") for o in self.curves}

        self.slider = w.FloatSlider(value=float(alpha), min=0.0, max=1.0, step=0.01, description="α",
                                    continuous_update=True, readout_format=".2f",
                                    layout=w.Layout(width="420px"))
        self.option = w.ToggleButtons(options=[(LABELS.get(o, o), o) for o in self.curves], value=option,
                                      description="mixing")
        self.readout = w.HTML()
        # the figure travels as PNG bytes in an Image widget (kernel -> front end only); an Output widget
        # would make headless executors (nbclient/papermill) echo comm messages back and stall at times
        self.image = w.Image(format="png", layout=w.Layout(max_width="1000px"))
        self.widget = w.VBox([self.slider, self.option, self.readout, self.image])
        self.fig = None
        self.slider.observe(self._on_change, names="value")
        self.option.observe(self._on_change, names="value")
        self._on_change()

    # ---- the numbers -----------------------------------------------------------------------
    def predictions(self, alpha: float, option: str) -> torch.Tensor:
        """argmax h^α on the cached images, for mixing ``option``."""
        with torch.no_grad():
            return self._mixed[option](self._idx, alpha=float(alpha)).argmax(1)

    def _on_change(self, change=None):
        a, opt = float(self.slider.value), self.option.value
        c = self.curves[opt]
        pred = self.predictions(a, opt)
        self.clean_accuracy = (pred == self.y).double().mean().item()
        self.attacked_accuracy = curves.interpolate(c["alpha"], c["attacked"], a)
        self.point = (self.clean_accuracy, self.attacked_accuracy)
        self.confusion = confusion_matrix(self.y, pred, self.num_classes)
        lo, hi = curves.bracket(c["alpha"], a)
        how = f"grid point α = {lo:g}" if lo == hi else f"interpolated between α = {lo:g} and {hi:g}"
        self.readout.value = (f"<b>α = {a:.2f}</b> ({LABELS.get(opt, opt)}): clean accuracy "
                              f"<b>{100 * self.clean_accuracy:.1f} %</b> (live, {len(self.y)} images) · "
                              f"attacked accuracy <b>{100 * self.attacked_accuracy:.1f} %</b> "
                              f"({self.attack}; {how})")
        self._draw()

    def grid_gap(self) -> float:
        """Largest |live clean accuracy - grid clean accuracy| over the grid's α values and options:
        0 when the cached logits and the grid describe the same images and models."""
        gap = 0.0
        for opt, c in self.curves.items():
            for a, clean in zip(c["alpha"], c["clean"]):
                pred = self.predictions(float(a), opt)
                gap = max(gap, abs((pred == self.y).double().mean().item() - clean))
        return gap

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """Clean accuracy of h^α per true class at the current α."""
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(1), 1)

    # ---- the drawing -----------------------------------------------------------------------
    def _build_figure(self):
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(11, 4.4), layout="constrained")
        self._ax_curve, self._ax_conf = self.fig.subplots(1, 2, width_ratios=[1, 1.1])
        self._lines = {}
        for opt, c in self.curves.items():
            (self._lines[opt],) = self._ax_curve.plot(100 * c["clean"], 100 * c["attacked"], "o-", alpha=0.35,
                                                      label=LABELS.get(opt, opt))
        (self.marker,) = self._ax_curve.plot([], [], "*", ms=18, color="crimson", label="h^α at the slider")
        self._ax_curve.set_xlabel("clean accuracy (%)")
        # the attack's description goes in a wrapped title: as the y-label it stretched the whole figure
        self._ax_curve.set_ylabel("attacked accuracy (%)")
        self._ax_curve.set_title(textwrap.fill(f"attacked: {self.attack}; n = {len(self.y)} images", 70),
                                 fontsize=8, loc="left")
        self._ax_curve.grid(alpha=0.3)
        self._ax_curve.legend(fontsize=8, loc="lower left")
        self._image = self._ax_conf.imshow(np.zeros((self.num_classes,) * 2), vmin=0, vmax=100, cmap="Blues")
        ticks = range(self.num_classes)
        self._ax_conf.set_xticks(ticks, [str(n) for n in self.class_names], rotation=60, ha="right", fontsize=7)
        self._ax_conf.set_yticks(ticks, [str(n) for n in self.class_names], fontsize=7)
        self._ax_conf.set_xlabel("predicted")
        self._ax_conf.set_ylabel("true")
        self.fig.colorbar(self._image, ax=self._ax_conf, label="% of the true class")

    def _draw(self):
        if self.fig is None:
            self._build_figure()
        opt = self.option.value
        for o, line in self._lines.items():
            line.set_alpha(1.0 if o == opt else 0.25)
        self.marker.set_data([100 * self.point[0]], [100 * self.point[1]])
        rows = self.confusion.sum(1, keepdims=True)
        self._image.set_data(100 * self.confusion / np.maximum(rows, 1))
        self._ax_conf.set_title(f"confusion of h^α at α = {self.slider.value:.2f} (clean)")
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=80)
        self.image.value = buf.getvalue()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def _grid_row(r) -> bool:
    """Whether ``r`` is a row of a trade-off grid: ``option`` (str), ``alpha``, ``clean``, ``attacked`` (numbers)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return isinstance(r, dict) and isinstance(r.get("option"), str) and all(
        number(r.get(k)) for k in ("alpha", "clean", "attacked"))


def recorded_grid(path, inputs=None, **expected) -> list[dict]:
    """The trade-off grid a run of notebook 07 recorded in its results JSON ``path`` (``data.curve``),
    after checking that it was computed with the ``expected`` parameters (e.g. ``g``, ``h``, ``eps``,
    ``n_eval``, ``alphas``) and on the models ``inputs`` (their sha256, as ``resolve.model`` describes
    them): the explorer then shows that grid without recomputing the attacks."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"grid_from: {p} does not exist; record a grid first with "
                                f"python -m adasmooth reproduce --only 07")
    if not p.is_file():
        raise ValueError(f"grid_from: {p} is not a file; expected notebook 07's results JSON")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"grid_from: {p} is not a readable JSON file ({e}); expected notebook 07's results "
                         f"JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("params", {}), dict) \
            or not isinstance(doc.get("data") or {}, dict):
        raise ValueError(f"grid_from: {p} is not a results JSON (an object with 'params' and 'data'); expected "
                         f"notebook 07's results JSON")
    params = doc.get("params", {})
    rows = (doc.get("data") or {}).get("curve")
    if not rows:
        raise ValueError(f"grid_from: {p} holds no recorded grid (data.curve)")
    bad = next((r for r in rows if not _grid_row(r)), None) if isinstance(rows, list) else rows
    if bad is not None:
        raise ValueError(f"grid_from: {p}: data.curve must be a list of rows with 'option', 'alpha', 'clean' and "
                         f"'attacked', got {str(bad)[:80]}")
    wrong = {k: (params.get(k), v) for k, v in expected.items() if params.get(k) != v}
    if inputs is not None:
        recorded = doc.get("inputs") if isinstance(doc.get("inputs"), list) else []
        rec = [i.get("sha256") if isinstance(i, dict) else None for i in recorded]
        now = [i.get("sha256") for i in inputs]
        if rec != now:
            wrong["model weights (sha256)"] = ([r and r[:12] for r in rec], [n and n[:12] for n in now])
    if wrong:
        detail = "; ".join(f"{k} = {rec!r} there, {want!r} here" for k, (rec, want) in wrong.items())
        raise ValueError(f"grid_from: {p} was computed with other parameters ({detail}); use the same "
                         f"parameters or grid_from = None to compute the grid")
    return rows
