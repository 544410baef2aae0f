"""MemoryLimiter with an injected RSS reader, clock and collector."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import ConfigError, MemoryLimiterConfig, load
from gateway.errors import RetryableError
from gateway.memory import MemoryLimiter
from gateway.receivers.status import grpc_code, http_status

MiB = 1 << 20


class Fake:
    def __init__(self) -> None:
        self.rss = 100 * MiB
        self.now = 0.0
        self.collections = 0

    def collect(self) -> int:
        self.collections += 1
        return 0


def limiter(fake: Fake, **kw: float) -> MemoryLimiter:
    cfg = MemoryLimiterConfig(
        soft_limit_bytes=200 * MiB, hard_limit_bytes=300 * MiB, retry_after_seconds=3, **kw
    )
    return MemoryLimiter(cfg, rss=lambda: fake.rss, collect=fake.collect, clock=lambda: fake.now)


def test_refuses_above_soft_limit_and_recovers() -> None:
    fake = Fake()
    m = limiter(fake)
    m.sample()
    m.check()  # below: no error
    fake.rss = 250 * MiB
    m.sample()
    with pytest.raises(RetryableError) as info:
        m.check()
    assert info.value.retry_after_seconds == 3
    assert http_status(info.value) == 503 and grpc_code(info.value).name == "UNAVAILABLE"
    assert "250 MiB" in str(info.value) and "200 MiB" in str(info.value)
    assert fake.collections == 0, "no collection below the hard limit"
    fake.rss = 150 * MiB
    m.sample()
    m.check()
    assert (m.episodes, m.refused) == (1, 1)


def test_collects_above_hard_limit_at_most_every_few_seconds() -> None:
    fake = Fake()
    m = limiter(fake)
    fake.rss = 400 * MiB
    for _ in range(10):
        m.sample()
    assert fake.collections == 1
    fake.now += 6
    m.sample()
    assert fake.collections == 2
    assert m.refusing


def test_background_sampling_and_lifecycle() -> None:
    fake = Fake()

    async def run() -> None:
        m = limiter(fake, check_interval_seconds=0.01)
        await m.shutdown()  # before start: fine
        await m.start()
        fake.rss = 250 * MiB
        await asyncio.sleep(0.1)
        assert m.refusing and m.last_rss == 250 * MiB
        await m.shutdown()
        await m.shutdown()

    asyncio.run(run())


def test_zero_soft_limit_turns_it_off() -> None:
    m = MemoryLimiter(MemoryLimiterConfig(soft_limit_bytes=0), rss=lambda: 1 << 40)
    assert not m.enabled

    async def run() -> None:
        await m.start()
        m.check()
        await m.shutdown()

    asyncio.run(run())


def test_hard_below_soft_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="hard_limit_bytes must be >= soft_limit_bytes"):
        load({"memory_limiter": {"soft_limit_bytes": 2000, "hard_limit_bytes": 1000}})


def test_the_sampling_loop_survives_errors_and_says_so() -> None:
    """Issue 17, finding 6: EMFILE while reading /proc killed the loop for good: the last
    reading froze and the limit was no longer enforced."""
    fake = Fake()
    failures = [OSError(24, "Too many open files"), RuntimeError("anything else")]

    def rss() -> int:
        if failures and fake.now >= 1:
            raise failures.pop(0)
        return fake.rss

    async def run() -> None:
        cfg = MemoryLimiterConfig(soft_limit_bytes=200 * MiB, check_interval_seconds=0.01)
        m = MemoryLimiter(cfg, rss=rss, collect=fake.collect, clock=lambda: fake.now)
        await m.start()
        fake.now = 1
        for _ in range(100):
            await asyncio.sleep(0.01)
            if m.errors == 2:
                break
        assert m.errors == 2
        fake.rss = 250 * MiB  # failures used up: readings resume
        await asyncio.sleep(0.1)
        assert m.last_rss == 250 * MiB and m.refusing
        assert m.error is None
        await m.shutdown()

    asyncio.run(run())


def test_an_error_is_reported_until_a_reading_succeeds() -> None:
    state = {"fail": False}

    def rss() -> int:
        if state["fail"]:
            raise OSError(24, "Too many open files")
        return 10 * MiB

    async def run() -> None:
        cfg = MemoryLimiterConfig(soft_limit_bytes=200 * MiB, check_interval_seconds=0.01)
        m = MemoryLimiter(cfg, rss=rss)
        await m.start()  # its first sample succeeds; the background ones fail
        state["fail"] = True
        await asyncio.sleep(0.05)
        assert m.error is not None and "Too many open files" in m.error
        state["fail"] = False
        await asyncio.sleep(0.05)
        assert m.error is None
        await m.shutdown()

    asyncio.run(run())
