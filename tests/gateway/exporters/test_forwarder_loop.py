"""Issue 17, finding 7: the forwarder's send loop survives any error, counts it and reports it
to its health check until a send succeeds again."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import ForwarderConfig
from gateway.exporters.otlp_forwarder import OtlpForwarder
from gateway.exporters.queue import Entry, MemoryQueue
from gateway.health.checks.upstream import UpstreamCheck
from gateway.health.config import UpstreamCheckConfig
from gateway.health.model import Status
from gateway.pipeline.batch import MetricsBatch
from tests.support.otlp import Req
from tests.support.upstream import run_upstream

pytestmark = pytest.mark.integration  # starts a server or a subprocess


class FlakyQueue(MemoryQueue):
    """A memory queue whose first `peek` fails, as a damaged disk queue's read would."""

    def __init__(self) -> None:
        super().__init__(10)
        self.failures = 1

    def peek(self, max_points: int) -> list[Entry]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("disk I/O error")
        return super().peek(max_points)


def test_the_send_loop_survives_an_unexpected_error() -> None:
    async def run(url: str) -> tuple[int, str | None, Status, Status, int]:
        queue = FlakyQueue()
        config = ForwarderConfig(endpoint=url, initial_backoff_seconds=0.2)
        forwarder = OtlpForwarder(config, queue)
        check = UpstreamCheck(forwarder, UpstreamCheckConfig())
        await forwarder.start()
        forwarder.consume(MetricsBatch(Req(service="a").gauge("g", [({}, 1.0, 1)]).request))
        await asyncio.sleep(0.05)
        failure = forwarder.failure()
        during = (await check()).status
        for _ in range(100):
            await asyncio.sleep(0.05)
            if forwarder.counters.forwarded:
                break
        after = (await check()).status
        await forwarder.shutdown(1.0)
        return forwarder.counters.errors, failure, during, after, forwarder.counters.forwarded

    with run_upstream() as upstream:
        errors, failure, during, after, forwarded = asyncio.run(run(upstream.url))
        assert upstream.points_of("a") == 1
    assert errors == 1 and forwarded == 1
    assert failure is not None and "disk I/O error" in failure
    assert during is Status.FAIL and after is Status.PASS
