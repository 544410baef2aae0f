from __future__ import annotations

import pytest

from gateway.status.pipeline import WINDOW_SECONDS, PipelineReadings, quantile
from tests.support.fakes import FakeClock


@pytest.mark.parametrize(
    ("q", "counts", "expected"),
    [
        (0.5, [0, 10, 0], 1.5),  # all in (1, 2]: the middle of the bucket
        (0.5, [10, 0, 0], 0.5),  # the first bucket starts at 0
        (0.99, [0, 0, 10], 2.0),  # +Inf bucket: the highest finite bound
        (0.25, [5, 5, 0], 0.5),
        (0.75, [5, 5, 0], 1.5),
    ],
)
def test_quantile_interpolates_like_histogram_quantile(
    q: float, counts: list[int], expected: float
) -> None:
    assert quantile(q, [1.0, 2.0], counts) == pytest.approx(expected)


def test_quantile_of_an_empty_histogram_is_none() -> None:
    assert quantile(0.5, [1.0], [0, 0]) is None


def test_rates_need_a_second_reading_and_use_the_window() -> None:
    clock = FakeClock(100.0)
    r = PipelineReadings(clock=clock)
    base, now = r.add({"http": 10}, {})
    first = r.rates(base, now)
    assert first["points_in"]["per_second"] is None and first["window_seconds"] is None
    clock.now += 2
    base, now = r.add({"http": 30, "grpc": 4}, {})
    second = r.rates(base, now)
    assert second["points_in"]["per_second"] == pytest.approx(12.0)
    assert second["points_in"]["by_transport"]["grpc"]["per_second"] == pytest.approx(2.0)
    # Readings older than the window are forgotten: the rate is over the last window only.
    clock.now += WINDOW_SECONDS + 1
    r.add({"http": 30, "grpc": 4}, {})
    clock.now += 1
    base, now = r.add({"http": 40, "grpc": 4}, {})
    assert r.rates(base, now)["points_in"]["per_second"] == pytest.approx(10.0)


def test_recent_latency_is_the_difference_between_readings() -> None:
    clock = FakeClock(100.0)
    r = PipelineReadings(clock=clock)
    bounds = (0.1, 1.0)
    r.add({}, {"http": (bounds, [10, 0, 0], 0.5)})
    clock.now += 1
    base, now = r.add({}, {"http": (bounds, [10, 4, 0], 2.5)})
    latency = r.rates(base, now)["latency"]["http"]
    assert latency["since_start"]["requests"] == 14
    recent = latency["recent"]
    assert recent["requests"] == 4
    assert recent["mean_seconds"] == pytest.approx(0.5)
    assert 0.1 < recent["p50_seconds"] <= 1.0
