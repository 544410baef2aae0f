"""Issue 2 acceptance: the real OTel SDK pushes every instrument type over HTTP and gRPC, with
delta and cumulative temporality; /metrics shows the exact names, labels and values; a real
Prometheus scrapes it; promtool finds no problem."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.prometheus import query, scrape_config, values
from tests.support.promtext import Samples, parse
from tests.support.sdk_pusher import push_with_sdk
from tests.support.servers import GatewayProcess, run_gateway, run_prometheus

pytestmark = pytest.mark.integration

CASES = [
    ("http", "delta", "svc-http-delta"),
    ("http", "cumulative", "svc-http-cumulative"),
    ("grpc", "delta", "svc-grpc-delta"),
    ("grpc", "cumulative", "svc-grpc-cumulative"),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with run_gateway(tmp_path_factory.mktemp("gw")) as gw:
        for protocol, temporality, service in CASES:
            endpoint = gw.otlp_http if protocol == "http" else gw.grpc_target
            push_with_sdk(protocol, endpoint, temporality, service)
        yield gw


@pytest.fixture(scope="module")
def exposition(gateway: GatewayProcess) -> str:
    return httpx.get(gateway.url + "/metrics").text


@pytest.mark.parametrize(("protocol", "temporality", "service"), CASES)
def test_exact_names_labels_and_values(
    exposition: str, protocol: str, temporality: str, service: str
) -> None:
    s: Samples = parse(exposition)
    common = {
        "job": service,
        "instance": f"{service}-1",
        "otel_scope_name": "sdk.pusher",
        "otel_scope_version": "1.0",
    }
    assert s.value("app_requests_total", route="/a", code="200", **common) == 15
    assert s.value("app_active", **common) == 4
    assert s.value("app_temperature_celsius", room="x", **common) == 22.5
    assert s.value("app_duration_seconds_count", route="/a", **common) == 11
    assert s.value("app_duration_seconds_sum", route="/a", **common) == pytest.approx(11.5)
    assert s.value("app_duration_seconds_bucket", route="/a", le="0", **common) == 1
    assert s.value("app_duration_seconds_bucket", route="/a", le="5", **common) == 10
    assert s.value("app_duration_seconds_bucket", route="/a", le="+Inf", **common) == 11
    assert s.value("exp_latency_seconds_count", route="/b", **common) == 11
    assert s.value("exp_latency_seconds_sum", route="/b", **common) == 75
    assert s.value("exp_latency_seconds_bucket", route="/b", le="+Inf", **common) == 11
    # Exponential buckets become cumulative classic buckets: 1..10 lie at or below ~10.15.
    le_values = {
        float(lab["le"]): v
        for lab, v in s.all("exp_latency_seconds_bucket", route="/b", **common)
        if lab["le"] != "+Inf"
    }
    assert max(v for le, v in le_values.items() if le < 11) == 10
    assert s.value("target_info", job=service, instance=f"{service}-1", env="test") == 1
    assert s.types["app_requests"] == "counter"
    assert s.types["app_duration_seconds"] == "histogram"
    assert s.types["app_active"] == "gauge"


def test_self_metrics_count_the_points(exposition: str) -> None:
    s = parse(exposition)
    assert s.value("coderunner_gateway_points_received_total", transport="http") > 0
    assert s.value("coderunner_gateway_points_received_total", transport="grpc") > 0


def test_promtool_check_metrics_finds_no_problem(exposition: str) -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_openmetrics_is_served_on_accept(gateway: GatewayProcess) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    r = httpx.get(
        gateway.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["app_requests"].type == "counter"
    assert families["target"].type == "info"
    assert r.text.endswith("# EOF\n")


def test_real_prometheus_scrapes_without_errors(gateway: GatewayProcess, tmp_path: Path) -> None:
    config = scrape_config(gateway.http_port)
    with run_prometheus(tmp_path, config) as prom:
        deadline = time.monotonic() + 30
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            result = query(prom.url, 'app_requests_total{job="svc-grpc-delta"}')
            if result:
                break
            time.sleep(0.5)
        assert result, "Prometheus never got app_requests_total"
        assert float(result[0]["value"][1]) == 15  # type: ignore[index]
        labels = result[0]["metric"]  # type: ignore[index]
        assert labels["route"] == "/a" and labels["instance"] == "svc-grpc-delta-1"  # type: ignore[index]
        q = (
            "histogram_quantile(0.5, sum by (le) "
            '(app_duration_seconds_bucket{job="svc-http-delta"}))'
        )
        assert 0 < values(prom.url, q)[0] <= 5
        targets = httpx.get(prom.url + "/api/v1/targets").json()["data"]["activeTargets"]
        assert targets[0]["health"] == "up", targets[0]
        assert targets[0]["lastError"] == ""


def test_metrics_are_gzipped_when_the_scraper_asks(gateway: GatewayProcess) -> None:
    plain = httpx.get(gateway.url + "/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    with httpx.Client() as client:
        raw = client.get(gateway.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert int(raw.headers["content-length"]) < len(plain.content) / 3

    # The same samples either way (the self-metrics move between two scrapes, so compare the
    # pushed families only).
    def pushed(text: str) -> list[str]:
        return sorted(line for line in text.splitlines() if line.startswith(("app_", "exp_")))

    assert pushed(raw.text) == pushed(plain.text)
