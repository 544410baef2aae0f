"""A client that names a new instrumentation scope in every request, with metrics that make no
series (a counter whose points are all refused, a metric without points), leaves a real
gateway's RSS where it was: the store keeps a scope only while it has a series. Every refused
point is still reported (partial_success) and counted (`gateway.points.rejected`).

The RSS bound is checked against a peer in the same test: the same scopes with one valid point
each (a series each, which the gateway must hold) grow the process by several times more, so
the measurement would see the scopes if they were kept. No scrape of /metrics runs during the
attack: expiry runs on scrapes, and the bound must hold without one."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from gateway.catalogue import by_name
from tests.support.promtext import parse
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

PER_REQUEST = 500  # new scopes per request
FIRST = 4_000  # scopes before the RSS baseline
ATTACK = 40_000  # more scopes after it
PB = {"Content-Type": "application/x-protobuf"}
CONFIG = """\
observers: {enabled: false}
views: []
health:
  upstream: {enabled: false}
  pipeline: {enabled: false}
  system: {enabled: false}
"""


def _body(first: int, valid: bool) -> bytes:
    """One resource, PER_REQUEST scopes `attack-<n>` for n from `first`, each a counter with
    one point (-1, refused: a monotonic sum cannot go negative; or 1 when `valid`) and a gauge
    without points."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "flood"
    for n in range(first, first + PER_REQUEST):
        sm = rm.scope_metrics.add()
        sm.scope.name = f"attack-{n}"
        m = sm.metrics.add()
        m.name = "attack.count"
        m.sum.is_monotonic = True
        m.sum.aggregation_temporality = 2  # cumulative
        p = m.sum.data_points.add()
        p.time_unix_nano, p.as_int = 2_000_000_000, 1 if valid else -1
        sm.metrics.add(name="attack.idle").gauge.SetInParent()
    return request.SerializeToString()


def _rss(gw: GatewayProcess) -> int:
    rss: int = psutil.Process(gw.proc.pid).memory_info().rss
    return rss


def _flood(tmp_path: Path, valid: bool) -> tuple[int, int]:
    """RSS growth over ATTACK new scopes after FIRST, and the points refused over all."""
    refused = 0
    with run_gateway(tmp_path, config=CONFIG, grpc=False) as gw, httpx.Client(timeout=60) as c:

        def push(first: int) -> int:
            r = c.post(gw.otlp_http, content=_body(first, valid), headers=PB)
            assert r.status_code == 200, r.content
            response = ExportMetricsServiceResponse.FromString(r.content)
            return response.partial_success.rejected_data_points

        for first in range(0, FIRST, PER_REQUEST):
            refused += push(first)
        before = _rss(gw)
        for first in range(FIRST, FIRST + ATTACK, PER_REQUEST):
            refused += push(first)
        growth = _rss(gw) - before
        if not valid:
            own = parse(c.get(gw.url + "/metrics/self").text)
            rejected = by_name("gateway.points.rejected").prometheus_name()
            assert own.value(rejected, reason="invalid_value") == refused
            assert "attack_count_total" not in parse(c.get(gw.url + "/metrics").text).names()
    return growth, refused


def test_new_scope_names_without_series_leave_rss_bounded(tmp_path: Path) -> None:
    flood, refused = _flood(tmp_path, valid=False)
    held, none_refused = _flood(tmp_path, valid=True)
    mib = 1024 * 1024
    print(f"RSS growth over {ATTACK} new scopes: {flood / mib:.1f} MiB without series, "
          f"{held / mib:.1f} MiB with one series each")  # fmt: skip
    assert refused == FIRST + ATTACK
    assert none_refused == 0
    assert held > 40 * mib, "the peer holding a series a scope should grow: attack too small"
    assert flood < 4 * mib  # under 105 bytes a scope
    assert flood < held / 8
