"""The built-in checks: PostgreSQL and Redis against the real servers, the rest through their
small protocols with exact numbers."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.health.checks.pipeline import (
    PipelineCheck,
    PipelineCounters,
    PipelineStats,
    pipeline_check,
)
from gateway.health.checks.postgres import PostgresCheck, postgres_check
from gateway.health.checks.redis import RedisCheck, redis_check
from gateway.health.checks.system import PsutilSampler, SystemCheck, system_check
from gateway.health.checks.upstream import UpstreamCheck, UpstreamStatus, upstream_check
from gateway.health.config import (
    PipelineCheckConfig,
    PostgresCheckConfig,
    RedisCheckConfig,
    SystemCheckConfig,
    UpstreamCheckConfig,
)
from gateway.health.model import CheckOutcome, Status
from gateway.health.registry import HealthRegistry
from tests.support.servers import free_port

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def by_key(outcome: CheckOutcome) -> dict[str, object]:
    return {
        f"{o.measurement}/{o.component_id}" if o.component_id else o.measurement: o.value
        for o in outcome.observations
    }


@pytest.mark.integration
def test_postgres_select_1_and_pool_stats_with_a_dsn() -> None:
    async def scenario() -> None:
        check = postgres_check(PostgresCheckConfig(dsn=PG_DSN))
        assert (check.name, check.required, check.component_type) == (
            "postgresql",
            False,  # informational unless configured required (issue 19, item 5)
            "datastore",
        )
        assert check.breaker is not None
        try:
            outcome = await check.fn()
            assert isinstance(outcome, CheckOutcome)
            assert outcome.status is Status.PASS
            values = by_key(outcome)
            assert isinstance(values["responseTime"], float)
            assert 0 < values["responseTime"] < 5000
            assert values["connections/max"] == 1
            assert values["connections/in_use"] == 0  # released after the query
            assert values["connections/idle"] == 1
        finally:
            assert check.close is not None
            await check.close()

    asyncio.run(scenario())


@pytest.mark.integration
def test_postgres_with_the_services_own_pool() -> None:
    async def scenario() -> None:
        pool = await asyncpg.create_pool(PG_DSN, min_size=2, max_size=3)
        try:
            check = PostgresCheck(pool=pool)
            async with pool.acquire():  # the service is busy with one connection
                outcome = await check()
            values = by_key(outcome)
            assert values["connections/max"] == 3
            assert values["connections/in_use"] == 1  # the service's, seen by the check
            await check.close()  # not ours to close
            assert await pool.fetchval("SELECT 2") == 2
        finally:
            await pool.close()

    asyncio.run(scenario())


@pytest.mark.integration
def test_postgres_down_fails_through_the_registry() -> None:
    async def scenario() -> None:
        cfg = PostgresCheckConfig(
            dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/test", timeout_seconds=3
        )
        registry = HealthRegistry()
        registry.add(postgres_check(cfg))
        result = await registry.run_once("postgresql")
        assert result.status is Status.WARN  # first failure, breaker (threshold 3) closed
        assert "Connect" in result.output or "refused" in result.output
        await registry.start()
        await registry.shutdown()

    asyncio.run(scenario())


@pytest.mark.integration
def test_redis_ping_and_latency() -> None:
    async def scenario() -> None:
        check = redis_check(RedisCheckConfig(url=REDIS_URL))
        assert (check.name, check.required) == ("redis", False)
        try:
            outcome = await check.fn()
            assert isinstance(outcome, CheckOutcome)
            assert outcome.status is Status.PASS
            (obs,) = outcome.observations
            assert (obs.measurement, obs.unit) == ("responseTime", "ms")
            assert isinstance(obs.value, float)
        finally:
            assert check.close is not None
            await check.close()

        # A threshold below any real round trip turns the same PING into a warning.
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            slow = await RedisCheck(client=client, latency_warn_ms=1e-6)()
            assert slow.status is Status.WARN
            assert "PING took" in slow.observations[0].output
        finally:
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.integration
def test_redis_down_raises() -> None:
    async def scenario() -> None:
        check = RedisCheck(url=f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=2)
        try:
            with pytest.raises(Exception, match=r"(?i)connect"):
                await check()
        finally:
            await check.close()

    asyncio.run(scenario())


class Forwarder:
    """Implements `UpstreamStatus` with numbers the test sets."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.fill = 0.0

    def last_success_unix(self) -> float | None:
        return self.last

    def queue_fill_ratio(self) -> float:
        return self.fill


def test_upstream_queue_fill_and_staleness() -> None:
    now = {"t": 10_000.0}
    fwd = Forwarder()
    assert isinstance(fwd, UpstreamStatus)
    cfg = UpstreamCheckConfig(stale_warn_seconds=60, stale_fail_seconds=300)
    check = UpstreamCheck(fwd, cfg, wall_clock=lambda: now["t"])

    def run() -> tuple[Status, dict[str, object]]:
        outcome = asyncio.run(check())
        return outcome.status, by_key(outcome)

    # idle: nothing queued, no success ever -> fine however long
    now["t"] += 1000
    assert run() == (Status.PASS, {"queueFill": 0.0, "lastSuccessAge": 1000.0})
    fwd.last, fwd.fill = now["t"] - 61, 0.1  # batches wait, last success 61 s ago
    assert run()[0] is Status.WARN
    fwd.last = now["t"] - 301
    assert run()[0] is Status.FAIL
    fwd.last, fwd.fill = now["t"], 0.55
    assert run() == (Status.WARN, {"queueFill": 55.0, "lastSuccessAge": 0.0})
    fwd.fill = 0.95
    status, _ = run()
    assert status is Status.FAIL
    assert upstream_check(cfg, fwd).name == "otlp_upstream"


class Stats:
    def __init__(self) -> None:
        self.received = 0
        self.rejected = 0
        self.last: float | None = None

    def points_received_total(self) -> int:
        return self.received

    def points_rejected_total(self) -> int:
        return self.rejected

    def last_ingest_unix(self) -> float | None:
        return self.last


def test_pipeline_reject_ratio_since_last_run_and_idleness() -> None:
    now = {"t": 0.0}
    stats = Stats()
    cfg = PipelineCheckConfig(reject_warn_ratio=0.1, reject_fail_ratio=0.5, idle_warn_seconds=30)
    check = PipelineCheck(stats, cfg, wall_clock=lambda: now["t"])

    def run() -> tuple[Status, dict[str, object]]:
        outcome = asyncio.run(check())
        return outcome.status, by_key(outcome)

    assert run()[0] is Status.PASS
    stats.received, stats.rejected, stats.last = 1000, 50, 0.0
    assert run()[1]["rejectRatio"] == 0.05
    stats.received, stats.rejected = 2000, 250  # 200 of the last 1000 rejected
    status, values = run()
    assert (status, values["rejectRatio"], values["pointsReceived"]) == (Status.WARN, 0.2, 1000)
    stats.received, stats.rejected = 2100, 320  # 70 of 100
    assert run()[0] is Status.FAIL
    stats.received, stats.rejected = 3100, 320  # clean again
    assert run()[0] is Status.PASS
    now["t"] = 31.0
    status, values = run()
    assert (status, values["lastIngestAge"]) == (Status.WARN, 31.0)
    assert pipeline_check(cfg, stats).name == "pipeline"


class Sampler:
    def __init__(self, cpu: float, memory: float, disk: float) -> None:
        self.values = (cpu, memory, disk)
        self.paths: list[str] = []

    def cpu_percent(self) -> float:
        return self.values[0]

    def memory_percent(self) -> float:
        return self.values[1]

    def disk_percent(self, path: str) -> float:
        self.paths.append(path)
        return self.values[2]


@pytest.mark.parametrize(
    ("cpu", "memory", "disk", "expected"),
    [
        (10, 20, 30, Status.PASS),
        (80, 20, 30, Status.WARN),
        (10, 85, 30, Status.WARN),
        (10, 20, 85, Status.WARN),
        (95, 20, 30, Status.FAIL),
        (81, 96, 30, Status.FAIL),
    ],
)
def test_system_thresholds(cpu: float, memory: float, disk: float, expected: Status) -> None:
    sampler = Sampler(cpu, memory, disk)
    check = SystemCheck(SystemCheckConfig(disk_path="/tmp"), sampler, min_cpu_window_seconds=0)
    outcome = asyncio.run(check())
    assert outcome.status is expected
    assert sampler.paths == ["/tmp"]
    assert by_key(outcome) == {
        "cpuUtilization": cpu,
        "memoryUtilization": memory,
        "diskUtilization": disk,
    }
    for obs in outcome.observations:
        assert (obs.output == "") is (obs.status is Status.PASS)


def test_system_check_reads_the_real_host() -> None:
    check = SystemCheck(SystemCheckConfig(), PsutilSampler(), min_cpu_window_seconds=0.2)
    started = time.monotonic()
    outcome = asyncio.run(check())
    # the first run waits out the minimum CPU window instead of sampling a few milliseconds
    assert time.monotonic() - started >= 0.19
    values = by_key(outcome)
    for key in ("cpuUtilization", "memoryUtilization", "diskUtilization"):
        assert 0 <= float(values[key]) <= 100  # type: ignore[arg-type]
    assert system_check(SystemCheckConfig()).component_type == "system"


def test_pipeline_counters_derive_the_last_ingest_from_growth() -> None:
    now = {"t": 100.0}
    seen = {"received": 0, "rejected": 0}
    stats = PipelineCounters(
        lambda: seen["received"], lambda: seen["rejected"], wall_clock=lambda: now["t"]
    )
    assert isinstance(stats, PipelineStats)
    assert stats.last_ingest_unix() is None
    seen["received"] = 10
    now["t"] = 105.0
    assert stats.last_ingest_unix() == 105.0
    seen["received"], seen["rejected"] = 15, 5  # only rejects: nothing was ingested
    now["t"] = 110.0
    assert stats.last_ingest_unix() == 105.0
    assert (stats.points_received_total(), stats.points_rejected_total()) == (15, 5)
