"""The OTLP forwarder against an in-process upstream (httpx.MockTransport): what it sends, how it
retries, when it gives up and what it counts. Time is a FakeClock: a retry's wait moves the clock
and is recorded, so no test waits in real time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from gateway.config import ForwarderConfig
from gateway.errors import RetryableError
from gateway.exporters.otlp_forwarder import OtlpForwarder
from gateway.pipeline.batch import MetricsBatch
from tests.support.fakes import FakeClock
from tests.support.otlp import Req

Reply = httpx.Response | Exception
LOGGER = "gateway.exporters.otlp_forwarder"


class Upstream:
    """Answers each request with the next scripted reply (the last one repeats) and keeps what
    it was sent."""

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self.replies = list(replies) or [ok()]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def points(self) -> int:
        total = 0
        for r in self.requests:
            req = ExportMetricsServiceRequest.FromString(r.content)
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    total += sum(
                        len(getattr(m, m.WhichOneof("data")).data_points) for m in sm.metrics
                    )
        return total


def ok(rejected: int = 0) -> httpx.Response:
    answer = ExportMetricsServiceResponse()
    if rejected:
        answer.partial_success.rejected_data_points = rejected
        answer.partial_success.error_message = "too old"
    return httpx.Response(200, content=answer.SerializeToString())


def batch(service: str = "svc", points: int = 3) -> MetricsBatch:
    req = Req(service=service).sum("c", [({"i": i}, float(i), 0, 1) for i in range(points)])
    return MetricsBatch(req.request)


def forwarder(upstream: Upstream, clock: FakeClock, **config: object) -> OtlpForwarder:
    settings = ForwarderConfig.model_validate(
        {"endpoint": "http://upstream.test:4318", "initial_backoff_seconds": 1.0, **config}
    )
    return OtlpForwarder(
        settings, sleep=clock.sleep, clock=clock, transport=httpx.MockTransport(upstream)
    )


async def until(check: Callable[[], bool], turns: int = 10_000) -> None:
    """Lets the forwarder's task run (no real time passes) until `check` holds."""
    for _ in range(turns):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("the forwarder never got there")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_a_batch_reaches_the_upstream_as_otlp_protobuf() -> None:
    upstream, clock = Upstream(), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock, headers={"authorization": "Bearer t"})
        await fwd.start()
        fwd.consume(batch(points=3))
        await until(lambda: fwd.counters.forwarded == 3)
        await fwd.shutdown(1.0)

    run(go)
    (request,) = upstream.requests
    assert request.url == "http://upstream.test:4318/v1/metrics"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["authorization"] == "Bearer t"
    assert upstream.points() == 3
    assert clock.sleeps == []


def test_batches_queued_before_start_go_out_merged_in_one_request() -> None:
    upstream, clock = Upstream(), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        for service in ("a", "b", "c"):
            fwd.consume(batch(service, points=2))
        assert fwd.queue_length == 3
        await fwd.start()
        await until(lambda: fwd.counters.forwarded == 6)
        await fwd.shutdown(1.0)

    run(go)
    assert len(upstream.requests) == 1
    services = {
        rm.resource.attributes[0].value.string_value
        for rm in ExportMetricsServiceRequest.FromString(
            upstream.requests[0].content
        ).resource_metrics
    }
    assert services == {"a", "b", "c"}


def test_retry_after_is_honoured_then_the_batch_is_delivered_once() -> None:
    busy = httpx.Response(503, headers={"Retry-After": "7"})
    upstream, clock = Upstream([busy, busy, ok()]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        await fwd.start()
        fwd.consume(batch(points=2))
        await until(lambda: fwd.counters.forwarded == 2)
        assert fwd.queue_length == 0
        await fwd.shutdown(1.0)

    run(go)
    assert clock.sleeps == [7.0, 7.0]
    assert len(upstream.requests) == 3
    assert upstream.points() == 6  # the same 2 points, three attempts


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    busy = httpx.Response(502)
    upstream, clock = Upstream([busy] * 5 + [ok()]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock, initial_backoff_seconds=1.0, max_backoff_seconds=4.0)
        await fwd.start()
        fwd.consume(batch())
        await until(lambda: fwd.counters.forwarded == 3)
        await fwd.shutdown(1.0)

    run(go)
    # backoff 1, 2, 4, 4, 4, each times a jitter in [0.5, 1.5), never above the cap
    bases = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(clock.sleeps) == 5
    for base, slept in zip(bases, clock.sleeps, strict=True):
        assert 0.5 * base <= slept <= min(1.5 * base, 4.0)


def test_gives_up_after_max_elapsed_and_counts_the_points_dropped() -> None:
    upstream, clock = Upstream([httpx.Response(503)]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock, max_elapsed_seconds=20.0, max_backoff_seconds=4.0)
        await fwd.start()
        fwd.consume(batch(points=4))
        await until(lambda: sum(fwd.dropped().values()) == 4)
        assert fwd.queue_length == 0 and fwd.counters.forwarded == 0
        await fwd.shutdown(1.0)

    run(go)
    assert 20.0 <= sum(clock.sleeps) < 20.0 + 4.0
    assert clock.now >= 1000.0 + 20.0


def test_a_permanent_refusal_is_not_retried() -> None:
    upstream, clock = Upstream([httpx.Response(400, text="bad metric")]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        await fwd.start()
        fwd.consume(batch(points=5))
        await until(lambda: fwd.counters.rejected_upstream == 1)
        assert sum(fwd.dropped().values()) == 5
        assert fwd.counters.forwarded == 0
        await fwd.shutdown(1.0)

    run(go)
    assert len(upstream.requests) == 1
    assert clock.sleeps == []


def test_points_the_upstream_rejects_in_a_partial_success_are_counted() -> None:
    upstream, clock = Upstream([ok(rejected=2)]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        await fwd.start()
        fwd.consume(batch(points=5))
        await until(lambda: fwd.counters.forwarded == 3)
        # taken by the upstream or dropped: each point once
        assert fwd.dropped() == {"rejected_upstream": 2}
        await fwd.shutdown(1.0)

    run(go)
    assert clock.sleeps == []  # a partial success is an answer: nothing is retried


def test_an_upstream_count_above_the_batch_drops_no_more_than_the_batch() -> None:
    upstream, clock = Upstream([ok(rejected=1000)]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        await fwd.start()
        fwd.consume(batch(points=4))
        await until(lambda: sum(fwd.dropped().values()) == 4)
        assert fwd.counters.forwarded == 0
        await fwd.shutdown(1.0)

    run(go)


def test_partial_rejections_are_one_warning_per_episode_and_one_recovered_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An upstream that rejected points in every batch logged one WARNING per batch. Three
    batches come back with rejections (the clock moves 10 s between them), then one is taken
    whole, then another has rejections: a new episode."""
    upstream = Upstream([ok(rejected=2), ok(rejected=1), ok(rejected=2), ok(), ok(rejected=3)])
    clock = FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        await fwd.start()
        for sent in range(1, 6):
            fwd.consume(batch(points=3))
            await until(lambda n=sent: len(upstream.requests) == n and fwd.queue_length == 0)
            clock.advance(10.0)
        await fwd.shutdown(1.0)
        assert fwd.dropped() == {"rejected_upstream": 8}
        assert fwd.counters.forwarded == 15 - 8

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(go)
    ours = [r for r in caplog.records if r.name == LOGGER]
    lines = [r.getMessage() for r in ours if r.levelno >= logging.WARNING]
    assert len(lines) == 3, lines
    first, recovered, again = lines
    assert first.startswith("forwarder: upstream http://upstream.test:4318 rejected 2 points")
    assert "too old" in first
    assert "gateway.points.dropped{reason='rejected_upstream'}" in first
    assert recovered.startswith("forwarder: upstream http://upstream.test:4318 recovered after")
    assert "after 30.0s" in recovered and "5 points dropped meanwhile" in recovered
    assert again.startswith("forwarder: upstream http://upstream.test:4318 rejected 3 points")
    # the quiet ones are still there for whoever turns DEBUG on
    quiet = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    assert quiet == [
        "forwarder: upstream rejected 1 points: too old",
        "forwarder: upstream rejected 2 points: too old",
    ]


def test_a_partial_rejection_after_retries_is_logged_as_the_new_trouble(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The upstream comes back (after 503s) but rejects points: the episode changes kind, so
    that is said at WARNING; the recovered line comes with the first batch taken whole."""
    busy = httpx.Response(503)
    upstream, clock = Upstream([busy, busy, ok(rejected=1), ok()]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        await fwd.start()
        fwd.consume(batch(points=2))
        await until(lambda: len(upstream.requests) == 3 and fwd.queue_length == 0)
        fwd.consume(batch(points=2))
        await until(lambda: fwd.counters.forwarded == 3)
        await fwd.shutdown(1.0)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(go)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 3, lines
    assert "upstream answered 503" in lines[0] and "retrying with backoff" in lines[0]
    assert "rejected 1 points of a batch" in lines[1]
    assert "recovered" in lines[2] and "last trouble: rejected_upstream" in lines[2]


def test_a_200_that_is_not_otlp_counts_as_delivered_and_as_a_bad_response() -> None:
    upstream, clock = Upstream([httpx.Response(200, text="<html>proxy</html>")]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        await fwd.start()
        fwd.consume(batch(points=1))
        await until(lambda: fwd.counters.forwarded == 1)
        assert fwd.counters.bad_responses == 1
        await fwd.shutdown(1.0)

    run(go)


def test_an_unknown_outcome_counts_the_resent_points_as_possible_duplicates() -> None:
    # Refused before the request went out: not a duplicate. Timed out reading the answer: the
    # upstream may have the data, so the resend is counted.
    refused = httpx.ConnectError("connection refused")
    timed_out = httpx.ReadTimeout("no answer")
    upstream, clock = Upstream([refused, timed_out, ok()]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock)
        await fwd.start()
        fwd.consume(batch(points=3))
        await until(lambda: fwd.counters.forwarded == 3)
        assert fwd.counters.redelivered == 3
        await fwd.shutdown(1.0)

    run(go)
    assert len(upstream.requests) == 3
    assert len(clock.sleeps) == 2


def test_shutdown_with_the_upstream_down_ends_within_the_grace_and_counts_the_loss() -> None:
    upstream, clock = Upstream([httpx.Response(503)]), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock, max_elapsed_seconds=0)
        await fwd.start()
        fwd.consume(batch(points=4))
        await until(lambda: len(upstream.requests) >= 2)
        started = clock.now
        await fwd.shutdown(5.0)
        assert clock.now - started >= 5.0
        # A memory queue dies with the process: what it held is counted as dropped.
        assert sum(fwd.dropped().values()) == 4
        assert fwd.counters.forwarded == 0

    run(go)


def test_a_full_queue_drops_with_a_count_and_refuses_new_data_as_retryable() -> None:
    upstream, clock = Upstream(), FakeClock()

    async def go() -> None:
        fwd = forwarder(upstream, clock, queue_size=1)
        fwd.check_room()
        fwd.consume(batch(points=2))
        with pytest.raises(RetryableError):
            fwd.check_room()
        fwd.consume(batch(points=3))  # no room: counted, not queued
        assert fwd.queue_length == 1
        assert sum(fwd.dropped().values()) == 3
        await fwd.start()
        await until(lambda: fwd.counters.forwarded == 2)
        fwd.check_room()
        await fwd.shutdown(1.0)

    run(go)
    assert upstream.points() == 2
