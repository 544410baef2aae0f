"""Bodies padded with empty nested messages (attributes, exemplars, array values): two bytes on
the wire each, 50-90 bytes once protobuf has parsed them, so a 19 MiB body took 530-910 MiB
to parse. `limits.max_decoded_bytes` bounds that before parsing: each test attacks a real
`telemetry-gateway run` over HTTP and gRPC, checks the refusal and how high the gateway's
peak RSS went, and that a realistic body of the same size and other clients' data still go
through.

To see the RSS assertion fail without the bound: GATEWAY_TEST_DECODED_LIMIT=0 (the limit
turned off) makes the padded bodies parse, and the peak rises by hundreds of MB.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from tests.support.hostile import LiveProbe, padded_body, peak_rss, reset_peak_rss
from tests.support.otlp import Req
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

PROTOBUF = {"Content-Type": "application/x-protobuf"}
MiB = 1024 * 1024
#: under the default limits.max_body_bytes (20 MiB), so only the new limit can refuse it
SIZE = 19 * MiB
#: what the gateway may add while refusing one: the body (as chunks, joined, and grpc's own
#: copy) and the scan's bytes that look like tags: 47 MiB measured; parsing them took 530-910 MiB
REFUSAL_PEAK = 100 * MiB

_LIMIT = os.environ.get("GATEWAY_TEST_DECODED_LIMIT")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    with contextlib.ExitStack() as stack:

        def start(config: str = "") -> GatewayProcess:
            cfg = "observers: {enabled: false}\n" + config
            if _LIMIT is not None:
                cfg += f"limits: {{max_decoded_bytes: {_LIMIT}}}\n"
            return stack.enter_context(run_gateway(tmp_path, config=cfg))

        yield start


def _export(gw: GatewayProcess) -> Callable[..., bytes]:
    channel = grpc.insecure_channel(
        gw.grpc_target, options=[("grpc.max_send_message_length", 32 * MiB)]
    )
    return channel.unary_unary(  # type: ignore[no-any-return]
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        request_serializer=None,
        response_deserializer=None,
    )


def _scrape(gw: GatewayProcess) -> str:
    return httpx.get(gw.url + "/metrics", timeout=30).text


@pytest.mark.parametrize("kind", ["attributes", "exemplars", "array values"])
def test_padded_bodies_are_refused_before_parsing(
    gateway: Callable[..., GatewayProcess], kind: str
) -> None:
    gw = gateway()
    body = padded_body(kind, SIZE)
    assert len(body) <= 20 * MiB
    before = Req(service="bystander").gauge("bystander.before", [({}, 1.0, 1)]).bytes()
    assert httpx.post(gw.otlp_http, content=before, headers=PROTOBUF).status_code == 200
    export = _export(gw)
    with LiveProbe(gw) as probe, httpx.Client(timeout=60.0) as client:
        base = reset_peak_rss(gw)
        r = client.post(gw.otlp_http, content=body, headers=PROTOBUF)
        http_peak = peak_rss(gw) - base
        assert http_peak < REFUSAL_PEAK, f"HTTP: peak RSS rose {http_peak / MiB:.0f} MiB"
        assert r.status_code == 413, r.content[:300]
        message = status_pb2.Status.FromString(r.content).message
        assert "limits.max_decoded_bytes" in message
        base = reset_peak_rss(gw)
        with pytest.raises(grpc.RpcError) as info:
            export(body, timeout=60)
        grpc_peak = peak_rss(gw) - base
        assert grpc_peak < REFUSAL_PEAK, f"gRPC: peak RSS rose {grpc_peak / MiB:.0f} MiB"
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limits.max_decoded_bytes" in (info.value.details() or "")
    assert probe.failures == 0
    # The other client's data is intact, and new data still goes in.
    after = Req(service="bystander").gauge("bystander.after", [({}, 2.0, 2)]).bytes()
    assert httpx.post(gw.otlp_http, content=after, headers=PROTOBUF).status_code == 200
    text = _scrape(gw)
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("bystander_")
    }
    assert samples == {
        'bystander_before{job="bystander",instance="i-1",otel_scope_name="test"}': 1.0,
        'bystander_after{job="bystander",instance="i-1",otel_scope_name="test"}': 2.0,
    }
    refused = [
        line
        for line in text.splitlines()
        if line.startswith("coderunner_gateway_requests_refused_total")
        and 'reason="too_large"' in line
    ]
    assert refused and sum(float(line.rsplit(" ", 1)[1]) for line in refused) == 2


def test_a_realistic_body_of_the_same_size_goes_through(
    gateway: Callable[..., GatewayProcess],
) -> None:
    """bench/ingest.py's service mix (the instrumentation package's exports), 17 MiB in one
    request: its bound (~10x its size) is under the default limit, over both transports."""
    from bench.ingest import service_bodies

    body = b"".join(service_bodies())
    assert 16 * MiB < len(body) <= 20 * MiB
    gw = gateway()
    r = httpx.post(gw.otlp_http, content=body, headers=PROTOBUF, timeout=60)
    assert r.status_code == 200, r.content[:300]
    answer = ExportMetricsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_data_points == 0
    reply = ExportMetricsServiceResponse.FromString(_export(gw)(body, timeout=60))
    assert reply.partial_success.rejected_data_points == 0
    text = _scrape(gw)
    assert "coderunner_api_duration_seconds_bucket{" in text
    instances = [
        line
        for line in text.splitlines()
        if line.startswith("target_info{") and "instance-" in line
    ]
    assert len(instances) == 10  # every instance's resource


def test_a_leading_group_does_not_carry_containers_past_the_scan(
    gateway: Callable[..., GatewayProcess],
) -> None:
    """protobuf's parser keeps a group (wire type 3) as an unknown field and parses on, so
    `13 14` before a million empty resources took them past the container scan (which gave
    the body up as unreadable). Now the group is refused, over both transports."""
    body = b"\x13\x14" + b"\x0a\x00" * 1_000_000
    gw = gateway()
    base = reset_peak_rss(gw)
    r = httpx.post(gw.otlp_http, content=body, headers=PROTOBUF, timeout=60)
    assert r.status_code == 400, r.content[:300]
    assert "group" in status_pb2.Status.FromString(r.content).message
    with pytest.raises(grpc.RpcError) as info:
        _export(gw)(body, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "group" in (info.value.details() or "")
    assert peak_rss(gw) - base < REFUSAL_PEAK
