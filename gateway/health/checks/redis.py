"""Redis: `PING` and its round-trip time, through redis.asyncio."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from gateway.health.breaker import CircuitBreaker
from gateway.health.checks._configured import configured_check
from gateway.health.config import RedisCheckConfig
from gateway.health.model import Check, CheckOutcome, Observation, Status

__all__ = ["COMPONENT", "RedisCheck", "redis_check"]

COMPONENT = "redis"


class RedisCheck:
    """Callable check: `PING`; slower than `latency_warn_ms` warns."""

    def __init__(
        self,
        *,
        url: str | None = None,
        client: aioredis.Redis | None = None,
        latency_warn_ms: float = 100.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("give exactly one of url and client")
        self._owns_client = client is None
        self._client = client or aioredis.Redis.from_url(
            url or "",
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            # The health check must see the failure, not have it hidden by retries.
            retry_on_error=[],
            retry=None,
        )
        self._latency_warn_ms = latency_warn_ms

    async def __call__(self) -> CheckOutcome:
        started = time.perf_counter()
        pong = await self._client.ping()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if not pong:
            return CheckOutcome(Status.FAIL, output=f"PING answered {pong!r}")
        slow = elapsed_ms > self._latency_warn_ms
        why = f"PING took {elapsed_ms:.0f} ms (> {self._latency_warn_ms:g})" if slow else ""
        return CheckOutcome.of(
            Observation(
                "responseTime",
                round(elapsed_ms, 3),
                "ms",
                status=Status.WARN if slow else Status.PASS,
                output=why,
            )
        )

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def redis_check(
    config: RedisCheckConfig,
    *,
    client: aioredis.Redis | None = None,
    breaker: CircuitBreaker | None = None,
) -> Check:
    """The configured check (its own client from `config.url` unless `client` is given)."""
    if client is not None:
        fn = RedisCheck(client=client, latency_warn_ms=config.latency_warn_ms)
    else:
        fn = RedisCheck(
            url=config.url,
            latency_warn_ms=config.latency_warn_ms,
            timeout_seconds=config.timeout_seconds,
        )
    return configured_check(
        COMPONENT,
        fn,
        config,
        component_type="datastore",
        breaker=breaker or CircuitBreaker(COMPONENT, config.breaker),
    )
