"""Issue 17, findings 12-14: what one client could do to everyone's /metrics, and what it was
not told. A real gateway; the exposition is checked with `promtool check metrics`."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from tests.support.otlp import Req
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    config = (
        "observers: {enabled: false}\n"
        "prometheus: {resource_to_labels: [region]}\n"
        "cardinality: {max_series_per_stream: 2, max_tracked_overflow_series: 1}\n"
    )
    with run_gateway(tmp_path, config=config) as process:
        yield process


def send(gw: GatewayProcess, req: Req) -> ExportMetricsServiceResponse:
    r = httpx.post(gw.otlp_http, content=req.bytes(), headers=PROTOBUF, timeout=10)
    assert r.status_code == 200, r.text
    return ExportMetricsServiceResponse.FromString(r.content)


def promtool_check(text: str) -> None:
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "error" in line.lower() or "duplicate" in line.lower()
    ]
    assert not problems, problems


def test_a_client_metric_named_like_a_self_metric(gw: GatewayProcess) -> None:
    """Finding 12: a client metric `coderunner.gateway.points.received` gave duplicate
    HELP/TYPE lines (promtool and OpenMetrics parsers failed), and let any client fake the
    gateway's own figures. Now: from the gateway's own job and instance, or with another type,
    it is refused; from another resource its series join the family under one HELP/TYPE."""
    name = "coderunner.gateway.points.received"
    send(gw, Req(service="good").gauge("g", [({}, 1.0, 1)]))  # the self-metric has points now
    own = f"{socket.gethostname()}:{gw.http_port}"
    fake = send(gw, Req(service="telemetry-gateway", instance=own).sum(name, [({}, 1e9, 0, 1)]))
    assert fake.partial_success.rejected_data_points == 1
    assert "reserved for the gateway's own metrics" in fake.partial_success.error_message
    other_type = send(gw, Req(service="evil").gauge(name + ".total", [({}, 5.0, 1)]))
    assert other_type.partial_success.rejected_data_points == 1
    peer = send(gw, Req(service="telemetry-gateway", instance="peer-1").sum(name, [({}, 7, 0, 1)]))
    assert peer.partial_success.rejected_data_points == 0
    for accept in ("text/plain", "application/openmetrics-text; version=1.0.0"):
        text = httpx.get(gw.url + "/metrics", headers={"Accept": accept}).text
        assert text.count("# TYPE coderunner_gateway_points_received") == 1, accept
        assert 'instance="peer-1"' in text and "1e+09" not in text and "1000000000" not in text
    promtool_check(httpx.get(gw.url + "/metrics").text)


def test_a_point_attribute_named_like_a_copied_resource_attribute_is_merged(
    gw: GatewayProcess,
) -> None:
    """Finding 13: `resource_to_labels` plus a point attribute of the same name repeated the
    label name, and the whole /metrics became unparsable. The compatibility spec's rule for
    colliding label names: one label, the values joined with `;`."""
    send(gw, Req(service="svc", region="eu").gauge("temp", [({"region": "b-local"}, 3.0, 1)]))
    text = httpx.get(gw.url + "/metrics").text
    lines = [line for line in text.splitlines() if line.startswith("temp{")]
    assert len(lines) == 1 and 'region="b-local;eu"' in lines[0], lines
    promtool_check(text)


def test_points_dropped_at_the_cardinality_limit_are_reported(gw: GatewayProcess) -> None:
    """Finding 14: points dropped (not folded into the overflow series) at the cardinality
    limit were answered 200 without partial_success. Folded points are accepted."""
    folded = send(gw, Req(service="card").gauge("g", [({"i": i}, 1.0, 1) for i in range(3)]))
    assert folded.partial_success.rejected_data_points == 0  # two series, one folded
    dropped = send(gw, Req(service="card").gauge("g", [({"i": i}, 1.0, 2) for i in range(5)]))
    # i=0,1 held, i=2 tracked in the overflow series, i=3,4 beyond max_tracked_overflow_series
    assert dropped.partial_success.rejected_data_points == 2
    assert "cardinality limit" in dropped.partial_success.error_message
