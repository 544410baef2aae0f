"""HealthRegistry: results, timeouts, the background schedule, readiness, breakers, metrics."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.health.breaker import BreakerState, CircuitBreaker
from gateway.health.config import BreakerConfig
from gateway.health.metrics import PipelineHealthMetrics
from gateway.health.model import Check, CheckOutcome, Observation, Status
from gateway.health.registry import HealthRegistry
from tests.support.fakes import FakeClock, ListConsumer
from tests.support.points import breaker_states, points


def const(value: object):  # type: ignore[no-untyped-def]
    async def fn() -> object:
        return value

    return fn


async def boom() -> None:
    raise ConnectionRefusedError("connection refused")


def test_results_from_every_kind_of_return() -> None:
    async def scenario() -> None:
        registry = HealthRegistry()
        registry.add(Check("a", const(None)))
        registry.add(Check("b", const(Status.WARN)))
        registry.add(Check("c", const(CheckOutcome.of(Observation("x", 1, "ms")))))
        registry.add(Check("d", boom))
        registry.add(Check("e", const(42)))
        got = {n: (await registry.run_once(n)) for n in "abcde"}
        assert got["a"].status is Status.PASS
        assert got["b"].status is Status.WARN
        assert got["c"].status is Status.PASS
        assert got["c"].observations == (Observation("x", 1, "ms"),)
        assert got["d"].status is Status.FAIL
        assert got["d"].output == "ConnectionRefusedError: connection refused"
        assert got["e"].status is Status.FAIL
        assert "returned int" in got["e"].output
        assert all(r.ran and r.time_unix > 0 for r in got.values())

    asyncio.run(scenario())


def test_a_slow_check_fails_at_its_timeout_and_nobody_waits_for_it() -> None:
    async def scenario() -> None:
        stuck_cleanup = asyncio.Event()

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            finally:
                # cleanup that itself is slow, as a cancelled query on a slow link
                await asyncio.shield(asyncio.sleep(0.3))
                stuck_cleanup.set()

        registry = HealthRegistry()
        registry.add(Check("slow", slow, timeout=0.1))
        started = time.perf_counter()
        result = await registry.run_once("slow")
        elapsed = time.perf_counter() - started
        assert result.status is Status.FAIL
        assert result.output == "timed out after 0.1s"
        assert elapsed < 0.25, "the run waited for the cancelled check's cleanup"
        assert not stuck_cleanup.is_set()
        await registry.shutdown()

    asyncio.run(scenario())


def test_background_schedule_runs_every_interval_and_stops_on_shutdown() -> None:
    async def scenario() -> None:
        calls = 0

        async def counting() -> None:
            nonlocal calls
            calls += 1

        registry = HealthRegistry()
        registry.add(Check("count", counting, interval=0.05))
        await registry.start()
        await asyncio.sleep(0.32)
        assert 4 <= calls <= 8
        await registry.shutdown()
        after = calls
        await asyncio.sleep(0.15)
        assert calls == after
        await registry.shutdown()  # twice is fine

    asyncio.run(scenario())


def test_a_check_added_after_start_is_scheduled() -> None:
    async def scenario() -> None:
        registry = HealthRegistry()
        await registry.start()
        registry.add(Check("late", const(None), interval=10))
        await asyncio.sleep(0.05)
        assert registry.results()["late"].ran
        await registry.shutdown()

    asyncio.run(scenario())


def test_readiness_needs_accepting_and_every_required_check() -> None:
    async def scenario() -> None:
        state = {"db": Status.PASS, "cache": Status.PASS}

        def dyn(name: str):  # type: ignore[no-untyped-def]
            async def fn() -> Status:
                return state[name]

            return fn

        registry = HealthRegistry()
        registry.add(Check("db", dyn("db"), required=True))
        registry.add(Check("cache", dyn("cache"), required=False))
        r = registry.readiness()
        assert (r.ready, r.accepting, r.failing) == (False, False, ("db",))
        assert registry.status() is Status.WARN  # nothing has run yet
        registry.set_accepting(True)
        assert registry.readiness().failing == ("db",)  # not run yet: not ready
        await registry.run_once("db")
        await registry.run_once("cache")
        assert registry.readiness().ready
        assert registry.status() is Status.PASS

        state["cache"] = Status.FAIL  # optional failing: degraded, still ready
        await registry.run_once("cache")
        assert registry.readiness().ready
        assert registry.status() is Status.WARN

        state["db"] = Status.WARN  # required but warn: still ready
        await registry.run_once("db")
        assert registry.readiness().ready

        state["db"] = Status.FAIL
        await registry.run_once("db")
        assert registry.readiness().failing == ("db",)
        assert registry.status() is Status.FAIL

        state["db"] = Status.PASS
        await registry.run_once("db")
        registry.set_accepting(False)  # graceful shutdown begins
        assert not registry.readiness().ready

    asyncio.run(scenario())


def test_breaker_shapes_status_and_stops_calling_the_dependency() -> None:
    async def scenario() -> None:
        clock = FakeClock(0.0)
        up = {"value": False}
        calls = 0

        async def dependency() -> None:
            nonlocal calls
            calls += 1
            if not up["value"]:
                raise ConnectionResetError("reset by peer")

        breaker = CircuitBreaker(
            "postgresql",
            BreakerConfig(failure_threshold=2, cooldown_seconds=5),
            clock=clock,
        )
        sink = ListConsumer()
        registry = HealthRegistry(listeners=[PipelineHealthMetrics(sink, namespace="ns")])
        registry.add(Check("postgresql", dependency, required=True, breaker=breaker))

        first = await registry.run_once("postgresql")
        assert first.status is Status.WARN  # one failure: below the trip threshold
        assert "still closed" in first.output
        second = await registry.run_once("postgresql")
        assert second.status is Status.FAIL
        assert second.breaker_state is BreakerState.OPEN
        third = await registry.run_once("postgresql")
        assert calls == 2, "an open breaker must not call the dependency"
        assert third.status is Status.FAIL
        assert "circuit breaker open" in third.output
        assert "reset by peer" in third.output
        fourth_refused = await registry.run_once("postgresql")
        assert fourth_refused.output.count("circuit breaker") == 1  # no nesting of reasons
        assert fourth_refused.output.endswith("last error: ConnectionResetError: reset by peer")

        up["value"] = True
        clock.now += 5
        fourth = await registry.run_once("postgresql")
        assert calls == 3
        assert fourth.status is Status.PASS
        assert fourth.breaker_state is BreakerState.CLOSED

        assert breaker_states(sink.batches, "postgresql") == [
            "closed",
            "open",
            "half_open",
            "closed",
        ]
        statuses = [
            p.value for b in sink.batches for p in points(b) if p.name == "ns.health.check.status"
        ]
        assert statuses == [0.5, 0.0, 0.0, 0.0, 1.0]
        last_counts = {
            (p.attributes["from"], p.attributes["to"]): p.value
            for p in points(sink.batches[-1])
            if p.name == "ns.circuit_breaker.transitions"
        }
        assert last_counts == {
            ("closed", "open"): 1.0,
            ("open", "half_open"): 1.0,
            ("half_open", "closed"): 1.0,
            ("half_open", "open"): 0.0,
        }

    asyncio.run(scenario())


def test_open_breaker_wakes_the_check_at_the_end_of_the_cooldown() -> None:
    async def scenario() -> None:
        calls: list[float] = []

        async def failing() -> None:
            calls.append(time.monotonic())
            raise OSError("down")

        breaker = CircuitBreaker("redis", BreakerConfig(failure_threshold=1, cooldown_seconds=0.2))
        registry = HealthRegistry()
        registry.add(Check("redis", failing, interval=30, breaker=breaker))
        await registry.start()
        await asyncio.sleep(0.35)
        await registry.shutdown()
        # run at 0 opens the breaker; the interval is 30 s, yet the trial comes after 0.2 s
        assert len(calls) == 2
        assert 0.18 <= calls[1] - calls[0] <= 0.3

    asyncio.run(scenario())


def test_metrics_per_result_with_catalogue_names_and_units() -> None:
    async def scenario() -> None:
        sink = ListConsumer()
        registry = HealthRegistry(
            listeners=[PipelineHealthMetrics(sink, resource={"service.name": "demo"})]
        )
        registry.add(Check("system", const(Status.WARN)))
        await registry.run_once("system")
        (batch,) = sink.batches
        assert batch.source == "health"
        rm = batch.request.resource_metrics[0]
        assert rm.resource.attributes[0].value.string_value == "demo"
        metrics = {m.name: m for m in rm.scope_metrics[0].metrics}
        assert set(metrics) == {
            "coderunner.health.check.status",
            "coderunner.health.check.duration",
        }
        assert metrics["coderunner.health.check.duration"].unit == "s"
        (status,) = points(batch)[:1]
        assert (status.attributes, status.value) == ({"component": "system"}, 0.5)

    asyncio.run(scenario())


def test_a_refusing_pipeline_does_not_stop_the_checks() -> None:
    class Refusing:
        def consume(self, batch: object) -> None:
            raise RuntimeError("memory pressure")

    async def scenario() -> None:
        registry = HealthRegistry(listeners=[PipelineHealthMetrics(Refusing())])
        registry.add(Check("a", const(None)))
        assert (await registry.run_once("a")).status is Status.PASS

    asyncio.run(scenario())


def test_liveness_follows_the_event_loop_heartbeat() -> None:
    async def scenario() -> None:
        registry = HealthRegistry(live_stall_seconds=0.2)
        assert registry.liveness().alive  # not started: the process answers, that is all
        await registry.start()
        await asyncio.sleep(0.01)
        assert registry.liveness().alive
        time.sleep(0.3)  # block the event loop
        stalled = registry.liveness()
        assert not stalled.alive
        assert stalled.heartbeat_age_seconds >= 0.3
        await asyncio.sleep(0.6)  # the heartbeat catches up
        state = registry.liveness()
        assert state.alive
        await registry.shutdown()

    asyncio.run(scenario())


def test_names_are_unique_and_valid() -> None:
    registry = HealthRegistry()
    registry.add(Check("a", const(None)))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(Check("a", const(None)))
    with pytest.raises(ValueError, match="without ':'"):
        Check("a:b", const(None))
    with pytest.raises(ValueError, match="positive"):
        Check("t", const(None), timeout=0)


def test_shutdown_without_start_and_closes_checks() -> None:
    async def scenario() -> None:
        closed: list[str] = []

        async def close() -> None:
            closed.append("x")

        registry = HealthRegistry()
        registry.add(Check("x", const(None), close=close))
        await registry.shutdown()
        assert closed == []  # never started, nothing to free
        await registry.start()
        await registry.shutdown()
        await registry.shutdown()
        assert closed == ["x"]

    asyncio.run(scenario())


def test_a_check_object_with_an_async_close_is_closed_at_shutdown() -> None:
    class Probe:
        closed = False

        async def __call__(self) -> None:
            return None

        async def close(self) -> None:
            self.closed = True

    async def scenario() -> None:
        probe = Probe()
        registry = HealthRegistry()
        registry.add(Check("p", probe))
        await registry.start()
        await registry.shutdown()
        assert probe.closed

    asyncio.run(scenario())


def test_every_status_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 19, item 5: a health change had no log line; now one per change, and a
    "recovered" line, never one per run."""
    answers = iter([None, "fail", "fail", "fail", None, None, Status.WARN, None])

    async def flaky() -> object:
        answer = next(answers)
        if answer == "fail":
            raise ConnectionRefusedError("connection refused")
        return answer

    async def scenario() -> None:
        registry = HealthRegistry()
        registry.add(Check("postgresql", flaky, required=True))
        registry.add(Check("redis", boom))
        for _ in range(8):
            await registry.run_once("postgresql")
        await registry.run_once("redis")
        await registry.run_once("redis")

    with caplog.at_level("INFO", logger="gateway.health.registry"):
        asyncio.run(scenario())
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        (
            "WARNING",
            "health: postgresql fail (required: /ready and /health now answer 503): "
            "ConnectionRefusedError: connection refused",
        ),
        ("INFO", "health: postgresql recovered (was fail)"),
        ("INFO", "health: postgresql warn (readiness unaffected): no detail"),
        ("INFO", "health: postgresql recovered (was warn)"),
        (
            "WARNING",
            "health: redis fail (informational: readiness unaffected): "
            "ConnectionRefusedError: connection refused",
        ),
    ]


def test_a_change_without_output_is_described_by_its_observations(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hot = Observation("cpuUtilization", 97.5, "percent", Status.FAIL, "97.5% >= 95%")
    calm = Observation("memoryUtilization", 40.0, "percent", Status.PASS)

    async def scenario() -> None:
        registry = HealthRegistry()
        registry.add(Check("system", const(CheckOutcome(Status.FAIL, (hot, calm)))))
        await registry.run_once("system")

    with caplog.at_level("INFO", logger="gateway.health.registry"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == [
        "health: system fail (informational: readiness unaffected): cpuUtilization: 97.5% >= 95%"
    ]
