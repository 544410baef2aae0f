"""The built-in checks; each module has a callable check class and a `*_check(config)` factory.

Component names (the `component` label of the health metrics; alert rules use them):
"postgresql", "redis", "otlp_upstream", "pipeline", "system".
"""

from gateway.health.checks.pipeline import PipelineCounters, PipelineStats, pipeline_check
from gateway.health.checks.postgres import postgres_check
from gateway.health.checks.redis import redis_check
from gateway.health.checks.system import system_check
from gateway.health.checks.upstream import UpstreamStatus, upstream_check

__all__ = [
    "PipelineCounters",
    "PipelineStats",
    "UpstreamStatus",
    "pipeline_check",
    "postgres_check",
    "redis_check",
    "system_check",
    "upstream_check",
]
