"""build_registry: which checks a HealthConfig gives."""

from __future__ import annotations

import asyncio

from gateway.health import PipelineCounters, build_registry
from gateway.health.config import HealthConfig
from gateway.health.model import Status
from tests.support.fakes import ListConsumer
from tests.support.points import points


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
    assert registry.check("postgresql").required and registry.check("redis").required
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
