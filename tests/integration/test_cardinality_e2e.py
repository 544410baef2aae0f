"""Cardinality limits in a real gateway configured from YAML: the overflow series on /metrics,
exact totals, cut label values, and the self-metrics that count them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from gateway.catalogue import by_name
from tests.support.gateway_client import PB
from tests.support.otlp import Req
from tests.support.promtext import parse
from tests.support.servers import run_gateway

pytestmark = pytest.mark.integration

CONFIG = """\
observers: {enabled: false}
health:
  upstream: {enabled: false}
  pipeline: {enabled: false}
  system: {enabled: false}
cardinality:
  max_series_per_stream: 3
  per_metric: {wide_total: 50}
  max_label_value_length: 16
"""


def test_overflow_and_truncation_through_a_real_gateway(tmp_path: Path) -> None:
    with run_gateway(tmp_path, config=CONFIG, grpc=False) as gw:

        def push(req: Req) -> None:
            r = httpx.post(gw.otlp_http, content=req.bytes(), headers=PB)
            assert r.status_code == 200, r.content

        push(Req().sum("orders", [({"user": f"u{i}"}, i + 1, 0, 10) for i in range(10)]))
        push(Req().sum("orders", [({"user": f"u{i}"}, i + 2, 0, 20) for i in range(10)]))
        push(Req().sum("wide", [({"user": f"u{i}"}, 1, 0, 10) for i in range(10)]))
        push(Req().gauge("paths", [({"path": "/a/very/long/path/indeed"}, 1.0, 10)]))
        s = parse(httpx.get(gw.url + "/metrics").text)
        orders = s.all("orders_total")
        assert len(orders) == 4
        assert sum(v for _, v in orders) == sum(i + 2 for i in range(10))
        assert s.value("orders_total", otel_metric_overflow="true") == sum(
            i + 2 for i in range(3, 10)
        )
        assert len(s.all("wide_total")) == 10
        assert s.value("paths", path="/a/very/long/...") == 1.0
        own = parse(httpx.get(gw.url + "/metrics/self").text)
        overflowed = by_name("gateway.points.overflowed").prometheus_name()
        truncated = by_name("gateway.series.truncated").prometheus_name()
        assert own.value(overflowed, metric="orders_total") == 14  # 7 series, 2 pushes
        assert own.value(truncated, metric="paths") == 1


def test_forwarded_otlp_is_folded_like_the_gateways_own_metrics(tmp_path: Path) -> None:
    """A second gateway without limits stands for a Collector's Prometheus exporter: what it
    shows for a runaway label is what the first gateway shows, overflow series included."""
    unlimited = CONFIG.split("cardinality:")[0] + "views: []\n"
    with run_gateway(tmp_path, config=unlimited, grpc=False) as upstream:
        config = CONFIG + f"forwarder:\n  endpoint: {upstream.url}\n"
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            for t in (10, 20):
                points = [({"user": f"u{i}"}, i * t, 0, t) for i in range(20)]
                body = Req().sum("orders", points).bytes()
                r = httpx.post(gw.otlp_http, content=body, headers=PB)
                assert r.status_code == 200

            def orders(url: str) -> list[tuple[dict[str, str], float]]:
                return parse(httpx.get(url + "/metrics").text).all("orders_total")

            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and orders(upstream.url) != orders(gw.url):
                time.sleep(0.1)
            assert orders(upstream.url) == orders(gw.url)
            assert len(orders(gw.url)) == 4
            assert sum(v for _, v in orders(upstream.url)) == sum(i * 20 for i in range(20))
