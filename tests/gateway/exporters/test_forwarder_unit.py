"""The OTLP/HTTP forwarder's retry policy, in process: an `httpx.MockTransport` stands for the
upstream and an injected sleep records the backoff waits instead of waiting them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from gateway.config import ForwarderConfig
from gateway.exporters.otlp_forwarder import OtlpForwarder
from gateway.pipeline.batch import MetricsBatch
from tests.support.otlp import Req

CONFIG = ForwarderConfig(
    endpoint="http://upstream.invalid:4318",
    initial_backoff_seconds=1.0,
    max_backoff_seconds=30.0,
)


class Upstream:
    """Answers with the given statuses in turn, then 200; keeps what it accepted."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.accepted: list[ExportMetricsServiceRequest] = []
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.answers:
            status, headers = self.answers.pop(0)
            return httpx.Response(status, headers=headers, content=b"no")
        self.accepted.append(ExportMetricsServiceRequest.FromString(request.content))
        return httpx.Response(200, content=b"")


def run(
    upstream: Upstream, done: Callable[[OtlpForwarder], bool]
) -> tuple[OtlpForwarder, list[float]]:
    """Forwards one 3-point batch; returns the forwarder and the waits it asked for."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def main() -> OtlpForwarder:
        forwarder = OtlpForwarder(CONFIG, sleep=sleep, transport=httpx.MockTransport(upstream))
        await forwarder.start()
        forwarder.consume(
            MetricsBatch(Req().sum("c", [({"k": str(i)}, 1, 0, 10) for i in range(3)]).request)
        )
        for _ in range(2000):
            if done(forwarder):
                break
            await asyncio.sleep(0)
        await forwarder.shutdown(1.0)
        return forwarder

    started = time.monotonic()
    forwarder = asyncio.run(main())
    assert time.monotonic() - started < 5, "the backoff was waited, not injected"
    return forwarder, waits


def test_retries_with_growing_jittered_backoff_until_delivered() -> None:
    upstream = Upstream((503, {}), (503, {}), (502, {}))
    forwarder, waits = run(upstream, lambda f: f.counters.forwarded == 3)
    assert forwarder.counters.forwarded == 3
    assert len(upstream.accepted) == 1 and upstream.paths[0] == "/v1/metrics"
    # base 1, 2, 4 s, each jittered to 0.5x-1.5x
    assert len(waits) == 3
    for wait, base in zip(waits, (1.0, 2.0, 4.0), strict=True):
        assert 0.5 * base <= wait <= 1.5 * base


def test_retry_after_is_obeyed_up_to_the_backoff_cap() -> None:
    upstream = Upstream((429, {"Retry-After": "7"}), (503, {"Retry-After": "120"}))
    forwarder, waits = run(upstream, lambda f: f.counters.forwarded == 3)
    assert waits == [7.0, 30.0]
    assert forwarder.counters.forwarded == 3


def test_a_permanent_refusal_is_dropped_and_counted_without_retrying() -> None:
    upstream = Upstream((400, {}))
    forwarder, waits = run(upstream, lambda f: bool(f.dropped()))
    assert waits == []
    assert forwarder.dropped() == {"rejected_upstream": 3}
    assert forwarder.counters.rejected_upstream == 1
    assert forwarder.counters.forwarded == 0 and upstream.accepted == []
