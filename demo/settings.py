"""The demo service's settings: validated once, from arguments or the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.health.config import BreakerConfig

__all__ = ["DEFAULT_DATABASE_URL", "DemoSettings"]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


class DemoSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: asyncpg DSN of the demo's PostgreSQL (env DATABASE_URL)
    database_url: str = DEFAULT_DATABASE_URL
    #: prefix of the demo's tables, so several demos and tests share a database (DEMO_TABLE_PREFIX)
    table_prefix: str = "demo_"
    #: seconds to wait for PostgreSQL at start before running without it
    database_connect_timeout_s: float = Field(default=3.0, gt=0)
    #: OTel service.name of the demo (env OTEL_SERVICE_NAME wins when this is not set explicitly)
    service_name: str = "coderunner-demo"
    #: share of simulated builds that fail, 0-1 (DEMO_FAILURE_RATE); the default stays well
    #: under DeploymentFailureRateHigh's 10 %, so the demo is quiet at steady state
    failure_rate: float = Field(default=0.04, ge=0, le=1)
    #: simulated build time range in seconds, (min, max)
    build_seconds: tuple[float, float] = (0.05, 0.4)
    #: seconds between refreshes of the users-per-plan gauge from the database
    plan_refresh_s: float = Field(default=10.0, gt=0)
    #: users created when the users table is empty
    seed_users: int = Field(default=30, ge=1, le=10_000)
    #: seconds between two runs of each health check (DEMO_HEALTH_INTERVAL_S)
    health_interval_s: float = Field(default=10.0, gt=0)
    #: a health check run slower than this many seconds fails (DEMO_HEALTH_TIMEOUT_S)
    health_timeout_s: float = Field(default=2.0, gt=0)
    #: circuit breaker of the database health check (DEMO_BREAKER_FAILURES: its
    #: failure_threshold, DEMO_BREAKER_COOLDOWN_S: its cooldown_seconds)
    database_breaker: BreakerConfig = BreakerConfig()
    #: open WebSockets one worker's hub holds; beyond it new ones are refused
    #: (DEMO_WS_MAX_CONNECTIONS)
    websocket_max_connections: int = Field(default=1000, ge=1)

    @field_validator("table_prefix")
    @classmethod
    def _identifier(cls, value: str) -> str:
        # The prefix is spliced into SQL identifiers, so only a safe identifier fragment is allowed.
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,30}", value):
            raise ValueError("table_prefix must match [a-z_][a-z0-9_]{0,30}")
        return value

    @field_validator("build_seconds")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 <= low <= high:
            raise ValueError("build_seconds must be (min, max) with 0 <= min <= max")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DemoSettings:
        """DATABASE_URL, DEMO_TABLE_PREFIX, DEMO_FAILURE_RATE, DEMO_SERVICE_NAME,
        DEMO_HEALTH_INTERVAL_S, DEMO_HEALTH_TIMEOUT_S, DEMO_BREAKER_FAILURES,
        DEMO_BREAKER_COOLDOWN_S, DEMO_WS_MAX_CONNECTIONS."""
        values: dict[str, object] = {}
        if environ.get("DATABASE_URL"):
            values["database_url"] = environ["DATABASE_URL"]
        if environ.get("DEMO_TABLE_PREFIX"):
            values["table_prefix"] = environ["DEMO_TABLE_PREFIX"]
        if environ.get("DEMO_FAILURE_RATE"):
            values["failure_rate"] = environ["DEMO_FAILURE_RATE"]
        if environ.get("DEMO_SERVICE_NAME"):
            values["service_name"] = environ["DEMO_SERVICE_NAME"]
        if environ.get("DEMO_HEALTH_INTERVAL_S"):
            values["health_interval_s"] = environ["DEMO_HEALTH_INTERVAL_S"]
        if environ.get("DEMO_HEALTH_TIMEOUT_S"):
            values["health_timeout_s"] = environ["DEMO_HEALTH_TIMEOUT_S"]
        if environ.get("DEMO_WS_MAX_CONNECTIONS"):
            values["websocket_max_connections"] = environ["DEMO_WS_MAX_CONNECTIONS"]
        breaker: dict[str, object] = {}
        if environ.get("DEMO_BREAKER_FAILURES"):
            breaker["failure_threshold"] = environ["DEMO_BREAKER_FAILURES"]
        if environ.get("DEMO_BREAKER_COOLDOWN_S"):
            breaker["cooldown_seconds"] = environ["DEMO_BREAKER_COOLDOWN_S"]
        if breaker:
            values["database_breaker"] = breaker
        return cls.model_validate(values)
