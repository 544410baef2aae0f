"""Health: /live, /ready, /health, /api/health and a circuit breaker per dependency.

One module for the gateway and for any FastAPI service (the demo mounts it through
`instrumentation`). It depends only on `gateway.pipeline` and `gateway.catalogue` (for the
optional metrics).

    registry = HealthRegistry(service_id="deploy-api", version="1.2.0")
    registry.add(Check("postgresql", ping, timeout=2, interval=30, required=True,
                       breaker=CircuitBreaker("postgresql")))
    app.include_router(health_router(registry, details="always"))
    # lifespan: await registry.start(); registry.set_accepting(True) ... on the way down:
    # registry.set_accepting(False); await registry.shutdown()

Names are imported on first use, so `gateway.config` can import `gateway.health.config` without
loading FastAPI, asyncpg and redis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.health.breaker import BreakerState, CircuitBreaker, CircuitOpenError
    from gateway.health.checks import (
        PipelineCounters,
        PipelineStats,
        UpstreamStatus,
        pipeline_check,
        postgres_check,
        redis_check,
        system_check,
        upstream_check,
    )
    from gateway.health.config import BreakerConfig, DetailsPolicy, HealthConfig
    from gateway.health.factory import build_registry
    from gateway.health.http import HEALTH_JSON, health_router, render_health
    from gateway.health.metrics import PipelineHealthMetrics
    from gateway.health.model import Check, CheckOutcome, CheckResult, Observation, Status
    from gateway.health.registry import HealthListener, HealthRegistry

_WHERE = {
    "BreakerState": "breaker",
    "CircuitBreaker": "breaker",
    "CircuitOpenError": "breaker",
    "PipelineCounters": "checks",
    "PipelineStats": "checks",
    "UpstreamStatus": "checks",
    "pipeline_check": "checks",
    "postgres_check": "checks",
    "redis_check": "checks",
    "system_check": "checks",
    "upstream_check": "checks",
    "BreakerConfig": "config",
    "DetailsPolicy": "config",
    "HealthConfig": "config",
    "build_registry": "factory",
    "HEALTH_JSON": "http",
    "health_router": "http",
    "render_health": "http",
    "PipelineHealthMetrics": "metrics",
    "Check": "model",
    "CheckOutcome": "model",
    "CheckResult": "model",
    "Observation": "model",
    "Status": "model",
    "HealthListener": "registry",
    "HealthRegistry": "registry",
}

__all__ = [
    "HEALTH_JSON",
    "BreakerConfig",
    "BreakerState",
    "Check",
    "CheckOutcome",
    "CheckResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "DetailsPolicy",
    "HealthConfig",
    "HealthListener",
    "HealthRegistry",
    "Observation",
    "PipelineCounters",
    "PipelineHealthMetrics",
    "PipelineStats",
    "Status",
    "UpstreamStatus",
    "build_registry",
    "health_router",
    "pipeline_check",
    "postgres_check",
    "redis_check",
    "render_health",
    "system_check",
    "upstream_check",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.health' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gateway.health.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
