"""build_registry: which checks a HealthConfig gives."""

from __future__ import annotations

import asyncio

from gateway.config import load
from gateway.health import PipelineCounters, build_registry
from gateway.health.config import HealthConfig
from gateway.health.model import Status
from tests.support.fakes import ListConsumer
from tests.support.points import points
from tests.support.servers import free_port


class Forwarder:
    def last_success_unix(self) -> float | None:
        return None

    def queue_fill_ratio(self) -> float:
        return 0.0


def test_gateway_defaults_system_only_then_pipeline_and_upstream_when_given() -> None:
    assert list(build_registry(HealthConfig()).checks) == ["system"]
    counters = PipelineCounters(lambda: 0, lambda: 0)
    registry = build_registry(HealthConfig(), pipeline=counters, upstream=Forwarder())
    assert list(registry.checks) == ["otlp_upstream", "pipeline", "system"]
    assert registry.check("otlp_upstream").breaker is not None
    assert registry.check("pipeline").breaker is None
    assert not any(c.required for c in registry.checks.values())


def test_opt_in_databases_and_switches() -> None:
    cfg = HealthConfig.model_validate(
        {
            "postgres": {"dsn": "postgresql://postgres@127.0.0.1:5432/test"},
            "redis": {"url": "redis://127.0.0.1:6379/0", "required": True},
            "upstream": {"enabled": False},
            "system": {"enabled": False},
            "service_id": "gw",
        }
    )
    registry = build_registry(cfg, version="9", upstream=Forwarder())
    assert list(registry.checks) == ["postgresql", "redis"]
    # PostgreSQL: informational unless configured required (issue 19, item 5)
    assert not registry.check("postgresql").required and registry.check("redis").required
    assert (registry.service_id, registry.version) == ("gw", "9")


def test_metrics_go_to_the_consumer_under_the_namespace() -> None:
    sink = ListConsumer()
    counters = PipelineCounters(lambda: 10, lambda: 0)
    registry = build_registry(
        HealthConfig.model_validate({"system": {"enabled": False}}),
        consumer=sink,
        namespace="acme",
        pipeline=counters,
    )
    result = asyncio.run(registry.run_once("pipeline"))
    assert result.status is Status.PASS
    names = {p.name for b in sink.batches for p in points(b)}
    assert names == {"acme.health.check.status", "acme.health.check.duration"}


def test_a_dead_application_database_leaves_the_gateway_ready() -> None:
    """Issue 19, item 5: `health.postgres.required` defaulted to true, so an outage of the
    applications' database took the telemetry gateway out of rotation. A real asyncpg check
    against a port nothing listens on."""
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    cfg = load({"health": {"postgres": {"dsn": dead, "timeout_seconds": 2}}}).health
    registry = build_registry(cfg)
    registry.set_accepting(True)

    async def scenario() -> None:
        for _ in range(3):  # the breaker opens after 3 failures: the check then says fail
            result = await registry.run_once("postgresql")
        assert result.status is Status.FAIL
        assert registry.readiness().ready
        assert registry.status() is Status.WARN
        await registry.shutdown()

    asyncio.run(scenario())
    required = load({"health": {"postgres": {"dsn": dead, "required": True}}}).health
    assert build_registry(required).check("postgresql").required
