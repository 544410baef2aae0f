"""Delta-to-cumulative rules, the worked example of gateway.processors.delta step by step."""

from __future__ import annotations

from gateway.processors.delta import Outcome, accumulate


def test_worked_example() -> None:
    outcome, start = accumulate(0, 0, 0, 10)
    assert (outcome, start) == (Outcome.STARTED, 0)
    assert accumulate(0, 10, 10, 20) == (Outcome.ADDED, 0)
    assert accumulate(0, 20, 15, 18) == (Outcome.OUT_OF_ORDER, 0)
    assert accumulate(0, 20, 30, 40) == (Outcome.RESET, 30)


def test_duplicate_end_time_is_out_of_order() -> None:
    assert accumulate(0, 20, 10, 20)[0] is Outcome.OUT_OF_ORDER


def test_point_starting_before_the_stream_is_too_old() -> None:
    assert accumulate(100, 110, 50, 120)[0] is Outcome.TOO_OLD


def test_missing_start_time_continues_the_stream() -> None:
    assert accumulate(5, 10, 0, 20) == (Outcome.ADDED, 5)
