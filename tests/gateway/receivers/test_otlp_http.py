"""The OTLP/HTTP receiver in process: its Starlette handler behind `httpx.ASGITransport`, a
sink for a pipeline. Encodings, status codes and bodies as the OTLP/HTTP specification says;
the real listener's tests are in tests/integration."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable, Sequence

import httpx
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.errors import RetryableError
from gateway.pipeline.batch import MetricsBatch
from gateway.receivers.auth import TokenAuth
from gateway.receivers.otlp_http import OtlpHttpReceiver
from gateway.selftelemetry import SelfTelemetry
from tests.support.common import Sink
from tests.support.otlp import Req

PB = "application/x-protobuf"
REQ = Req().sum("c", [({"k": str(i)}, i, 0, 10) for i in range(3)])


def post(
    body: bytes,
    headers: dict[str, str],
    *,
    consumer: Sink | None = None,
    max_body_bytes: int = 1 << 20,
    admission: Sequence[Callable[[], None]] = (),
    auth: TokenAuth | None = None,
) -> httpx.Response:
    receiver = OtlpHttpReceiver(
        consumer or Sink(),
        SelfTelemetry({"service.name": "test"}, namespace="t"),
        max_body_bytes=max_body_bytes,
        admission=admission,
        auth=auth,
    )
    app = Starlette(routes=[Route("/v1/metrics", receiver.handle, methods=["POST"])])

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.post("/v1/metrics", content=body, headers=headers)

    return asyncio.run(send())


def test_protobuf_is_decoded_and_handed_to_the_pipeline() -> None:
    sink = Sink()
    r = post(REQ.bytes(), {"Content-Type": PB}, consumer=sink)
    assert r.status_code == 200 and r.headers["content-type"] == PB
    assert ExportMetricsServiceResponse.FromString(r.content) == ExportMetricsServiceResponse()
    (batch,) = sink.batches
    assert batch.request == REQ.request and batch.source == "http"


def test_json_is_answered_in_json_and_gzip_is_inflated() -> None:
    sink = Sink()
    body = gzip.compress(json_format.MessageToJson(REQ.request).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    r = post(body, headers, consumer=sink)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {}
    assert sink.batches[0].request == REQ.request


def test_points_the_pipeline_refuses_come_back_as_partial_success() -> None:
    class Refusing(Sink):
        def consume(self, batch: MetricsBatch) -> None:
            batch.reject(2, "invalid value: NaN")
            super().consume(batch)

    r = post(REQ.bytes(), {"Content-Type": PB}, consumer=Refusing())
    answer = ExportMetricsServiceResponse.FromString(r.content)
    assert r.status_code == 200
    assert answer.partial_success.rejected_data_points == 2
    assert answer.partial_success.error_message == "invalid value: NaN"


def _status(r: httpx.Response) -> status_pb2.Status:
    return status_pb2.Status.FromString(r.content)


def test_unsupported_type_too_large_and_undecodable_are_permanent_errors() -> None:
    sink = Sink()
    r = post(REQ.bytes(), {"Content-Type": "text/plain"}, consumer=sink)
    assert r.status_code == 415 and "Content-Type" in _status(r).message
    r = post(REQ.bytes(), {"Content-Type": PB}, consumer=sink, max_body_bytes=10)
    assert r.status_code == 413 and "limit of 10 bytes" in _status(r).message
    r = post(b"\xff\xff\xff", {"Content-Type": PB}, consumer=sink)
    assert r.status_code == 400
    assert sink.batches == []


def test_overload_is_retryable_with_retry_after_and_reads_no_body() -> None:
    def full() -> None:
        raise RetryableError("forward queue is full", retry_after_seconds=7)

    sink = Sink()
    r = post(REQ.bytes(), {"Content-Type": PB}, consumer=sink, admission=[full])
    assert r.status_code in (429, 503) and r.headers["retry-after"] == "7"
    assert _status(r).message == "forward queue is full"
    assert sink.batches == []


def test_without_a_valid_token_401_and_a_challenge() -> None:
    auth = TokenAuth({"team-a": ["s3cret-token-value"]})
    sink = Sink()
    r = post(REQ.bytes(), {"Content-Type": PB}, consumer=sink, auth=auth)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    headers = {"Content-Type": PB, "Authorization": "Bearer s3cret-token-value"}
    r = post(REQ.bytes(), headers, consumer=sink, auth=auth)
    assert r.status_code == 200 and sink.batches[0].tenant == "team-a"
    assert isinstance(sink.batches[0].request, ExportMetricsServiceRequest)
