"""The one calibration routine (bisection on a monotone accuracy) and the grid search of Fig. SM1."""
import numpy as np
import pytest

from adasmooth.calibration import Calibration, bisect_to_accuracy, check_target, grid_to_accuracy


def staircase(n, decreasing=False):
    """Accuracy of a knob v in [0, 1] on n images: floor(v·n)/n (or 1 - that), a monotone step function."""
    return lambda v: (1 - np.floor(v * n) / n) if decreasing else np.floor(v * n) / n


@pytest.mark.parametrize("decreasing", [False, True])
def test_bisection_hits_a_reachable_target_either_way_round(decreasing):
    n = 200
    res = bisect_to_accuracy(staircase(n, decreasing), 0.0, 1.0, 0.37, 0.5 / n, n, 200, "knob", "0 .. 1")
    assert isinstance(res, Calibration) and res.within_tol and res.accuracy == pytest.approx(0.37)
    assert staircase(n, decreasing)(res.value) == res.accuracy and 0 < res.iterations < 60
    assert res.n == n and res.target == 0.37


def test_bisection_gives_the_closest_step_and_names_the_knob_when_out_of_reach(caplog):
    n = 10
    res = bisect_to_accuracy(staircase(n), 0.0, 1.0, 0.35, 1e-6, n, 200, "knob", "0 .. 1")
    assert not res.within_tol and res.accuracy in (0.3, 0.4)
    assert "closest achievable" in caplog.text
    with pytest.raises(ValueError, match=r"target_clean_acc=0\.9000 is out of reach: knob spans clean accuracies "
                                         r"\[0\.0000, 0\.5000\] \(v = 0 \.\. 0\.5\)"):
        bisect_to_accuracy(staircase(n), 0.0, 0.5, 0.9, 0.01, n, 200, "knob", "v = 0 .. 0.5")


def test_grid_search_takes_the_closest_point_and_the_largest_on_ties():
    grid = np.linspace(0, 1, 11)
    assert grid_to_accuracy(lambda a: 0.5, grid, 0.2) == (1.0, 0.5)       # all tie: the largest
    v, acc = grid_to_accuracy(lambda a: 1 - a, grid, 0.33)
    assert v == pytest.approx(0.7) and acc == pytest.approx(0.3)
    with pytest.raises(ValueError, match="target"):
        grid_to_accuracy(lambda a: a, grid, 1.5)


def test_targets_and_tolerances_are_checked():
    check_target(0.5, 0.0)
    with pytest.raises(ValueError, match=r"target_clean_acc must lie in \[0, 1\]"):
        check_target(1.2, 0.0)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        check_target(0.5, -1)
