"""The OTLP/HTTP receiver in-process: its handler mounted in a Starlette app and called through
httpx's ASGI transport (no socket, no server), the pipeline a ListConsumer."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.config import ForwarderConfig, LimitsConfig
from gateway.errors import RetryableError
from gateway.exporters.disk_queue import DiskQueue
from gateway.exporters.otlp_forwarder import OtlpForwarder
from gateway.exporters.queue import MemoryQueue
from gateway.pipeline.batch import MetricsBatch
from gateway.receivers.auth import TokenAuth
from gateway.receivers.limits import InputLimits
from gateway.receivers.otlp_http import OtlpHttpReceiver
from gateway.receivers.status import grpc_code
from gateway.selftelemetry import SelfTelemetry
from tests.support.fakes import ListConsumer
from tests.support.gateway_client import PB
from tests.support.otlp import Req

JSON = {"Content-Type": "application/json"}


def receiver(consumer: ListConsumer, **options: Any) -> tuple[OtlpHttpReceiver, SelfTelemetry]:
    telemetry = SelfTelemetry({"service.name": "gw"}, namespace="t", wall_clock=lambda: 1.0)
    options.setdefault("max_body_bytes", 1 << 20)
    return OtlpHttpReceiver(consumer, telemetry, **options), telemetry


def post(receiver: OtlpHttpReceiver, content: bytes, headers: dict[str, str]) -> httpx.Response:
    app = Starlette(routes=[Route("/v1/metrics", receiver.handle, methods=["POST"])])

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            return await client.post("/v1/metrics", content=content, headers=headers)

    return asyncio.run(go())


def request(points: int = 2, service: str = "svc") -> Req:
    return Req(service=service).sum("c", [({"i": i}, float(i), 0, 1) for i in range(points)])


def received_points(consumer: ListConsumer) -> int:
    return sum(
        len(getattr(m, m.WhichOneof("data")).data_points)
        for b in consumer.batches
        for rm in b.request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )


def test_protobuf_is_accepted_and_handed_to_the_pipeline() -> None:
    consumer = ListConsumer()
    rx, telemetry = receiver(consumer)
    r = post(rx, request(points=3).bytes(), PB)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-protobuf"
    answer = ExportMetricsServiceResponse.FromString(r.content)
    assert not answer.HasField("partial_success")
    assert received_points(consumer) == 3
    assert consumer.batches[0].source == "http"
    assert telemetry.received == {"http": 3}


def test_json_in_json_out_and_gzip_is_inflated() -> None:
    consumer = ListConsumer()
    rx, _ = receiver(consumer)
    body = json_format.MessageToJson(request(points=2).request).encode()
    r = post(rx, gzip.compress(body), {**JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert received_points(consumer) == 2


def test_bad_input_gets_a_status_body_and_the_pipeline_nothing() -> None:
    cases: Sequence[tuple[bytes, dict[str, str], int]] = [
        (b"\xff\xff not protobuf", PB, 400),
        (b"{not json", JSON, 400),
        (request().bytes(), {"Content-Type": "text/plain"}, 415),
        (b"x" * 2048, PB, 413),
        (b"not gzip", {**PB, "Content-Encoding": "gzip"}, 400),
    ]
    for content, headers, status in cases:
        consumer = ListConsumer()
        rx, telemetry = receiver(consumer, max_body_bytes=1024)
        r = post(rx, content, headers)
        assert r.status_code == status, (headers, r.status_code, r.content[:200])
        # A google.rpc.Status in the request's encoding, saying what was wrong.
        if headers["Content-Type"] == JSON["Content-Type"]:
            status_body = json_format.Parse(r.content, RpcStatus())
        else:
            status_body = RpcStatus.FromString(r.content)
        assert status_body.message, r.content
        assert consumer.batches == []
        assert sum(telemetry.refused.values()) == 1


def test_a_body_that_inflates_past_the_limit_is_refused() -> None:
    consumer = ListConsumer()
    rx, _ = receiver(consumer, max_body_bytes=4096)
    bomb = gzip.compress(b"\0" * 1_000_000)
    assert len(bomb) < 4096
    r = post(rx, bomb, {**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert consumer.batches == []


def test_without_a_valid_token_401_and_a_challenge() -> None:
    consumer = ListConsumer()
    rx, _ = receiver(consumer, auth=TokenAuth({"acme": ["s3cret"]}))
    r = post(rx, request().bytes(), PB)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = post(rx, request().bytes(), {**PB, "Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert consumer.batches == []
    r = post(rx, request().bytes(), {**PB, "Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    assert consumer.batches[0].tenant == "acme"


def test_an_admission_check_refuses_with_retry_after_before_the_body_is_read() -> None:
    def full() -> None:
        raise RetryableError("queue full; retry later", retry_after_seconds=7.0)

    consumer = ListConsumer()
    rx, _ = receiver(consumer, admission=[full])
    r = post(rx, b"never decoded", PB)
    assert r.status_code in (429, 503)
    assert r.headers["retry-after"] == "7"
    assert consumer.batches == []


def _refused_by_the_forward_queue(forwarder: OtlpForwarder) -> tuple[httpx.Response, str]:
    """Post with the forwarder's queue check as admission (as app.py wires it): the answer and
    the reason the refusal was counted under."""
    consumer = ListConsumer()
    rx, telemetry = receiver(consumer, admission=[forwarder.check_room])
    r = post(rx, request().bytes(), PB)
    assert consumer.batches == []
    ((transport, reason),) = telemetry.refused
    assert transport == "http"
    return r, reason


def test_a_disk_queue_that_cannot_write_is_refused_under_its_own_reason(tmp_path: Path) -> None:
    """A disk queue that could not write (EIO, ENOSPC, EROFS) answered 503 counted as
    `unavailable`, like a full queue or memory pressure: load and a broken disk looked alike."""
    queue = DiskQueue(tmp_path / "q.db", max_bytes=1 << 20)
    config = ForwarderConfig(endpoint="http://127.0.0.1:9")
    forwarder = OtlpForwarder(config, queue, full_retry_after_seconds=3.0)
    try:
        queue._db.execute("PRAGMA query_only=1")  # every write fails, as on a read-only disk
        forwarder.consume(MetricsBatch(request(points=2).request))  # the write that fails
        r, reason = _refused_by_the_forward_queue(forwarder)
    finally:
        queue.close()
    assert forwarder.dropped() == {"queue_write_error": 2}
    assert (r.status_code, r.headers["retry-after"]) == (503, "3")
    message = RpcStatus.FromString(r.content).message
    assert message.startswith("forward queue cannot write (") and "readonly" in message
    assert reason == "queue_write_error"
    with pytest.raises(RetryableError) as refusal:
        forwarder.check_room()
    assert grpc_code(refusal.value).name == "UNAVAILABLE"  # retried by gRPC clients too


def test_a_full_forward_queue_is_still_refused_as_unavailable() -> None:
    forwarder = OtlpForwarder(ForwarderConfig(endpoint="http://127.0.0.1:9"), MemoryQueue(1))
    forwarder.consume(MetricsBatch(request().request))
    r, reason = _refused_by_the_forward_queue(forwarder)
    assert r.status_code == 503
    assert RpcStatus.FromString(r.content).message.startswith("forward queue is full")
    assert reason == "unavailable"


def test_a_resource_over_the_input_limits_comes_back_as_partial_success() -> None:
    # The receiver applies the limits on resources and scopes (points' own attributes are the
    # store's to check): the bad resource's points are refused, the good one's go on.
    consumer = ListConsumer()
    limits = InputLimits(LimitsConfig(max_attribute_value_length=24))
    rx, _ = receiver(consumer, limits=limits)
    both = ExportMetricsServiceRequest()
    both.MergeFrom(request(points=2, service="ok").request)
    both.MergeFrom(request(points=3, service="x" * 40).request)
    r = post(rx, both.SerializeToString(), PB)
    assert r.status_code == 200, r.content
    answer = ExportMetricsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_data_points == 3
    assert "max_attribute_value_length" in answer.partial_success.error_message
    assert received_points(consumer) == 2


def test_requests_in_progress_are_bounded_by_the_inflight_budget() -> None:
    consumer = ListConsumer()
    rx, _ = receiver(consumer, max_inflight_bytes=300)
    r = post(rx, request(points=20).bytes(), PB)  # 662 bytes
    assert r.status_code == 503
    assert "retry-after" in r.headers
    # The refused request released what it held: a small one still fits.
    r = post(rx, request(points=1).bytes(), PB)  # 107 bytes
    assert r.status_code == 200, r.content
    assert received_points(consumer) == 1
