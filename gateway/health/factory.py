"""`build_registry`: a `HealthRegistry` with the checks a `HealthConfig` asks for.

The gateway calls it from `app.py`; a service mounting the health module may call it too, or
build a `HealthRegistry` and `add()` its own checks.
"""

from __future__ import annotations

from gateway.catalogue import DEFAULT_NAMESPACE
from gateway.health.checks.pipeline import PipelineStats, pipeline_check
from gateway.health.checks.postgres import postgres_check
from gateway.health.checks.redis import redis_check
from gateway.health.checks.system import SystemSampler, system_check
from gateway.health.checks.upstream import UpstreamStatus, upstream_check
from gateway.health.config import HealthConfig
from gateway.health.metrics import PipelineHealthMetrics
from gateway.health.registry import HealthRegistry
from gateway.pipeline import Consumer
from gateway.pipeline.builder import Attributes

__all__ = ["build_registry"]


def build_registry(
    config: HealthConfig,
    *,
    version: str = "",
    consumer: Consumer | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    resource: Attributes | None = None,
    pipeline: PipelineStats | None = None,
    upstream: UpstreamStatus | None = None,
    system_sampler: SystemSampler | None = None,
) -> HealthRegistry:
    """Checks: PostgreSQL and Redis when configured; the pipeline when `pipeline` is given;
    the upstream when `upstream` is given (pass it only when forwarding is on); the system
    thresholds. Metrics go to `consumer` when given."""
    registry = HealthRegistry(
        service_id=config.service_id,
        version=version,
        description=config.description,
        live_stall_seconds=config.live_stall_seconds,
    )
    if consumer is not None:
        registry.add_listener(
            PipelineHealthMetrics(consumer, namespace=namespace, resource=resource)
        )
    if config.postgres is not None:
        registry.add(postgres_check(config.postgres))
    if config.redis is not None:
        registry.add(redis_check(config.redis))
    if upstream is not None and config.upstream.enabled:
        registry.add(upstream_check(config.upstream, upstream))
    if pipeline is not None and config.pipeline.enabled:
        registry.add(pipeline_check(config.pipeline, pipeline))
    if config.system.enabled:
        registry.add(system_check(config.system, sampler=system_sampler))
    return registry
