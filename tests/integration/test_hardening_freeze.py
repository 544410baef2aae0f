"""Issue 17, findings 1-5: requests, headers and connections that froze the gateway or grew its
memory without bound. Each test attacks a real `telemetry-gateway run` and checks that `/live`
keeps answering within a second while the attack runs, and that the attack is refused or
bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from tests.support.hostile import LiveProbe
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Starts gateways with a config; all stopped at the end."""
    import contextlib

    with contextlib.ExitStack() as stack:

        def start(config: str = "", **kwargs: object) -> GatewayProcess:
            cfg = "observers: {enabled: false}\n" + config
            return stack.enter_context(run_gateway(tmp_path, config=cfg, **kwargs))  # type: ignore[arg-type]

        yield start


def _many_scopes(service: str, first: int, count: int) -> bytes:
    """One resource, `count` scopes named s<first>..., each with one gauge point."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    for i in range(first, first + count):
        sm = rm.scope_metrics.add()
        sm.scope.name = f"s{i}"
        m = sm.metrics.add()
        m.name = "attack.gauge"
        p = m.gauge.data_points.add()
        p.as_double = 1.0
        p.time_unix_nano = 1_700_000_000_000_000_000
    return req.SerializeToString()


def test_many_streams_of_one_service_stay_linear(
    gateway: Callable[..., GatewayProcess],
) -> None:
    """Finding 1: 1,000 new streams per request in one service and one family. The per-service
    recount and the name-conflict scan were quadratic in the family's streams: by 12-16k
    streams a request took seconds, then the gateway stopped answering."""
    gw = gateway()
    with LiveProbe(gw) as probe, httpx.Client(timeout=10.0) as client:
        for k in range(16):
            started = time.monotonic()
            r = client.post(
                gw.otlp_http, content=_many_scopes("svc", k * 1000, 1000), headers=PROTOBUF
            )
            took = time.monotonic() - started
            assert r.status_code == 200, r.text
            assert took < 5.0, f"request {k} took {took:.2f}s"
    assert probe.failures == 0
    assert probe.worst < 1.0, f"/live took {probe.worst:.2f}s"
    text = httpx.get(gw.url + "/metrics", timeout=30).text
    assert text.count("attack_gauge{") == 16_000


EMPTY_RESOURCES = b"\x0a\x00" * 1_000_000  # 2 MB: a million empty ResourceMetrics


def test_empty_containers_are_refused_before_parsing(
    gateway: Callable[..., GatewayProcess],
) -> None:
    """Finding 2: a body of empty ResourceMetrics cost ~70 bytes of memory per 2 bytes sent
    and a walk that blocked the event loop (20 MiB: 792 MB, 33 s, `/live` silent for 30 s).
    Now the container limits are counted on the wire and the request is refused at once, over
    both transports."""
    import grpc

    gw = gateway()
    channel = grpc.insecure_channel(gw.grpc_target)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        request_serializer=None,
        response_deserializer=None,
    )
    with LiveProbe(gw) as probe, httpx.Client(timeout=30.0) as client:
        for _ in range(3):
            r = client.post(gw.otlp_http, content=EMPTY_RESOURCES, headers=PROTOBUF)
            assert r.status_code == 400
            assert "limits.max_resources_per_request" in r.text
            with pytest.raises(grpc.RpcError) as info:
                export(EMPTY_RESOURCES, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "max_resources_per_request" in (info.value.details() or "")
    channel.close()
    assert probe.failures == 0
    assert probe.worst < 1.0, f"/live took {probe.worst:.2f}s"


def test_long_attribute_keys_are_refused(gateway: Callable[..., GatewayProcess]) -> None:
    """Finding 5: keys were never shortened nor refused below 4,096 characters; 128 keys of
    4,096 characters per point grew RSS to 1.2 GB from ~2,000 series."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )

    from tests.support.otlp import Req

    gw = gateway()
    attrs = {f"{i:04d}" + "k" * 4092: "v" for i in range(128)}
    req = Req(service="keys").gauge("long.keys", [(attrs, 1.0, 1)]).gauge("ok", [({}, 2.0, 1)])
    r = httpx.post(gw.otlp_http, content=req.bytes(), headers=PROTOBUF, timeout=30)
    assert r.status_code == 200
    answer = ExportMetricsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_data_points == 1
    assert "limits.max_attribute_key_length" in answer.partial_success.error_message
    text = httpx.get(gw.url + "/metrics", timeout=30).text
    assert "long_keys" not in text
    assert 'ok{job="keys"' in text
