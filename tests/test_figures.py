"""Every figure states n, ε, the attack set and the interval type: results.caption, save_figure's caption,
every notebook's save_figure call (or its procedure's Figure) passing one, and the trade-off plot's
Clopper-Pearson error bars."""
import ast
import json
import re
from pathlib import Path

from adasmooth import evaluate, results, verdicts

ROOT = Path(__file__).resolve().parents[1]


def test_caption_states_n_eps_attacks_and_the_interval():
    text = results.caption(n=200, eps=0.1, norm="linf", attacks=["pgd_ce", "transfer_g"])
    assert text == "n = 200 test images; ℓ∞ ε = 0.1; attacks: pgd_ce, transfer_g; intervals: 95 % Clopper-Pearson"
    hidden = results.caption(n=200, eps=1.0, norm="l2", attacks=[], drawn=False)
    assert "ℓ2 ε = 1" in hidden and "attacks: none" in hidden and "not drawn (half-width up to 7.1 points" in hidden
    toy = results.caption(n=400, what="toy points", attacks="none (certified ℓ2 disks)", interval=None, extra="x")
    assert toy == "n = 400 toy points; attacks: none (certified ℓ2 disks); no intervals; x"


def test_save_figure_writes_the_caption_under_the_figure(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    fig.subplots().plot([0, 1], [0, 1])
    long = results.caption(n=200, eps=0.1, norm="linf", attacks=["attack"] * 30)
    path = results.save_figure(fig, tmp_path, "f", caption=long)
    assert path.read_bytes()[:4] == b"\x89PNG"
    texts = [t.get_text() for t in fig.texts]
    assert len(texts) == 1 and texts[0].replace("\n", " ") == long and "\n" in texts[0]  # wrapped to the width
    fig.text(0.1, 0.9, "a label of the plot")
    results.save_figure(fig, tmp_path, "f", caption="a second caption")  # saved again: replaced, not stacked
    assert sorted(t.get_text() for t in fig.texts) == ["a label of the plot", "a second caption"]


def _figures_without_caption(module: Path) -> tuple[int, list[int]]:
    """How many ``Figure(...)`` calls a procedure module makes, and the lines of those that pass no caption."""
    calls = [n for n in ast.walk(ast.parse(module.read_text())) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "Figure"]
    return len(calls), [c.lineno for c in calls if len(c.args) < 3 and not any(k.arg == "caption" for k in c.keywords)]


def test_every_notebook_figure_has_a_caption():
    for nb in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        src = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        procedure = re.search(r"experiments\.(\w+)\(globals\(\)\)", src)
        if procedure:  # the notebook's figures are its procedure's adasmooth.experiments.Figure s
            n, bare = _figures_without_caption(ROOT / "adasmooth" / "experiments" / f"{procedure[1]}.py")
            assert n and not bare, f"{nb.name}: Figure without a caption at lines {bare}"
            continue
        calls = re.findall(r"save_figure\((.*?)\)\n", src, flags=re.S)
        assert calls, nb.name
        assert all("caption=" in c for c in calls), nb.name


def test_tradeoff_plot_draws_clopper_pearson_error_bars():
    rows = [{"option": "prob", "alpha": a, "clean": c, "attacked": r, "n": 200}
            for a, c, r in ((0.0, 0.9, 0.1), (1.0, 0.8, 0.7))]
    fig = evaluate.plot_tradeoff(rows)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if c.has_xerr and c.has_yerr]
    assert len(bars) == 1
    segs = bars[0].lines[2][1].get_segments()  # the y error bars, one segment per point
    a = verdicts.accuracy(0.7, 200)
    assad = sorted(tuple(sorted((s[0][1], s[1][1]))) for s in segs)
    assert any(abs(lo - 100 * a.low) < 1e-9 and abs(hi - 100 * a.high) < 1e-9 for lo, hi in assad)
    assert not evaluate.plot_tradeoff(rows, intervals=False).axes[0].containers
