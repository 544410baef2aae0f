from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.observers.adaptive import IntervalController, interpolate
from gateway.observers.config import DEFAULT_CURVE


def controller(**kw: object) -> IntervalController:
    args: dict[str, object] = {
        "curve": DEFAULT_CURVE,
        "min_seconds": 5.0,
        "max_seconds": 30.0,
        "budget": 0.005,
        "initial_seconds": 10.0,
        "window": 6,
    }
    args.update(kw)
    return IntervalController(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "want"),
    [(-1.0, 30.0), (0.05, 30.0), (0.15, 20.0), (0.25, 10.0), (0.5, 10.0), (0.85, 7.5), (9, 5.0)],
)
def test_interpolate_default_curve(x: float, want: float) -> None:
    assert interpolate(DEFAULT_CURVE, x) == pytest.approx(want)


def test_single_point_curve_is_flat() -> None:
    assert interpolate(((1.0, 7.0),), -5) == 7.0 == interpolate(((1.0, 7.0),), 5)


def test_load_moves_the_interval_from_30_to_5_and_back() -> None:
    c = controller()
    seen = [
        c.observe(signal=s, cycle_cpu_seconds=0.0005, wall_seconds=c.interval)
        for s in (0.0, 0.25, 1.0, 2.0, 0.25, 0.0)
    ]
    assert seen == [30.0, 10.0, 5.0, 5.0, 10.0, 30.0]


def test_budget_wins_over_load_and_bounds_win_over_budget() -> None:
    c = controller(window=1)
    assert c.observe(signal=2.0, cycle_cpu_seconds=0.05, wall_seconds=5) == pytest.approx(10.0)
    assert c.observe(signal=2.0, cycle_cpu_seconds=1.0, wall_seconds=10) == 30.0
    assert c.overhead == pytest.approx(0.1)  # 1 s of CPU over the 10 s since the last cycle
    assert c.observe(signal=2.0, cycle_cpu_seconds=0.0001, wall_seconds=30) == 5.0


def test_overhead_and_cost_are_means_over_the_window() -> None:
    c = controller(window=2)
    c.observe(signal=0.5, cycle_cpu_seconds=0.001, wall_seconds=10)
    c.observe(signal=0.5, cycle_cpu_seconds=0.003, wall_seconds=10)
    assert c.cycle_cpu == pytest.approx(0.002)
    assert c.overhead == pytest.approx(0.004 / 20)
    c.observe(signal=0.5, cycle_cpu_seconds=0.005, wall_seconds=30)  # the first drops out
    assert c.cycle_cpu == pytest.approx(0.004)
    assert c.overhead == pytest.approx(0.008 / 40)


def test_unknown_signal_keeps_the_load_part() -> None:
    c = controller()
    c.observe(signal=1.0, cycle_cpu_seconds=0.0, wall_seconds=10)
    assert c.observe(signal=None, cycle_cpu_seconds=0.0, wall_seconds=5) == 5.0


def test_not_adaptive_keeps_the_initial_interval() -> None:
    c = controller(adaptive=False, initial_seconds=12.0)
    assert c.observe(signal=5.0, cycle_cpu_seconds=10.0, wall_seconds=1) == 12.0
    assert c.overhead == pytest.approx(10.0)  # still measured and reported


@pytest.mark.parametrize(
    "kw",
    [
        {"min_seconds": 0.0},
        {"min_seconds": 11.0},
        {"max_seconds": 9.0},
        {"budget": 0.0},
        {"window": 0},
    ],
)
def test_bad_settings_fail_at_construction(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        controller(**kw)


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(min_value=-10, max_value=1e6)),
            st.floats(min_value=-1.0, max_value=1e4),
            st.floats(min_value=0.0, max_value=1e5),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_interval_never_leaves_the_bounds(cycles: list[tuple[float | None, float, float]]) -> None:
    c = controller()
    for signal, cost, wall in cycles:
        interval = c.observe(signal=signal, cycle_cpu_seconds=cost, wall_seconds=wall)
        assert 5.0 <= interval <= 30.0
        assert c.overhead >= 0.0
