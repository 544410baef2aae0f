"""Health settings: which checks run, how often, how their circuit breakers trip, who sees details.

YAML (the `health:` section of the gateway config; a service that mounts the health module can
build `HealthConfig` from its own settings the same way):

    health:
      details: when-authorized        # never | when-authorized | always
      token: "s3cret"                 # bearer token for details (GATEWAY_HEALTH__TOKEN)
      postgres: {dsn: "postgresql://postgres@127.0.0.1:5432/test"}   # GATEWAY_HEALTH__POSTGRES__DSN
      redis: {url: "redis://127.0.0.1:6379/0"}
      system: {cpu_warn: 80, cpu_fail: 95}

PostgreSQL and Redis checks are opt-in (absent: no check) and informational unless configured
`required: true`: the gateway itself needs neither, so by default only what the gateway needs
(accepting data; any check you mark required) decides /ready. The pipeline, system and upstream
checks are on by default (upstream only runs when the gateway forwards) and not required either.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BreakerConfig",
    "DetailsPolicy",
    "HealthConfig",
    "PipelineCheckConfig",
    "PostgresCheckConfig",
    "RedisCheckConfig",
    "SystemCheckConfig",
    "UpstreamCheckConfig",
]

DetailsPolicy = Literal["never", "when-authorized", "always"]

DEFAULT_INTERVAL_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_COOLDOWN_SECONDS = 30.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BreakerConfig(_Frozen):
    """When a dependency's circuit breaker opens and how it closes again.

    It opens on whichever trip condition is met first; set one to null to turn it off.
    """

    #: consecutive failed calls that open the breaker (null: off)
    failure_threshold: int | None = Field(default=3, ge=1)
    #: share of failed calls in the sliding window that opens the breaker, 0-1 (null: off)
    failure_rate_threshold: float | None = Field(default=0.5, gt=0, le=1)
    #: calls the sliding window holds (the failure rate is over the last this-many calls)
    window_size: int = Field(default=10, ge=1)
    #: calls the window must hold before the failure rate may trip the breaker
    minimum_calls: int = Field(default=5, ge=1)
    #: seconds the breaker stays open (calls refused) before it lets trial calls through
    cooldown_seconds: float = Field(default=DEFAULT_COOLDOWN_SECONDS, gt=0)
    #: trial calls in half-open state; all must succeed to close, any failure reopens
    half_open_trials: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_trip_condition(self) -> Self:
        if self.failure_threshold is None and self.failure_rate_threshold is None:
            raise ValueError(
                "failure_threshold and failure_rate_threshold are both null: "
                "the breaker could never open"
            )
        if self.minimum_calls > self.window_size:
            raise ValueError("minimum_calls must not exceed window_size")
        return self


class _CheckConfig(_Frozen):
    #: seconds between two runs of the check (probes serve the last result in between)
    interval_seconds: float = Field(default=DEFAULT_INTERVAL_SECONDS, gt=0)
    #: a run that takes longer fails with a timeout; probes never wait for it
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0)


class PostgresCheckConfig(_CheckConfig):
    #: asyncpg DSN, e.g. "postgresql://postgres@127.0.0.1:5432/test"; keep the password out
    #: of the file: GATEWAY_HEALTH__POSTGRES__DSN
    dsn: str = Field(min_length=1)
    #: a failing required check makes /ready and /health answer 503. Off by default: the
    #: gateway does not use the database, so an outage of the applications' database must
    #: not take telemetry out of rotation (the check still reports, alerts and logs)
    required: bool = False
    #: circuit breaker between the gateway and the database
    breaker: BreakerConfig = BreakerConfig()


class RedisCheckConfig(_CheckConfig):
    #: redis-py URL, e.g. "redis://127.0.0.1:6379/0"
    url: str = Field(min_length=1)
    #: a failing required check makes /ready and /health answer 503
    required: bool = False
    #: round trips slower than this many milliseconds report `warn`
    latency_warn_ms: float = Field(default=100.0, gt=0)
    #: circuit breaker between the gateway and Redis
    breaker: BreakerConfig = BreakerConfig()


class UpstreamCheckConfig(_CheckConfig):
    #: run the check when forwarding is on (it never runs without a forwarder)
    enabled: bool = True
    #: upstream trouble makes the gateway unready (off by default: /metrics still works and
    #: the forwarder queues)
    required: bool = False
    #: forward-queue fill (0-1) that reports `warn`
    queue_warn_ratio: float = Field(default=0.5, gt=0, le=1)
    #: forward-queue fill (0-1) that reports `fail`
    queue_fail_ratio: float = Field(default=0.9, gt=0, le=1)
    #: seconds without a successful send, while batches wait, that report `warn`
    stale_warn_seconds: float = Field(default=60.0, gt=0)
    #: seconds without a successful send, while batches wait, that report `fail`
    stale_fail_seconds: float = Field(default=300.0, gt=0)
    #: circuit breaker fed by this check's results
    breaker: BreakerConfig = BreakerConfig()

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.queue_warn_ratio > self.queue_fail_ratio:
            raise ValueError("queue_warn_ratio must not exceed queue_fail_ratio")
        if self.stale_warn_seconds > self.stale_fail_seconds:
            raise ValueError("stale_warn_seconds must not exceed stale_fail_seconds")
        return self


class PipelineCheckConfig(_CheckConfig):
    #: run the metrics-pipeline check
    enabled: bool = True
    #: off by default: rejects are the clients' fault and must not take the gateway out
    required: bool = False
    #: share of points rejected since the last run (0-1) that reports `warn`
    reject_warn_ratio: float = Field(default=0.05, ge=0, le=1)
    #: share of points rejected since the last run (0-1) that reports `fail` (null: never)
    reject_fail_ratio: float | None = Field(default=None, ge=0, le=1)
    #: seconds without any ingest that report `warn` (null: idleness is fine)
    idle_warn_seconds: float | None = Field(default=None, gt=0)


class SystemCheckConfig(_CheckConfig):
    #: run the CPU / memory / disk threshold check
    enabled: bool = True
    #: a busy host should not take the gateway out of rotation, so not required by default
    required: bool = False
    #: CPU use in percent that reports `warn` / `fail` (the alert rules' 80 / 95)
    cpu_warn: float = Field(default=80.0, ge=0, le=100)
    cpu_fail: float = Field(default=95.0, ge=0, le=100)
    #: memory in use in percent that reports `warn` / `fail` (the alert rules' 85 / 95)
    memory_warn: float = Field(default=85.0, ge=0, le=100)
    memory_fail: float = Field(default=95.0, ge=0, le=100)
    #: disk use in percent of `disk_path`'s filesystem that reports `warn` / `fail`
    disk_warn: float = Field(default=85.0, ge=0, le=100)
    disk_fail: float = Field(default=95.0, ge=0, le=100)
    #: the filesystem whose use is checked
    disk_path: str = "/"

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for name in ("cpu", "memory", "disk"):
            if getattr(self, f"{name}_warn") > getattr(self, f"{name}_fail"):
                raise ValueError(f"{name}_warn must not exceed {name}_fail")
        return self


class HealthConfig(_Frozen):
    #: who sees per-check details on /api/health: never, when-authorized (bearer token), always
    details: DetailsPolicy = "never"
    #: bearer token that unlocks details under when-authorized; keep it in the environment
    #: (GATEWAY_HEALTH__TOKEN), not in the file
    token: str = ""
    #: `serviceId` of /api/health (empty: left out)
    service_id: str = ""
    #: `description` of /api/health (empty: left out)
    description: str = ""
    #: /live fails when the event-loop heartbeat is older than this many seconds
    live_stall_seconds: float = Field(default=10.0, gt=0)
    #: PostgreSQL check (opt-in: absent means no check)
    postgres: PostgresCheckConfig | None = None
    #: Redis check (opt-in: absent means no check)
    redis: RedisCheckConfig | None = None
    #: OTLP upstream (forwarder) check
    upstream: UpstreamCheckConfig = UpstreamCheckConfig()
    #: metrics pipeline check
    pipeline: PipelineCheckConfig = PipelineCheckConfig()
    #: host CPU / memory / disk thresholds
    system: SystemCheckConfig = SystemCheckConfig()

    @model_validator(mode="after")
    def _token_for_policy(self) -> Self:
        if self.details == "when-authorized" and not self.token:
            raise ValueError("details is when-authorized but token is empty")
        return self
