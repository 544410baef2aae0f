"""The status endpoints (`/api/status/...`) over real HTTP against a real gateway process fed
by OTLP pushes and the real OpenTelemetry SDK: every figure is checked against what was sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway_client import PB, push
from tests.support.otlp import Req
from tests.support.sdk_pusher import push_with_sdk
from tests.support.servers import GatewayProcess, free_port, run_gateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

# Forwarding to a port nothing listens on: batches wait in the queue, so its depth and the
# age of its oldest entry have something to show.
CONFIG = """\
observers: {{enabled: true, interval_seconds: 0.5, min_interval_seconds: 0.5, adaptive: false}}
forwarder: {{endpoint: "http://127.0.0.1:{dead}", initial_backoff_seconds: 0.2}}
health:
  details: always
  pipeline: {{enabled: false}}
  system: {{enabled: false}}
  upstream: {{interval_seconds: 0.5}}
cardinality:
  max_series_per_stream: 40
"""


def get(gw: GatewayProcess, path: str, status: int = 200, **params: Any) -> Any:
    r = httpx.get(f"{gw.url}/api/status/{path}", params=params)
    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-cache, no-store"
    return r.json()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with run_gateway(
        tmp_path_factory.mktemp("status"), config=CONFIG.format(dead=free_port()), grpc=False
    ) as gw:
        now = int(time.time())
        # A cardinality attack: one label with a new value per series, 100 series over a
        # limit of 40; `region` stays at 2 values.
        push(
            gw,
            Req(service="checkout").sum(
                "orders",
                [
                    ({"user_id": f"u{i}", "region": ("eu", "us")[i % 2]}, i, now - 5, now)
                    for i in range(100)
                ],
            ),
        )
        push(gw, Req(service="billing").gauge("queue.depth", [({"queue": "q1"}, 17.5, now)]))
        # The real OpenTelemetry SDK, cumulative over HTTP.
        push_with_sdk("http", gw.otlp_http, "cumulative", "sdk-svc")
        yield gw


def test_pipeline_counts_points_refusals_latency_queue_and_limiter(
    gateway: GatewayProcess,
) -> None:
    first = get(gateway, "pipeline")
    assert first["points_in"]["by_transport"]["http"]["total"] >= 101
    # A bad request is refused and counted by reason.
    bad = httpx.post(gateway.otlp_http, content=b"\xff\xff not protobuf", headers=PB)
    assert bad.status_code == 400
    push(gateway, Req(service="checkout").gauge("later", [({}, 1.0, int(time.time()))]))
    time.sleep(0.3)
    body = get(gateway, "pipeline")
    http = body["points_in"]["by_transport"]["http"]
    assert http["total"] == first["points_in"]["by_transport"]["http"]["total"] + 1
    assert body["window_seconds"] > 0 and http["per_second"] > 0
    assert sum(body["refused_requests"].values()) >= 1
    assert any(k.startswith("http: ") for k in body["refused_requests"])
    latency = body["latency"]["http"]["since_start"]
    assert latency["requests"] >= 3
    assert 0 < latency["p50_seconds"] <= latency["p99_seconds"] <= 10
    assert body["active_series"] >= 40
    limiter = body["memory_limiter"]
    assert limiter["enabled"] is True and limiter["refusing"] is False
    assert 0 < limiter["rss_bytes"] < limiter["soft_limit_bytes"]
    forwarder = body["forwarder"]
    assert forwarder["queue_kind"] == "memory"
    assert forwarder["queue_length"] >= 1
    assert forwarder["oldest_entry_age_seconds"] > 0
    assert forwarder["forwarded_points"] == 0
    assert forwarder["breaker"]["state"] in ("closed", "open", "half_open")
    later = get(gateway, "pipeline")
    assert later["forwarder"]["oldest_entry_age_seconds"] > forwarder["oldest_entry_age_seconds"]


def test_cardinality_ranks_metrics_services_and_the_exploding_label(
    gateway: GatewayProcess,
) -> None:
    body = get(gateway, "cardinality")
    top = body["metrics"][0]
    # 40 series plus the overflow series; the other 60 were folded into it.
    assert top["name"] == "orders_total"
    assert top["series"] == 41
    assert top["overflowed_series"] == 60
    assert top["overflowed_points"] == 60
    assert top["limit_per_stream"] == 40
    assert top["services"] == ["checkout"]
    services = {s["service"]: s for s in body["services"]}
    assert services["checkout"]["overflowed_series"] == 60
    assert services["billing"]["series"] == 1
    assert body["labels"] is None
    ranked = get(gateway, "cardinality", metric="orders_total")["labels"]
    assert ranked["series"] == 41 and ranked["overflow_series"] == 1 and ranked["complete"]
    assert [(lbl["name"], lbl["distinct_values"]) for lbl in ranked["labels"]] == [
        ("user_id", 40),
        ("region", 2),
    ]
    assert {v["value"] for v in ranked["labels"][1]["top_values"]} == {"eu", "us"}
    assert get(gateway, "cardinality", metric="orders_total", service="billing", status=404)
    assert len(get(gateway, "cardinality", top=1)["metrics"]) == 1
    assert httpx.get(gateway.url + "/api/status/cardinality", params={"top": 0}).status_code == 422


def test_tail_shows_the_pushed_values_newest_first_and_bounded(gateway: GatewayProcess) -> None:
    body = get(gateway, "tail", metric="queue_depth", service="billing")
    assert body["type"] == "gauge"
    assert body["points"] == [
        {
            "service": "billing",
            "instance": "i-1",
            "labels": {"queue": "q1"},
            "timestamp": body["points"][0]["timestamp"],
            "value": 17.5,
        }
    ]
    sdk = get(gateway, "tail", metric="app_requests_total", service="sdk-svc")
    assert [p["value"] for p in sdk["points"]] == [15]
    assert sdk["points"][0]["labels"]["route"] == "/a"
    hist = get(gateway, "tail", metric="app_duration_seconds")["points"][0]
    assert hist["count"] == 11 and hist["sum"] == pytest.approx(11.5)
    bounded = get(gateway, "tail", metric="orders_total", limit=5)
    assert len(bounded["points"]) == 5 and bounded["series"] == 41
    assert get(gateway, "tail", metric="no_such_metric", status=404)["detail"]
    r = httpx.get(gateway.url + "/api/status/tail", params={"metric": "orders_total", "limit": 201})
    assert r.status_code == 422
    assert httpx.get(gateway.url + "/api/status/tail").status_code == 422


def test_health_lists_checks_with_results_and_breakers(gateway: GatewayProcess) -> None:
    body = eventually(lambda: get(gateway, "health") if get(gateway, "health")["checks"] else None)
    assert body["details"] is True
    checks = {c["name"]: c for c in body["checks"]}
    assert "otlp_upstream" in checks and "memory_limiter" in checks
    upstream = checks["otlp_upstream"]
    assert upstream["breaker"]["state"] in ("closed", "open", "half_open")
    assert upstream["interval_seconds"] == 0.5
    assert eventually(lambda: get(gateway, "health")["checks"][0]["ran"])
    limiter = checks["memory_limiter"]
    assert limiter["observations"][0]["measurement"] == "utilization"
    assert limiter["observations"][0]["unit"] == "MiB"


def test_health_details_follow_the_api_health_policy(tmp_path: Path) -> None:
    config = "observers: {enabled: false}\nhealth: {details: when-authorized, token: s3cret}\n"
    with run_gateway(tmp_path, config=config, grpc=False) as gw:
        hidden = httpx.get(gw.url + "/api/status/health").json()
        assert hidden["details"] is False and hidden["checks"] == []
        assert "when-authorized" in hidden["output"]
        shown = httpx.get(
            gw.url + "/api/status/health", headers={"Authorization": "Bearer s3cret"}
        ).json()
        assert shown["details"] is True
        wrong = httpx.get(
            gw.url + "/api/status/health", headers={"Authorization": "Bearer nope"}
        ).json()
        assert wrong["details"] is False
        host = httpx.get(gw.url + "/api/status/host").json()
        assert host == {"enabled": False, "interval_seconds": None, "points": []}


def test_host_history_has_cpu_memory_load_and_network(gateway: GatewayProcess) -> None:
    def full() -> Any:
        b = get(gateway, "host")
        return b if len(b["points"]) >= 3 else None

    body = eventually(full)
    assert body["enabled"] is True and body["interval_seconds"] == 0.5
    last = body["points"][-1]
    assert 0 <= last["cpu_usage_percent"] <= 100
    assert 0 < last["memory_utilization"] < 1
    assert last["load_1m"] >= 0
    assert last["network_receive_bytes_per_second"] >= 0
    assert last["network_transmit_bytes_per_second"] >= 0
    times = [p["timestamp"] for p in body["points"]]
    assert times == sorted(times)
    few = get(gateway, "host", minutes=0.01)["points"]
    assert 1 <= len(few) < len(body["points"])


def test_page_files_are_served_and_nothing_else(gateway: GatewayProcess) -> None:
    index = httpx.get(gateway.url + "/ui/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert 'src="app.js"' in index.text
    for name, kind in (
        ("app.js", "text/javascript"),
        ("charts.js", "text/javascript"),
        ("style.css", "text/css"),
    ):
        r = httpx.get(f"{gateway.url}/ui/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert httpx.get(gateway.url + "/ui", follow_redirects=False).headers["location"] == "/ui/"
    assert httpx.get(gateway.url + "/ui/__init__.py").status_code == 404
    assert httpx.get(gateway.url + "/ui/%2e%2e%2fapi.py").status_code == 404
