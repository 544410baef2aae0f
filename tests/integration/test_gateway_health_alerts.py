"""The gateway-health alerts (prometheus/rules/gateway-health.yml) against a real gateway.

    a disk queue with a damaged page  -> `telemetry-gateway run` sets it aside at start
    oversized request headers          -> the gateway closes those connections (431)
    a real Prometheus scrapes the gateway as prometheus.local.yml does and runs the repo's rules

GatewayDiskQueueCorrupt must fire from the counter a fresh process starts at 1 (no increase
ever happens: the branch for a series that is new within the hour), and
GatewayRefusingConnections must select the reason the gateway really writes. Guards against
names or labels the promtool cases invent but the gateway does not write.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.alert_rules import local_prometheus_config, rules_with_short_for
from tests.support.disk_queue import damaged_queue, dead_upstream, padded_delta_request
from tests.support.servers import run_gateway, run_prometheus

pytestmark = pytest.mark.integration


def _oversized_headers(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 128 * 1024 + b"\r\n\r\n")
        return s.recv(100)


def _query(prometheus: str, expr: str) -> list[dict[str, object]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def _alerts(prometheus: str) -> list[dict[str, str]]:
    body = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()
    return [{**a["labels"], "state": a["state"]} for a in body["data"]["alerts"]]


def test_corrupt_queue_and_refused_connections_fire_from_the_real_gateway(tmp_path: Path) -> None:
    queue = tmp_path / "q.db"
    damaged_queue(queue)
    config = (
        "observers: {enabled: false}\n"
        f"forwarder: {{endpoint: '{dead_upstream()}'}}\n"
        f"queue: {{kind: disk, path: '{queue}'}}\n"
    )
    with (
        run_gateway(tmp_path, grpc=False, config=config) as gw,
        run_prometheus(
            tmp_path, local_prometheus_config(gw.http_port), extra_files=rules_with_short_for()
        ) as prom,
    ):
        # A few export requests (the denominator), then 40 connections closed at the header
        # limit: 40 / (40 + 5) of the HTTP traffic, over the 30-in-10-minutes guard.
        for i in range(5):
            r = httpx.post(
                gw.otlp_http,
                content=padded_delta_request(i),
                headers={"content-type": "application/x-protobuf"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
        # The refusal counter exists from its first refusal on; rate() counts what follows
        # Prometheus' first sample of it, as for a real client that keeps failing.
        answers = {_oversized_headers(gw.http_port)[:12]}
        deadline = time.monotonic() + 30
        while not _query(prom.url, "coderunner_gateway_connections_refused_total"):
            assert time.monotonic() < deadline, "Prometheus never scraped the refusal counter"
            time.sleep(0.5)
        answers |= {_oversized_headers(gw.http_port)[:12] for _ in range(39)}
        assert answers == {b"HTTP/1.1 431"}, answers
        deadline = time.monotonic() + 60
        wanted = {"GatewayDiskQueueCorrupt", "GatewayRefusingConnections"}
        active: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            active = [a for a in _alerts(prom.url) if a["alertname"] in wanted]
            if {a["alertname"] for a in active} == wanted:
                break
            time.sleep(1)
        debug = {
            e: _query(prom.url, e)
            for e in (
                "coderunner_gateway_connections_refused_total",
                'coderunner_gateway_request_duration_seconds_count{transport="http"}',
            )
        }
    by_name = {a["alertname"]: a for a in active}
    assert set(by_name) == wanted, (active, debug)
    assert by_name["GatewayDiskQueueCorrupt"]["state"] == "firing"  # for: 0m
    assert by_name["GatewayRefusingConnections"]["reason"] == "header_too_large"
    # The gateway's own job and instance (honor_labels: from its OTel resource).
    assert (
        by_name["GatewayDiskQueueCorrupt"]["instance"]
        == by_name["GatewayRefusingConnections"]["instance"]
    )
