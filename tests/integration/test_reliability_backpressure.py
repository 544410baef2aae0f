"""Backpressure against a real gateway: the memory limiter and the full disk queue answer
"retry later" (HTTP 503 + Retry-After; gRPC UNAVAILABLE with RetryInfo) and the gateway keeps
serving; the drop_oldest policy keeps accepting and counts what it dropped. Input limits answer
with a message."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from tests.support.fault_stream import Recorder, recorder, request_body
from tests.support.gateway_client import PB, self_metric
from tests.support.gateway_config import NO_OBSERVERS
from tests.support.otlp import Req
from tests.support.servers import GatewayProcess, run_gateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def grpc_export(gw: GatewayProcess, body: bytes) -> grpc.RpcError | ExportMetricsServiceResponse:
    with grpc.insecure_channel(gw.grpc_target) as channel:
        call = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportMetricsServiceResponse.FromString,
        )
        try:
            reply: ExportMetricsServiceResponse = call(body, timeout=10)
            return reply
        except grpc.RpcError as exc:
            return exc


def test_memory_limiter_refuses_with_retry_after_and_stays_up(tmp_path: Path) -> None:
    # A soft limit below what the process needs at idle: every export is refused.
    config = NO_OBSERVERS + (
        "memory_limiter: {soft_limit_bytes: 10485760, hard_limit_bytes: 20971520,"
        " retry_after_seconds: 3}\n"
    )
    with run_gateway(tmp_path, config=config) as gw:
        time.sleep(0.3)  # one sample
        body = Req().sum("c", [({}, 1, 0, 1)]).bytes()
        r = httpx.post(gw.otlp_http, content=body, headers=PB)
        assert r.status_code == 503 and r.headers["Retry-After"] == "3"
        status = status_pb2.Status.FromString(r.content)
        assert "memory limit" in status.message
        error = grpc_export(gw, body)
        assert isinstance(error, grpc.RpcError)
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        trailers = dict(error.trailing_metadata())  # type: ignore[attr-defined]
        info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
        assert info.retry_delay.seconds == 3
        # Still serving: metrics, health.
        assert httpx.get(gw.url + "/metrics").status_code == 200
        assert (
            self_metric(gw, "coderunner_gateway_requests_refused_total", reason="unavailable") == 2
        )
        assert gw.proc.poll() is None
        # Refusing ingest is not ready (so Kubernetes routes elsewhere); still live.
        deadline = time.monotonic() + 12  # the check runs every 5 s
        ready = httpx.get(gw.url + "/ready")
        while ready.status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
            ready = httpx.get(gw.url + "/ready")
        assert ready.status_code == 503
        assert httpx.get(gw.url + "/live").status_code == 200


def _disk_config(upstream: Recorder, path: Path, max_bytes: int, policy: str) -> str:
    return NO_OBSERVERS + (
        f"forwarder: {{endpoint: '{upstream.url}', initial_backoff_seconds: 0.05,"
        f" max_backoff_seconds: 0.2, max_elapsed_seconds: 0}}\n"
        f"queue: {{kind: disk, path: '{path}', max_bytes: {max_bytes},"
        f" full_policy: {policy}, retry_after_seconds: 2}}\n"
    )


def test_full_disk_queue_refuses_then_recovers(tmp_path: Path) -> None:
    with recorder() as upstream:
        upstream.stop()
        config = _disk_config(upstream, tmp_path / "q.db", 20_000, "refuse")
        with run_gateway(tmp_path, config=config) as gw:
            statuses = []
            for i in range(40):  # ~2.6 kB each: the queue fills after a handful
                r = httpx.post(gw.otlp_http, content=request_body(i), headers=PB)
                statuses.append(r.status_code)
                if r.status_code == 503:
                    assert r.headers["Retry-After"] == "2"
            assert 200 in statuses and 503 in statuses
            first_refused = statuses.index(503)
            assert set(statuses[first_refused:]) == {503}, statuses
            error = grpc_export(gw, request_body(99))
            assert isinstance(error, grpc.RpcError)
            assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            accepted = statuses.count(200)
            # The upstream comes back: the queue drains and ingest is accepted again.
            upstream.start()
            wanted = set(range(accepted * 50))
            eventually(lambda: not upstream.missing(wanted), 20, "queue did not drain")
            eventually(
                lambda: (
                    httpx.post(gw.otlp_http, content=request_body(100), headers=PB).status_code
                    == 200
                ),
                10,
                "still refusing after the queue drained",
            )


def test_drop_oldest_keeps_accepting_and_counts(tmp_path: Path) -> None:
    with recorder() as upstream:
        upstream.stop()
        config = _disk_config(upstream, tmp_path / "q.db", 20_000, "drop_oldest")
        with run_gateway(tmp_path, config=config) as gw:
            for i in range(40):
                r = httpx.post(gw.otlp_http, content=request_body(i), headers=PB)
                assert r.status_code == 200
            dropped = self_metric(
                gw, "coderunner_gateway_points_dropped_total", reason="queue_full_oldest"
            )
            assert dropped >= 50  # at least one of the test's requests (health points go too)
            upstream.start()
            # The newest request survived; the oldest (but the one being sent) did not.
            eventually(lambda: not upstream.missing(set(range(39 * 50, 40 * 50))), 20, "newest")
            assert upstream.missing(set(range(5 * 50, 6 * 50)))


def test_input_limits_answer_with_a_message(tmp_path: Path) -> None:
    config = NO_OBSERVERS + (
        "limits: {max_points_per_request: 10, max_attributes_per_point: 2,"
        " max_attribute_value_length: 64}\n"
    )
    with run_gateway(tmp_path, config=config) as gw:
        too_many = Req().sum("c", [({"i": i}, 1, 0, 1) for i in range(11)]).bytes()
        r = httpx.post(gw.otlp_http, content=too_many, headers=PB)
        assert r.status_code == 400
        assert "limits.max_points_per_request" in status_pb2.Status.FromString(r.content).message
        error = grpc_export(gw, too_many)
        assert isinstance(error, grpc.RpcError)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        mixed = (
            Req()
            .sum("c", [({"a": "1"}, 1, 0, 1), ({"a": "1", "b": "2", "c": "3"}, 1, 0, 1)])
            .gauge("g", [({"long": "x" * 65}, 1.0, 1)])
            .gauge("bad name", [({}, 1.0, 1)])
            .bytes()
        )
        for reply in (
            ExportMetricsServiceResponse.FromString(
                httpx.post(gw.otlp_http, content=mixed, headers=PB).content
            ),
            grpc_export(gw, mixed),
        ):
            assert isinstance(reply, ExportMetricsServiceResponse)
            assert reply.partial_success.rejected_data_points == 3
            message = reply.partial_success.error_message
            assert "max_attributes_per_point" in message
            assert "max_attribute_value_length" in message
            assert "invalid name" in message


def test_inflight_budget_refuses_while_big_uploads_are_in_progress(tmp_path: Path) -> None:
    config = NO_OBSERVERS + "limits: {max_inflight_bytes: 1000000}\n"
    big = Req().gauge("big", [({"i": i, "pad": "x" * 500}, 1.0, 1) for i in range(1500)]).bytes()
    small = Req().gauge("small", [({"pad": "y" * 500}, 1.0, 1) for _ in range(800)]).bytes()
    assert 700_000 < len(big) < 1_000_000 and 300_000 < len(small) < 600_000
    with run_gateway(tmp_path, config=config) as gw:
        # A slow client: headers and all but the last 10 kB of a big body, then a pause.
        slow = socket.create_connection(("127.0.0.1", gw.http_port))
        head = (
            f"POST /v1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-protobuf\r\nContent-Length: {len(big)}\r\n\r\n"
        ).encode()
        slow.sendall(head + big[:-10_000])
        time.sleep(0.5)
        r = httpx.post(gw.otlp_http, content=small, headers=PB)
        assert r.status_code == 503, r.content
        assert r.headers["Retry-After"] == "1"
        assert "limits.max_inflight_bytes" in status_pb2.Status.FromString(r.content).message
        slow.sendall(big[-10_000:])
        reply = slow.recv(65536)
        slow.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        # The slow request is done: its bytes are released.
        assert httpx.post(gw.otlp_http, content=small, headers=PB).status_code == 200
