"""The α explorer's logic, headless (setting ``slider.value`` fires the observers synchronously without a
kernel), and the trade-off-curve helpers it reads."""
import numpy as np
import pytest
import torch

from adasmooth import curves
from adasmooth.explorer import AlphaExplorer, cached_logits, confusion_matrix

N, C = 300, 10


@pytest.fixture(scope="module")
def logits():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, C, (N,), generator=g)
    zg = 3 * torch.randn(N, C, generator=g)
    zg[torch.arange(N), y] += 3.0       # g: accurate-ish
    zh = torch.randn(N, C, generator=g)
    zh[torch.arange(N), y] += 1.0       # h: less accurate
    return zg, zh, y


def _mixed_pred_numpy(zg, zh, alpha, option):
    """Independent reference: argmax (1-α)·softmax(z_g) + α·softmax(z_h), or of (1-α)·z_g + α·z_h."""
    zg, zh = zg.double().numpy(), zh.double().numpy()
    if option == "prob":
        pg = np.exp(zg - zg.max(1, keepdims=True))
        ph = np.exp(zh - zh.max(1, keepdims=True))
        return ((1 - alpha) * pg / pg.sum(1, keepdims=True) + alpha * ph / ph.sum(1, keepdims=True)).argmax(1)
    return ((1 - alpha) * zg + alpha * zh).argmax(1)


GRID = [0.0, 0.2, 0.5, 0.8, 1.0]


def _rows(zg, zh, y, options=("prob", "logit"), attacked=lambda a: 0.1 + 0.6 * a):
    """Grid rows as tradeoff_curve returns them; clean computed independently, attacked synthetic."""
    return [{"option": o, "space": o, "R": "one", "alpha": a,
             "clean": float((_mixed_pred_numpy(zg, zh, a, o) == y.numpy()).mean()), "attacked": attacked(a)}
            for o in options for a in GRID]


def test_slider_updates_readout_point_marker_and_confusion(logits):
    zg, zh, y = logits
    ex = AlphaExplorer(zg, zh, y, _rows(zg, zh, y), alpha=0.5, attack="PGD-20")
    assert ex.option.value == "prob"
    before, png = ex.readout.value, ex.image.value
    assert png[:4] == b"\x89PNG"
    for a in (0.3, 0.65, 0.9, 0.0, 1.0):
        ex.slider.value = a
        expect = (_mixed_pred_numpy(zg, zh, a, "prob") == y.numpy()).mean()
        assert ex.clean_accuracy == pytest.approx(expect, abs=1e-12)
        assert ex.attacked_accuracy == pytest.approx(0.1 + 0.6 * a)  # linear grid: exact interpolation
        assert ex.point == (ex.clean_accuracy, ex.attacked_accuracy)
        np.testing.assert_allclose(ex.marker.get_xydata(), [[100 * ex.point[0], 100 * ex.point[1]]])
        assert f"α = {a:.2f}" in ex.readout.value
        assert f"{100 * ex.clean_accuracy:.1f} %" in ex.readout.value
        assert f"{100 * ex.attacked_accuracy:.1f} %" in ex.readout.value
        cm = ex.confusion
        assert cm.shape == (C, C) and cm.sum() == N
        assert np.trace(cm) == round(ex.clean_accuracy * N)
        np.testing.assert_array_equal(cm.sum(1), np.bincount(y.numpy(), minlength=C))
        np.testing.assert_allclose(ex.per_class_accuracy, np.diag(cm) / cm.sum(1))
    assert ex.readout.value != before
    assert ex.image.value[:4] == b"\x89PNG" and ex.image.value != png  # the drawing was redone
    assert "grid point α = 1" in ex.readout.value


def test_interpolation_between_grid_points_is_announced(logits):
    zg, zh, y = logits
    ex = AlphaExplorer(zg, zh, y, _rows(zg, zh, y, attacked=lambda a: a * a), alpha=0.35)
    assert ex.attacked_accuracy == pytest.approx((0.2**2 + 0.5**2) / 2)
    assert "interpolated between α = 0.2 and 0.5" in ex.readout.value


def test_option_switch_changes_the_live_mix(logits):
    zg, zh, y = logits
    ex = AlphaExplorer(zg, zh, y, _rows(zg, zh, y, attacked=lambda a: 0.3), alpha=0.6)
    prob_clean = ex.clean_accuracy
    ex.option.value = "logit"
    assert ex.clean_accuracy == pytest.approx((_mixed_pred_numpy(zg, zh, 0.6, "logit") == y.numpy()).mean())
    assert ex.clean_accuracy != prob_clean  # these logits make the two mixes disagree at α = 0.6
    assert "no SoftMax" in ex.readout.value


def test_ends_are_g_and_h_and_grid_gap_is_zero_for_a_consistent_grid(logits):
    zg, zh, y = logits
    ex = AlphaExplorer(zg, zh, y, _rows(zg, zh, y))
    ex.slider.value = 0.0
    assert ex.clean_accuracy == pytest.approx((zg.argmax(1) == y).double().mean().item())
    ex.slider.value = 1.0
    assert ex.clean_accuracy == pytest.approx((zh.argmax(1) == y).double().mean().item())
    assert ex.grid_gap() == 0.0
    wrong = _rows(zg, zh, y)
    wrong[2]["clean"] += 0.05
    assert AlphaExplorer(zg, zh, y, wrong).grid_gap() == pytest.approx(0.05)


def test_bad_inputs_are_refused(logits):
    zg, zh, y = logits
    rows = _rows(zg, zh, y)
    with pytest.raises(ValueError, match="alpha must lie in"):
        AlphaExplorer(zg, zh, y, rows, alpha=1.5)
    with pytest.raises(ValueError, match="logits_g and logits_h"):
        AlphaExplorer(zg, zh[:, :5], y, rows)
    with pytest.raises(ValueError, match="y must have shape"):
        AlphaExplorer(zg, zh, y[:10], rows)
    with pytest.raises(ValueError, match="R = 1 options"):
        AlphaExplorer(zg, zh, y, [dict(r, option="prob_grad_g") for r in rows])
    with pytest.raises(ValueError, match="option must be one of"):
        AlphaExplorer(zg, zh, y, rows, option="nope")
    with pytest.raises(ValueError, match="class_names"):
        AlphaExplorer(zg, zh, y, rows, class_names=["a"])


def test_cached_logits_and_confusion():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(7, 1, 2, 2)
    z = cached_logits(model, x, batch_size=3)
    torch.testing.assert_close(z, model(x).detach())
    cm = confusion_matrix(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 2, 2, 1]), 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])


# ---- curves ----------------------------------------------------------------------------------
def test_area_is_the_mean_attacked_accuracy_over_the_clean_range():
    clean = [0.9, 0.6, 0.8, 0.7]            # unsorted on purpose
    attacked = [0.1, 0.4, 0.2, 0.3]         # the line a = 1 - c
    assert curves.area(clean, attacked) == pytest.approx(0.25)
    assert curves.area(clean, attacked, 0.65, 0.85) == pytest.approx(0.25)
    assert curves.area([0.5, 0.9], [0.2, 0.2]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="non-empty part"):
        curves.area(clean, attacked, 0.5, 0.8)
    with pytest.raises(ValueError, match="same length"):
        curves.area([0.5], [0.1])


def test_by_option_common_range_interpolate_bracket():
    rows = [{"option": "b", "alpha": a, "clean": 0.9 - 0.2 * a, "attacked": 0.2 + 0.5 * a} for a in (1.0, 0.0, 0.5)]
    rows += [{"option": "a", "alpha": a, "clean": 0.85 - 0.1 * a, "attacked": 0.3} for a in (0.0, 1.0)]
    c = curves.by_option(rows)
    assert list(c) == ["b", "a"] and list(c["b"]["alpha"]) == [0.0, 0.5, 1.0]
    assert curves.common_range(c) == pytest.approx((0.75, 0.85))
    assert curves.interpolate(c["b"]["alpha"], c["b"]["attacked"], 0.25) == pytest.approx(0.325)
    assert curves.bracket(c["b"]["alpha"], 0.5) == (0.5, 0.5)
    assert curves.bracket(c["b"]["alpha"], 0.7) == (0.5, 1.0)
    with pytest.raises(ValueError, match="grid's range"):
        curves.interpolate([0.2, 0.5], [1, 2], 0.1)
    with pytest.raises(ValueError, match="ascending"):
        curves.interpolate([0.5, 0.2], [1, 2], 0.3)
    with pytest.raises(ValueError, match="share no clean-accuracy"):
        curves.common_range({"x": {"clean": np.array([0.1, 0.2])}, "y": {"clean": np.array([0.3, 0.4])}})
