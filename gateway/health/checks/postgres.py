"""PostgreSQL: `SELECT 1` round trip and connection-pool statistics, through asyncpg.

A service passes its own pool (its statistics are the interesting ones); the gateway gives a DSN
and the check keeps a small pool of its own that connects lazily, so a database that is down at
start does not stop the gateway from starting.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from gateway.health.breaker import CircuitBreaker
from gateway.health.checks._configured import configured_check
from gateway.health.config import PostgresCheckConfig
from gateway.health.model import Check, CheckOutcome, Observation, Status

__all__ = ["COMPONENT", "PostgresCheck", "postgres_check"]

COMPONENT = "postgresql"
#: how long close() waits for a graceful pool close; below HealthRegistry's 1 s grace for a
#: check's close(), so the fallback runs here and is not cut short by the registry
_CLOSE_TIMEOUT_SECONDS = 0.5


class PostgresCheck:
    """Callable check: one `SELECT 1` on a pooled connection, then the pool's numbers."""

    def __init__(self, *, dsn: str | None = None, pool: asyncpg.Pool | None = None) -> None:
        if (dsn is None) == (pool is None):
            raise ValueError("give exactly one of dsn and pool")
        self._dsn = dsn
        self._pool = pool
        self._owns_pool = pool is None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            # min_size=0: connect on first use, not at creation; max_size=1: a health check
            # needs one connection, never a burst.
            self._pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=1)
        return self._pool

    async def __call__(self) -> CheckOutcome:
        pool = await self._get_pool()
        started = time.perf_counter()
        async with pool.acquire() as conn:
            value = await conn.fetchval("SELECT 1")
        elapsed_ms = (time.perf_counter() - started) * 1000
        if value != 1:
            return CheckOutcome(Status.FAIL, output=f"SELECT 1 returned {value!r}")
        size, idle = pool.get_size(), pool.get_idle_size()
        return CheckOutcome.of(
            Observation("responseTime", round(elapsed_ms, 3), "ms"),
            Observation("connections", size - idle, "connections", component_id="in_use"),
            Observation("connections", idle, "connections", component_id="idle"),
            Observation("connections", pool.get_max_size(), "connections", component_id="max"),
        )

    async def close(self) -> None:
        """Close the check's own pool (never a pool the service passed in).

        Gracefully first: a run cancelled mid-query at shutdown may still be releasing its
        connection, and `terminate()` under it makes that release fail in a task nobody awaits
        ("Future exception was never retrieved"). `Pool.close()` waits for the release; only
        when that takes longer than `_CLOSE_TIMEOUT_SECONDS` (a hung server) is the pool
        terminated.
        """
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                # Pool.close() terminates on its own when cancelled; saying so keeps it true
                # if that ever changes. terminate() on a closed pool is a no-op.
                pool.terminate()


def postgres_check(
    config: PostgresCheckConfig,
    *,
    pool: asyncpg.Pool | None = None,
    breaker: CircuitBreaker | None = None,
) -> Check:
    """The configured check (its own pool from `config.dsn` unless `pool` is given)."""
    fn = PostgresCheck(pool=pool) if pool is not None else PostgresCheck(dsn=config.dsn)
    return configured_check(
        COMPONENT,
        fn,
        config,
        component_type="datastore",
        breaker=breaker or CircuitBreaker(COMPONENT, config.breaker),
    )
