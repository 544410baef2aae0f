"""The gateway-wide series cap (`cardinality.max_series_total`): an attack with many distinct
`service.name` values, each within every per-stream and per-service limit, keeps the gateway's
series and its RSS bounded; points past the cap are refused (partial_success), counted in
`gateway.points.capped`, and series already held keep updating.

The RSS bound is checked against a peer in the same test: the same attack on a gateway without
the cap grows by several times more."""

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
from tests.support.gateway_client import PB
from tests.support.gateway_config import QUIET
from tests.support.promtext import parse
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

CAP = 2_000
PER_REQUEST = 500  # services per request, one point each
FIRST = 4_000  # services before the RSS baseline (the cap is reached on the way)
ATTACK = 40_000  # more services after it


def _config(cap: int) -> str:
    return f"{QUIET}views: []\ncardinality:\n  max_series_total: {cap}\n"


def _body(first: int, t: int = 2) -> bytes:
    """PER_REQUEST resources, service.name `svc-<n>` for n from `first`, each one gauge point
    of value n * t."""
    request = ExportMetricsServiceRequest()
    for n in range(first, first + PER_REQUEST):
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="service.name").value.string_value = f"svc-{n}"
        m = rm.scope_metrics.add().metrics.add()
        m.name = "queue.depth"
        p = m.gauge.data_points.add()
        p.time_unix_nano, p.as_double = t * 1_000_000_000, float(n * t)
        p.attributes.add(key="queue").value.string_value = "main"
    return request.SerializeToString()


def _push(client: httpx.Client, gw: GatewayProcess, first: int, t: int = 2) -> int:
    """Pushes one body; returns the points the gateway refused."""
    r = client.post(gw.otlp_http, content=_body(first, t), headers=PB)
    assert r.status_code == 200, r.content
    return ExportMetricsServiceResponse.FromString(r.content).partial_success.rejected_data_points


def _rss(gw: GatewayProcess) -> int:
    rss: int = psutil.Process(gw.proc.pid).memory_info().rss
    return rss


def _attack(tmp_path: Path, cap: int) -> tuple[int, int]:
    """RSS growth over ATTACK services after FIRST, and the points refused on the way."""
    refused = 0
    with (
        run_gateway(tmp_path, config=_config(cap), grpc=False) as gw,
        httpx.Client(timeout=60) as client,
    ):
        for first in range(0, FIRST, PER_REQUEST):
            refused += _push(client, gw, first)
        before = _rss(gw)
        for first in range(FIRST, FIRST + ATTACK, PER_REQUEST):
            refused += _push(client, gw, first)
        growth = _rss(gw) - before
        if cap:
            _check_capped_gateway(client, gw, refused)
    return growth, refused


def _check_capped_gateway(client: httpx.Client, gw: GatewayProcess, refused: int) -> None:
    own = parse(client.get(gw.url + "/metrics/self").text)
    assert own.value(by_name("gateway.active_series").prometheus_name()) == CAP
    assert own.value(by_name("gateway.series.limit").prometheus_name()) == CAP
    assert own.value(by_name("gateway.points.capped").prometheus_name()) == refused
    shown = parse(client.get(gw.url + "/metrics").text).all("queue_depth")
    # QUIET: no health checks or observers, so the services' series fill the whole cap.
    assert len(shown) == CAP
    assert refused == FIRST + ATTACK - len(shown)
    # Series already held keep updating at the cap.
    assert _push(client, gw, 0, t=3) == 0
    shown = parse(client.get(gw.url + "/metrics").text)
    assert shown.value("queue_depth", job="svc-1") == 3.0
    assert _push(client, gw, FIRST, t=3) == PER_REQUEST


def test_many_services_keep_series_and_rss_bounded_at_the_cap(tmp_path: Path) -> None:
    capped, _ = _attack(tmp_path, CAP)
    uncapped, none_refused = _attack(tmp_path, 0)
    mib = 1024 * 1024
    print(f"RSS growth over {ATTACK} services: {capped / mib:.1f} MiB capped, "
          f"{uncapped / mib:.1f} MiB without the cap")  # fmt: skip
    assert none_refused == 0
    assert uncapped > 40 * mib, "the peer without a cap should grow: the attack is too small"
    assert capped < 8 * mib
    assert capped < uncapped / 5
