"""CircuitBreaker: every transition, both trip conditions, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from gateway.health.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from gateway.health.config import BreakerConfig
from tests.support.fakes import FakeClock

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def make(**overrides: object) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str, str]]]:
    settings: dict[str, object] = {
        "failure_threshold": 3,
        "failure_rate_threshold": None,
        "window_size": 10,
        "minimum_calls": 5,
        "cooldown_seconds": 30.0,
        "half_open_trials": 1,
    }
    settings.update(overrides)
    clock = FakeClock()
    seen: list[tuple[str, str, str]] = []
    breaker = CircuitBreaker(
        "postgresql",
        BreakerConfig.model_validate(settings),
        clock=clock,
        listeners=(lambda name, old, new: seen.append((name, old.value, new.value)),),
    )
    return breaker, clock, seen


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_success()


def test_consecutive_failures_open_and_a_success_resets_the_streak() -> None:
    breaker, _, seen = make(failure_threshold=3)
    fail(breaker, 2)
    succeed(breaker)
    fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.consecutive_failures == 2
    fail(breaker)
    assert breaker.state is OPEN
    assert seen == [("postgresql", "closed", "open")]


def test_open_refuses_until_cooldown_then_half_open() -> None:
    breaker, clock, seen = make(cooldown_seconds=30)
    fail(breaker, 3)
    assert not breaker.allow()
    clock.advance(29.9)
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.state is HALF
    assert breaker.retry_in() == 0.0
    assert seen[-1] == ("postgresql", "open", "half_open")


def test_half_open_success_closes() -> None:
    breaker, clock, seen = make()
    fail(breaker, 3)
    clock.advance(30)
    succeed(breaker)
    assert breaker.state is CLOSED
    assert [(o, n) for _, o, n in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    # Closed again with a clean slate: it takes the full threshold to open once more.
    fail(breaker, 2)
    assert breaker.state is CLOSED


def test_half_open_failure_reopens_and_restarts_the_cooldown() -> None:
    breaker, clock, seen = make(cooldown_seconds=10)
    fail(breaker, 3)
    clock.advance(10)
    fail(breaker)
    assert breaker.state is OPEN
    assert [(o, n) for _, o, n in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
    ]
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_half_open_lets_exactly_k_trials_through_and_needs_all_to_succeed() -> None:
    breaker, clock, seen = make(half_open_trials=3)
    fail(breaker, 3)
    clock.advance(30)
    assert [breaker.allow() for _ in range(4)] == [True, True, True, False]
    breaker.record_success()
    breaker.record_success()
    assert breaker.state is HALF
    breaker.record_success()
    assert breaker.state is CLOSED
    assert seen[-1][1:] == ("half_open", "closed")


def test_failure_rate_over_the_window_opens_without_a_streak() -> None:
    breaker, _, seen = make(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=6, minimum_calls=4
    )
    # F T F: 2 failures of 3, but fewer than minimum_calls -> stays closed
    fail(breaker)
    succeed(breaker)
    fail(breaker)
    assert breaker.failure_rate() is None
    assert breaker.state is CLOSED
    succeed(breaker)  # F T F T: 0.5 but the last call succeeded; the rate is checked on failure
    assert breaker.failure_rate() == 0.5
    assert breaker.state is CLOSED
    fail(breaker)  # F T F T F: 3/5 = 0.6 >= 0.5
    assert breaker.state is OPEN
    assert seen == [("postgresql", "closed", "open")]


def test_sliding_window_forgets_old_failures() -> None:
    breaker, _, _ = make(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=4, minimum_calls=4
    )
    fail(breaker)
    succeed(breaker, 3)  # [F T T T]
    succeed(breaker)  # [T T T T]: the failure fell out
    fail(breaker)  # [T T T F] = 0.25
    assert breaker.state is CLOSED
    fail(breaker)  # [T T F F] = 0.5 -> open
    assert breaker.state is OPEN


def test_late_results_while_open_change_nothing() -> None:
    breaker, clock, seen = make(cooldown_seconds=10)
    fail(breaker, 3)
    clock.advance(5)
    breaker.record_failure()  # a call allowed before the breaker opened, failing late
    breaker.record_success()
    assert breaker.state is OPEN
    clock.advance(5)  # the late failure did not extend the cooldown
    assert breaker.state is HALF
    assert len(seen) == 2


def test_a_broken_listener_does_not_change_behaviour() -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    breaker = CircuitBreaker(
        "redis", BreakerConfig(failure_threshold=1), clock=FakeClock(), listeners=(broken,)
    )
    breaker.record_failure()
    assert breaker.state is OPEN


def test_call_counts_exceptions_and_refuses_when_open() -> None:
    breaker, clock, _ = make(failure_threshold=2, cooldown_seconds=5)

    async def boom() -> int:
        raise ConnectionError("refused")

    async def ok() -> int:
        return 7

    async def scenario() -> None:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await breaker.call(boom)
        with pytest.raises(CircuitOpenError, match=r"open; next trial in 5\.0s"):
            await breaker.call(ok)
        clock.advance(5)
        assert await breaker.call(ok) == 7
        assert breaker.state is CLOSED

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"failure_threshold": None, "failure_rate_threshold": None}, "could never open"),
        ({"minimum_calls": 20, "window_size": 10}, "minimum_calls"),
        ({"cooldown_seconds": 0}, "greater than 0"),
        ({"half_open_trials": 0}, "greater than or equal to 1"),
    ],
)
def test_config_rejects_nonsense(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerConfig.model_validate(settings)


def test_a_cancelled_call_is_no_failure_and_frees_its_trial() -> None:
    breaker, clock, _ = make(failure_threshold=1, cooldown_seconds=5)

    async def hang() -> int:
        await asyncio.sleep(10)
        return 0

    async def scenario() -> None:
        # closed: the caller going away does not count against the dependency
        task = asyncio.create_task(breaker.call(hang))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state is CLOSED
        fail(breaker)
        clock.advance(5)
        # half_open: the only trial is cancelled, so the next call may take it
        task = asyncio.create_task(breaker.call(hang))
        await asyncio.sleep(0)
        assert not breaker.allow()  # the trial is taken while the call runs
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state is HALF
        succeed(breaker)
        assert breaker.state is CLOSED

    asyncio.run(scenario())
