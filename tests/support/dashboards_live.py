"""A live Prometheus fed by real traffic, to run the generated dashboard's panel queries against:
the traffic generator, the blackbox exporter, the Prometheus config and the panel runner."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from gateway.catalogue import CATALOGUE, DEFAULT_NAMESPACE, Kind, Layer, Metric
from tests.support.prometheus import query_response
from tests.support.servers import (
    REPO,
    free_port,
    wait_http,
)

DASHBOARD = REPO / "dashboards" / "json" / "coderunner-overview.json"


SCRAPE_SECONDS = 1


# Grafana: $__rate_interval = max($__interval + scrape interval, 4 * scrape interval).
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"


# OpenTelemetry's recommended boundaries for request durations; 0.5 is the latency SLO's
# threshold, which must be a bucket boundary.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


# What the demo service, the observers and the health checks write, per catalogue metric:
# attribute sets and the value of one step (a counter's increment, a gauge's reading, a
# histogram's observation). Metrics not listed get one series with `<label>-a` values.
_Point = tuple[dict[str, str], float]


SAMPLES: dict[str, list[_Point]] = {
    "system.cpu.usage_percent": [
        ({"core": "total", "type": "usage"}, 37.5),
        ({"core": "0", "type": "user"}, 20.0),
    ],
    "system.cpu.time": [({"core": "0", "mode": "user"}, 0.4)],
    "system.memory.usage": [
        ({"type": t}, v)
        for t, v in [("used", 3e9), ("available", 5e9), ("cached", 1e9), ("buffers", 2e8)]
    ],
    "system.memory.utilization": [({}, 0.42)],
    "system.load_average": [({"period": p}, 0.8) for p in ("1m", "5m", "15m")],
    "system.network.io": [
        ({"interface": "eth0", "direction": d}, 1500.0) for d in ("receive", "transmit")
    ],
    "system.disk.io": [({"device": "sda", "direction": d}, 4096.0) for d in ("read", "write")],
    "system.disk.operations": [({"device": "sda", "direction": d}, 2.0) for d in ("read", "write")],
    "system.filesystem.utilization": [
        ({"device": "sda1", "mountpoint": "/", "fstype": "ext4"}, 0.61)
    ],
    "api.requests": [
        ({"method": "POST", "endpoint": "/api/deploy", "status": "2xx"}, 9.0),
        ({"method": "POST", "endpoint": "/api/deploy", "status": "5xx"}, 1.0),
        ({"method": "GET", "endpoint": "/api/users/{id}", "status": "2xx"}, 20.0),
        ({"method": "GET", "endpoint": "/api/users/{id}", "status": "4xx"}, 2.0),
    ],
    "api.duration": [
        ({"method": "POST", "endpoint": "/api/deploy"}, 0.3),
        ({"method": "GET", "endpoint": "/api/users/{id}"}, 0.02),
    ],
    "api.active_requests": [({"method": "GET"}, 1.0)],
    "deployments": [
        ({"status": "success", "type": "python"}, 3.0),
        ({"status": "failed", "type": "python"}, 1.0),
        ({"status": "success", "type": "node"}, 2.0),
    ],
    "deployment.duration": [
        ({"type": "python", "status": "success"}, 4.2),
        ({"type": "node", "status": "failed"}, 1.1),
    ],
    "websocket.connections": [
        ({"status": s}, 1.0) for s in ("authenticated", "rejected", "closed")
    ],
    "websocket.active_connections": [({}, 1.0)],
    "errors": [
        ({"type": "ValidationError", "service": "api", "severity": "warning"}, 1.0),
        ({"type": "DatabaseError", "service": "api", "severity": "critical"}, 1.0),
    ],
    "db.operation.duration": [
        ({"operation": "SELECT", "outcome": "success"}, 0.004),
        ({"operation": "INSERT", "outcome": "success"}, 0.009),
    ],
    "user.activity": [
        ({"action": "deploy", "plan_type": "premium"}, 2.0),
        ({"action": "login", "plan_type": "free"}, 5.0),
    ],
    "feature.usage": [
        ({"feature": "websocket", "user_type": "premium"}, 1.0),
        ({"feature": "deploy", "user_type": "free"}, 3.0),
    ],
    "resource.costs": [
        ({"resource_type": "compute", "plan": "premium"}, 0.02),
        ({"resource_type": "storage", "plan": "free"}, 0.001),
    ],
    "plan.distribution": [
        ({"plan_type": p}, n) for p, n in [("free", 70), ("premium", 25), ("team", 5)]
    ],
    "health.check.status": [({"component": "postgresql"}, 1.0), ({"component": "redis"}, 0.5)],
    "health.check.duration": [
        ({"component": "postgresql"}, 0.003),
        ({"component": "redis"}, 0.001),
    ],
    "circuit_breaker.state": [
        ({"component": "postgresql", "state": s}, 1.0 if s == "closed" else 0.0)
        for s in ("closed", "open", "half_open")
    ],
    "circuit_breaker.transitions": [
        ({"component": "redis", "from": "closed", "to": "open"}, 1.0),
        ({"component": "redis", "from": "open", "to": "half_open"}, 1.0),
    ],
    "gateway.points.rejected": [
        ({"reason": "invalid_name"}, 1.0),
        ({"reason": "nan_counter"}, 1.0),
    ],
    "gateway.points.dropped": [({"reason": "queue_full"}, 1.0)],
    "gateway.points.overflowed": [({"metric": "coderunner_api_requests_total"}, 5.0)],
}


# The resource each layer's metrics come from: the demo service pushes application and
# business metrics; the gateway's observers and health checks the rest (here a second gateway
# instance, so the real gateway's own self-metrics keep their values).
RESOURCES = {
    "demo": {"service.name": "demo", "service.instance.id": "demo-1"},
    "host": {"service.name": "telemetry-gateway", "service.instance.id": "gateway-peer-1"},
}


def _resource_of(metric: Metric) -> str:
    return "demo" if metric.layer in (Layer.APPLICATION, Layer.BUSINESS) else "host"


def _samples(metric: Metric) -> list[_Point]:
    return SAMPLES.get(metric.name) or [({label: f"{label}-a" for label in metric.labels}, 1.0)]


class Traffic:
    """OTel SDK meters for every catalogue metric, stepped by a thread until stopped."""

    def __init__(self, endpoint: str) -> None:
        self._stop = threading.Event()
        self._providers: list[MeterProvider] = []
        self._steps: list[Any] = []
        views = [
            View(
                instrument_name=m.otel_name(DEFAULT_NAMESPACE),
                aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
            )
            for m in CATALOGUE
            if m.kind is Kind.HISTOGRAM
        ]
        meters = {}
        for key, attrs in RESOURCES.items():
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=endpoint, timeout=5), export_interval_millis=500
            )
            provider = MeterProvider(
                resource=Resource.create(attrs), metric_readers=[reader], views=views
            )
            self._providers.append(provider)
            meters[key] = provider.get_meter("tests.dashboards", "1.0")
        self.metrics = list(CATALOGUE)
        for metric in self.metrics:
            self._instrument(meters[_resource_of(metric)], metric)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _instrument(self, meter: Any, metric: Metric) -> None:
        name, unit, points = metric.otel_name(DEFAULT_NAMESPACE), metric.unit, _samples(metric)
        if metric.kind is Kind.GAUGE:

            def observe(_: CallbackOptions, points: list[_Point] = points) -> list[Observation]:
                return [Observation(value, attrs) for attrs, value in points]

            meter.create_observable_gauge(name, callbacks=[observe], unit=unit)
            return
        if metric.kind is Kind.COUNTER:
            instrument = meter.create_counter(name, unit=unit)
            record = instrument.add
        elif metric.kind is Kind.UPDOWN:
            instrument = meter.create_up_down_counter(name, unit=unit)
            record = instrument.add
            # An up-down counter holds its level: set it once.
            for attrs, value in points:
                record(value, attrs)
            return
        else:
            instrument = meter.create_histogram(name, unit=unit)
            record = instrument.record
        self._steps.append((record, points))

    def _run(self) -> None:
        while not self._stop.is_set():
            for record, points in self._steps:
                for attrs, value in points:
                    record(value, attrs)
            self._stop.wait(0.2)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for provider in self._providers:
            provider.shutdown()


@contextlib.contextmanager
def blackbox_exporter(tmp: Path) -> Iterator[str]:
    """Debian's prometheus-blackbox-exporter with the repo's blackbox/blackbox.yml."""
    binary = shutil.which("prometheus-blackbox-exporter")
    if binary is None:
        raise RuntimeError("prometheus-blackbox-exporter is not installed: run make system-deps")
    port = free_port()
    log = tmp / "blackbox.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={REPO / 'blackbox' / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/healthy", proc=proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prometheus_config(gateway: str, blackbox: str, others: Mapping[str, str] = {}) -> str:
    """`others`: job name -> host:port of the monitoring's own targets (a peer Prometheus,
    Alertmanager, node_exporter) that the "Alerting pipeline and hosts" row reads."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS}s",
            "scrape_timeout": f"{SCRAPE_SECONDS}s",
            "evaluation_interval": f"{SCRAPE_SECONDS}s",
        },
        "scrape_configs": [
            # As prometheus.yml scrapes the gateway: job/instance from the OTel resource.
            {"job_name": "gateway", "honor_labels": True,
             "static_configs": [{"targets": [gateway]}]},
            {"job_name": "blackbox-http", "metrics_path": "/probe",
             "params": {"module": ["http_2xx"]},
             "static_configs": [{"targets": [f"http://{gateway}/ready"]}],
             "relabel_configs": [
                 {"source_labels": ["__address__"], "target_label": "__param_target"},
                 {"source_labels": ["__param_target"], "target_label": "instance"},
                 {"target_label": "__address__", "replacement": blackbox},
             ]},
        ],
    }  # fmt: skip
    # The repository's rules: panels read recorded series (RED per service, error budget).
    config["rule_files"] = ["rules/*.yml"]
    config["scrape_configs"] += [
        {"job_name": job, "static_configs": [{"targets": [target]}]}
        for job, target in others.items()
    ]
    return json.dumps(config)  # JSON is YAML


# The SLO period's rules run in one 1-minute group per SLO, each at its own offset: the SLO
# panels have data once every SLO's group has run. (From main, where the tests wait for it.)
EVERY_SLO_RECORDED = "count(count by (slo) (slo:period_error_budget_remaining:ratio)) >= 2"


def wait_for_series(prometheus: str, expr: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not query_response(prometheus, expr)["data"]["result"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus never recorded {expr}")
        time.sleep(1)


def hostport(url: str) -> str:
    return url.removeprefix("http://").rstrip("/")


def rule_files() -> dict[str, str]:
    return {
        f"rules/{path.name}": path.read_text()
        for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    }


def peer_config(alertmanager: str) -> str:
    return json.dumps(
        {
            "global": {"evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "rule_files": ["rules/*.yml"],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [hostport(alertmanager)]}]}]
            },
        }
    )


def label_values(prometheus: str, label: str, selector: str) -> list[str]:
    """What Grafana's `label_values(selector, label)` returns."""
    r = httpx.get(
        f"{prometheus}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10
    )
    r.raise_for_status()
    values: list[str] = r.json()["data"]
    return values


def grafana_regex(values: Sequence[str]) -> str:
    """A multi-value variable as Grafana's Prometheus datasource writes it into a query:
    each value regex-escaped (and the backslash escaped again for the PromQL string)."""
    escaped = [re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def variable_query(variable: Mapping[str, Any]) -> tuple[str, str]:
    match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"])
    assert match, variable["query"]
    return match.group(1), match.group(2)


def substitute(expr: str, service: str, instance: str) -> str:
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$service", service)
        .replace("$instance", instance)
    )


def dashboard_panels() -> list[dict[str, Any]]:
    board = json.loads(DASHBOARD.read_text())
    return [p for p in board["panels"] if p["type"] != "row"]


def dashboard_variables() -> dict[str, Mapping[str, Any]]:
    board = json.loads(DASHBOARD.read_text())
    return {v["name"]: v for v in board["templating"]["list"]}


def wait_for_every_metric(
    prometheus: str, timeout: float = 30.0, namespace: str = DEFAULT_NAMESPACE
) -> None:
    """Until Prometheus has a series of every catalogue metric under `namespace`."""
    wanted = {m.prometheus_name(namespace) for m in CATALOGUE}
    deadline = time.monotonic() + timeout
    missing: set[str] = wanted
    while time.monotonic() < deadline:
        result = query_response(prometheus, f'count by (__name__) ({{__name__=~"{namespace}_.+"}})')
        names = {
            re.sub(r"_(bucket|sum|count)$", "", s["metric"]["__name__"])
            for s in result["data"]["result"]
        }
        missing = wanted - names
        if not missing:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never got {sorted(missing)}")


def opened_with_all(
    prometheus: str, variables: Mapping[str, Mapping[str, Any]]
) -> tuple[list[str], str, str]:
    """The dashboard as it opens, "All" in both variables: the services Prometheus has, and the
    regexes $service and $instance then stand for."""
    selector, label = variable_query(variables["service"])
    services = label_values(prometheus, label, selector)
    assert {"demo", "telemetry-gateway"} <= set(services), services
    all_services = grafana_regex(services)
    selector, label = variable_query(variables["instance"])
    instances = label_values(prometheus, label, selector.replace("$service", all_services))
    all_instances = grafana_regex(instances)
    return services, all_services, all_instances


def run_panels(prometheus: str) -> list[str]:
    variables = dashboard_variables()
    services, all_services, all_instances = opened_with_all(prometheus, variables)

    failures = []
    checked = 0
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            # "All" in both variables, as the dashboard opens.
            result = query_response(prometheus, substitute(expr, all_services, all_instances))
            checked += 1
            if result.get("status") != "success":
                failures.append(f"panel {panel['id']} {panel['title']}: {result.get('error')}")
                continue
            if not result["data"]["result"]:
                failures.append(f"panel {panel['id']} {panel['title']}: no data: {expr}")
                continue
            if "$service" not in expr:
                continue
            # One real service and one of its instances, picked as a user would.
            if not has_data_for_one_value(prometheus, expr, services):
                failures.append(f"panel {panel['id']} {panel['title']}: no data for any single "
                                f"service/instance: {expr}")  # fmt: skip
    assert checked >= len(dashboard_panels())
    return failures


def has_data_for_one_value(prometheus: str, expr: str, services: Sequence[str]) -> bool:
    selector, label = variable_query(dashboard_variables()["instance"])
    for service in services:
        one = grafana_regex([service])
        for instance in label_values(prometheus, label, selector.replace("$service", one)):
            result = query_response(prometheus, substitute(expr, one, grafana_regex([instance])))
            if result.get("status") == "success" and result["data"]["result"]:
                return True
    return False


def panel_failures_under_traffic(prometheus: str, otlp_http: str) -> list[str]:
    """Runs every panel query once Prometheus holds every catalogue metric and the SLO period's
    first recording (its rules run in a 1-minute group), with catalogue traffic flowing into
    `otlp_http` and enough scrapes for every rate() window; returns the failures."""
    traffic = Traffic(otlp_http)
    traffic.start()
    try:
        wait_for_every_metric(prometheus)
        wait_for_series(prometheus, EVERY_SLO_RECORDED, 150)
        time.sleep(4 * SCRAPE_SECONDS + 1)
        return run_panels(prometheus)
    finally:
        traffic.stop()
