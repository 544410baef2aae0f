"""HealthMetrics: a real HealthRegistry and CircuitBreaker, read back through the SDK's
InMemoryMetricReader, then through the gateway's default views (as OTLP, the way the exporter
sends it) next to the gateway's own PipelineHealthMetrics."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from demo.health_metrics import HealthMetrics
from gateway.catalogue import by_name
from gateway.health.breaker import CircuitBreaker
from gateway.health.config import BreakerConfig
from gateway.health.metrics import PipelineHealthMetrics
from gateway.health.model import Check, Status
from gateway.health.registry import HealthRegistry
from gateway.pipeline.batch import MetricsBatch
from gateway.processors.defaults import default_views
from gateway.processors.views import ViewProcessor
from instrumentation import Instrumentation, InstrumentationSettings, setup
from tests.support.fakes import FakeClock, ListConsumer
from tests.support.instrumentation import collect, value_of

STATUS = by_name("health.check.status").otel_name()
DURATION = by_name("health.check.duration").otel_name()
STATE = by_name("circuit_breaker.state").otel_name()
TRANSITIONS = by_name("circuit_breaker.transitions").otel_name()
NAMES = {STATUS, DURATION, STATE, TRANSITIONS}


class Switch:
    """A check whose outcome the test sets."""

    def __init__(self) -> None:
        self.outcome: Status | Exception = Status.PASS

    async def __call__(self) -> Status:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def states(points: dict[str, list[tuple[dict[str, Any], Any]]], component: str) -> dict[str, float]:
    return {a["state"]: p.value for a, p in points.get(STATE, []) if a["component"] == component}


def transitions(points: dict[str, list[tuple[dict[str, Any], Any]]]) -> dict[tuple[str, str], int]:
    return {(a["from"], a["to"]): p.value for a, p in points.get(TRANSITIONS, [])}


def registry_with(
    handle: Instrumentation, clock: FakeClock
) -> tuple[HealthRegistry, Switch, Switch]:
    registry = HealthRegistry(clock=clock)
    registry.add_listener(HealthMetrics(handle.meter_provider, namespace="coderunner"))
    db, hub = Switch(), Switch()
    breaker = CircuitBreaker(
        "postgresql",
        BreakerConfig(failure_threshold=2, failure_rate_threshold=None, cooldown_seconds=30),
        clock=clock,
    )
    registry.add(Check("postgresql", db, breaker=breaker))
    registry.add(Check("websocket", hub))
    return registry, db, hub


def test_results_and_every_breaker_transition_are_recorded(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    clock = FakeClock(0.0)
    registry, db, hub = registry_with(handle, clock)

    async def run(*names: str) -> None:
        for name in names:
            await registry.run_once(name)

    asyncio.run(run("postgresql", "websocket"))
    points, metrics = collect(reader)
    assert value_of(points, STATUS, component="postgresql").value == 1.0
    assert value_of(points, STATUS, component="websocket").value == 1.0
    assert value_of(points, DURATION, component="postgresql").value >= 0.0
    assert metrics[DURATION].unit == "s"
    assert states(points, "postgresql") == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    assert states(points, "websocket") == {}  # no breaker, no state series
    # Every edge exists from the start, at 0, so a rate() sees the first transition.
    assert transitions(points) == {
        ("closed", "open"): 0,
        ("open", "half_open"): 0,
        ("half_open", "closed"): 0,
        ("half_open", "open"): 0,
    }
    assert metrics[TRANSITIONS].data.is_monotonic

    hub.outcome = Status.WARN
    db.outcome = ConnectionRefusedError("refused")
    asyncio.run(run("postgresql", "websocket"))  # first failure: breaker still closed -> warn
    points, _ = collect(reader)
    assert value_of(points, STATUS, component="postgresql").value == 0.5
    assert value_of(points, STATUS, component="websocket").value == 0.5
    asyncio.run(run("postgresql"))  # second failure trips it
    points, _ = collect(reader)
    assert value_of(points, STATUS, component="postgresql").value == 0.0
    assert states(points, "postgresql") == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
    assert transitions(points)[("closed", "open")] == 1

    db.outcome = Status.PASS
    clock.now = 31.0  # cooldown over: half-open, one trial passes, closed
    asyncio.run(run("postgresql"))
    points, _ = collect(reader)
    assert value_of(points, STATUS, component="postgresql").value == 1.0
    assert states(points, "postgresql") == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    assert transitions(points) == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
        ("half_open", "open"): 0,
    }


def test_names_and_labels_come_from_the_catalogue(reader: InMemoryMetricReader) -> None:
    handle = setup(InstrumentationSettings(export=False, set_global=False), readers=[reader])
    try:
        listener = HealthMetrics(handle.meter_provider, namespace="acme")
        breaker = CircuitBreaker("redis")
        registry = HealthRegistry(listeners=[listener])
        registry.add(Check("redis", Switch(), breaker=breaker))
        asyncio.run(registry.run_once("redis"))
        points, metrics = collect(reader)
    finally:
        handle.shutdown()
    for name in ("health.check.status", "health.check.duration", "circuit_breaker.state"):
        entry = by_name(name)
        assert entry.otel_name("acme") in metrics
        for attrs, _ in points[entry.otel_name("acme")]:
            assert tuple(sorted(attrs)) == tuple(sorted(entry.labels))
    entry = by_name("circuit_breaker.transitions")
    assert {tuple(sorted(a)) for a, _ in points[entry.otel_name("acme")]} == {
        tuple(sorted(entry.labels))
    }


def test_default_views_pass_the_names_through_and_drop_the_scope_like_the_gateway(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    """What the service exports and what the gateway's own health metrics produce end up with
    the same names, no scope (no otel_scope_* labels), and no view needed."""
    clock = FakeClock(0.0)
    registry, _, _ = registry_with(handle, clock)
    sink = ListConsumer()
    registry.add_listener(PipelineHealthMetrics(sink))
    asyncio.run(registry.run_once("postgresql"))
    data = reader.get_metrics_data()
    assert data is not None
    service = MetricsBatch(encode_metrics(data), source="http")
    gateway_own = sink.batches[-1]
    views = ViewProcessor(default_views())
    for batch in (service, gateway_own):
        views.process(batch)
        seen: dict[str, str] = {}
        for rm in batch.request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name in NAMES:
                        seen[m.name] = sm.scope.name
        assert set(seen) == NAMES, batch.source
        assert set(seen.values()) == {""}, f"{batch.source}: scope kept {seen}"
