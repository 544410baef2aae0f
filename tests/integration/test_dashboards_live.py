"""Every panel of the generated dashboard, run against real data.

A real gateway (forwarding to a second real gateway, so the forwarder's own series exist) gets
OTLP from the OpenTelemetry SDK for every metric of the catalogue, with the label values the
demo service and the gateway's observers and health checks write. A real Prometheus scrapes it
every second (and a real blackbox exporter probes its readiness, as in compose). Then each
panel's PromQL runs through Prometheus' query API the way Grafana would send it: `$service`
and `$instance` replaced by values the dashboard's own variable queries return (escaped as
Grafana escapes multi-value regexes), `$__rate_interval` by four scrape intervals. A query must
parse and return at least one series.

Grafana itself cannot run here; this is the part of "does the dashboard show data" that does
not need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from gateway.catalogue import CATALOGUE, DEFAULT_NAMESPACE, Kind, Layer, Metric
from tests.alertmanager.amconfig import with_webhook
from tests.integration.test_observers_node_exporter import node_exporter
from tests.support.collector import run_collector
from tests.support.exporters import postgres_exporter, redis_exporter
from tests.support.servers import (
    REPO,
    free_port,
    run_alertmanager,
    run_gateway,
    run_prometheus,
    wait_http,
)

pytestmark = pytest.mark.integration

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


class _Traffic:
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
def _blackbox_exporter(tmp: Path) -> Iterator[str]:
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


def _prometheus_config(gateway: str, blackbox: str, others: Mapping[str, str] = {}) -> str:
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
# panels have data once every SLO's group has run.
EVERY_SLO_RECORDED = "count(count by (slo) (slo:period_error_budget_remaining:ratio)) >= 2"


def _wait_for_series(prometheus: str, expr: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _query(prometheus, expr)["data"]["result"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus never recorded {expr}")
        time.sleep(1)


def _hostport(url: str) -> str:
    return url.removeprefix("http://").rstrip("/")


def _rule_files() -> dict[str, str]:
    return {
        f"rules/{path.name}": path.read_text()
        for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    }


def _peer_config(alertmanager: str) -> str:
    return json.dumps(
        {
            "global": {"evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "rule_files": ["rules/*.yml"],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [_hostport(alertmanager)]}]}]
            },
        }
    )


def _query(prometheus: str, expr: str) -> dict[str, Any]:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = r.json()
    return body


def _label_values(prometheus: str, label: str, selector: str) -> list[str]:
    """What Grafana's `label_values(selector, label)` returns."""
    r = httpx.get(
        f"{prometheus}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10
    )
    r.raise_for_status()
    values: list[str] = r.json()["data"]
    return values


def _grafana_regex(values: Sequence[str]) -> str:
    """A multi-value variable as Grafana's Prometheus datasource writes it into a query:
    each value regex-escaped (and the backslash escaped again for the PromQL string)."""
    escaped = [re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _variable_query(variable: Mapping[str, Any]) -> tuple[str, str]:
    match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"])
    assert match, variable["query"]
    return match.group(1), match.group(2)


def _substitute(expr: str, service: str, instance: str) -> str:
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$service", service)
        .replace("$instance", instance)
    )


def _panels() -> list[dict[str, Any]]:
    board = json.loads(DASHBOARD.read_text())
    return [p for p in board["panels"] if p["type"] != "row"]


def _variables() -> dict[str, Mapping[str, Any]]:
    board = json.loads(DASHBOARD.read_text())
    return {v["name"]: v for v in board["templating"]["list"]}


def _wait_for_every_metric(prometheus: str, timeout: float = 30.0) -> None:
    wanted = {m.prometheus_name(DEFAULT_NAMESPACE) for m in CATALOGUE}
    deadline = time.monotonic() + timeout
    missing: set[str] = wanted
    while time.monotonic() < deadline:
        result = _query(prometheus, 'count by (__name__) ({__name__=~"coderunner_.+"})')
        names = {
            re.sub(r"_(bucket|sum|count)$", "", s["metric"]["__name__"])
            for s in result["data"]["result"]
        }
        missing = wanted - names
        if not missing:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never got {sorted(missing)}")


def test_every_panel_query_is_valid_and_returns_data(tmp_path: Path) -> None:
    with (
        # The Collector row: the upstream gateway forwards to a real Collector, whose own
        # metrics Prometheus scrapes as prometheus.yml does (job otel-collector-self).
        run_collector(tmp_path) as collector,
        run_gateway(
            tmp_path, grpc=False, env={"GATEWAY_FORWARD_ENDPOINT": collector.otlp_http_url}
        ) as upstream,
        run_gateway(tmp_path, grpc=False, env={"GATEWAY_FORWARD_ENDPOINT": upstream.url}) as gw,
        _blackbox_exporter(tmp_path) as blackbox,
        run_alertmanager(tmp_path, with_webhook("http://127.0.0.1:9/unused")) as am,
        node_exporter(tmp_path) as node,
        # The Databases row: the exporters compose runs, on this machine's PostgreSQL and Redis.
        postgres_exporter(tmp_path) as pg_exporter,
        redis_exporter(tmp_path) as redis,
        # A peer Prometheus running the repo's rules and sending to the Alertmanager: the one
        # the panels query scrapes it like any Prometheus scrapes itself.
        run_prometheus(tmp_path, _peer_config(am.url), extra_files=_rule_files()) as peer,
        run_prometheus(tmp_path, _prometheus_config(
            gw.url.removeprefix("http://"), blackbox,
            {"prometheus": _hostport(peer.url), "alertmanager": _hostport(am.url),
             "node": _hostport(node.url), "otel-collector-self": collector.telemetry_target,
             "postgres": _hostport(pg_exporter.url), "redis": _hostport(redis.url)},
        ), extra_files=_rule_files()) as prom,
    ):  # fmt: skip
        traffic = _Traffic(gw.otlp_http)
        traffic.start()
        try:
            _wait_for_every_metric(prom.url)
            # The SLO period's rules run in a 1-minute group: wait for their first result.
            _wait_for_series(prom.url, EVERY_SLO_RECORDED, 150)
            # Enough scrapes for every rate() window and the forwarder's counters.
            time.sleep(4 * SCRAPE_SECONDS + 1)
            failures = _run_panels(prom.url)
        finally:
            traffic.stop()
    assert failures == [], "\n".join(failures)


def _run_panels(prometheus: str) -> list[str]:
    variables = _variables()
    selector, label = _variable_query(variables["service"])
    services = _label_values(prometheus, label, selector)
    assert {"demo", "telemetry-gateway"} <= set(services), services
    all_services = _grafana_regex(services)
    selector, label = _variable_query(variables["instance"])
    instances = _label_values(prometheus, label, selector.replace("$service", all_services))
    all_instances = _grafana_regex(instances)

    failures = []
    checked = 0
    for panel in _panels():
        for target in panel["targets"]:
            expr = target["expr"]
            # "All" in both variables, as the dashboard opens.
            result = _query(prometheus, _substitute(expr, all_services, all_instances))
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
            if not _has_data_for_one_value(prometheus, expr, services):
                failures.append(f"panel {panel['id']} {panel['title']}: no data for any single "
                                f"service/instance: {expr}")  # fmt: skip
    assert checked >= len(_panels())
    return failures


def _has_data_for_one_value(prometheus: str, expr: str, services: Sequence[str]) -> bool:
    selector, label = _variable_query(_variables()["instance"])
    for service in services:
        one = _grafana_regex([service])
        for instance in _label_values(prometheus, label, selector.replace("$service", one)):
            result = _query(prometheus, _substitute(expr, one, _grafana_regex([instance])))
            if result.get("status") == "success" and result["data"]["result"]:
                return True
    return False


def test_an_empty_or_broken_query_is_reported(tmp_path: Path) -> None:
    """The checks above can fail: a wrong metric name gives no data, bad PromQL an error."""
    with run_prometheus(tmp_path, _prometheus_config("127.0.0.1:1", "127.0.0.1:1")) as prom:
        empty = _query(prom.url, _substitute('sum(rate(nope_total{job=~"$service"}[1m]))',
                                             "(a|b)", ".*"))  # fmt: skip
        assert empty["status"] == "success" and empty["data"]["result"] == []
        broken = _query(prom.url, "sum by (job (rate(x[1m]))")
        assert broken["status"] == "error"
    # Grafana's escaping survives PromQL's string parsing: a dot matches only a dot.
    assert _grafana_regex(["a.b"]) == "a\\\\.b"
    assert _grafana_regex(["demo", "telemetry-gateway"]) == "(demo|telemetry-gateway)"


# --- the demo's own traffic ------------------------------------------------------------------

DEMO_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DEMO_LAYERS = (Layer.APPLICATION, Layer.BUSINESS)
_NAME_RE = re.compile(r"(?<![\w:])coderunner_[a-z0-9_]+(?![\w:])")  # not recorded names
_BY_PROM = {m.prometheus_name(DEFAULT_NAMESPACE): m for m in CATALOGUE}


def _panel_metrics(panel: Mapping[str, Any]) -> set[Metric]:
    names = _NAME_RE.findall(" ".join(t["expr"] for t in panel["targets"]))
    return {_BY_PROM[re.sub(r"_(bucket|sum|count)$", "", n)] for n in names}


@contextlib.contextmanager
def _demo_service(tmp: Path, gateway_url: str) -> Iterator[str]:
    """The demo app under uvicorn, as compose and `telemetry-gateway demo` run it."""
    port = free_port()
    prefix = f"dash{port}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DEMO_"))}
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": gateway_url,
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_SERVICE_NAME": "coderunner-demo",
            "DATABASE_URL": DEMO_DSN,
            "DEMO_TABLE_PREFIX": prefix,
        }
    )
    argv = [sys.executable, "-m", "uvicorn", "demo.app:create_app_from_env", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    log = tmp / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/live", proc=proc, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()  # SIGTERM: the demo flushes its last export
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        asyncio.run(_drop_tables(prefix))


async def _drop_tables(prefix: str) -> None:
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        conn = await asyncpg.connect(DEMO_DSN, timeout=5)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {prefix}deployments, {prefix}users")
        finally:
            await conn.close()


class _DemoTraffic:
    """demo.traffic.TrafficGenerator on its own event loop in a thread."""

    def __init__(self, demo_url: str) -> None:
        from demo.traffic import TrafficGenerator

        self.generator = TrafficGenerator(demo_url, rate=40.0, seed=8)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self.generator.run(stop=self._stop))

    def __enter__(self) -> _DemoTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        self._loop.close()


def _present(prometheus: str) -> set[str]:
    result = _query(prometheus, 'count by (__name__) ({__name__=~".+"})')
    return {re.sub(r"_(bucket|sum|count)$", "", s["metric"]["__name__"])
            for s in result["data"]["result"]}  # fmt: skip


def _wait_for(prometheus: str, metrics: set[Metric], timeout: float) -> set[str]:
    """The metrics still missing after `timeout` (empty: all arrived)."""
    wanted = {m.prometheus_name(DEFAULT_NAMESPACE) for m in metrics}
    deadline = time.monotonic() + timeout
    missing = wanted
    while time.monotonic() < deadline:
        missing = wanted - _present(prometheus)
        if not missing:
            break
        time.sleep(0.5)
    return missing


def test_demo_traffic_fills_every_application_and_business_panel(tmp_path: Path) -> None:
    """The demo service under its traffic generator, not synthetic data: the label values the
    panels filter on (status="5xx", status="success", le="0.5", ...) must be the ones the
    instrumentation and the gateway's views really write. HTTP and database metrics arrive as
    OpenTelemetry semantic-convention metrics and reach the panels only through the views."""
    panels = [p for p in _panels() if _panel_metrics(p) and
              all(m.layer in DEMO_LAYERS for m in _panel_metrics(p))]  # fmt: skip
    needed = set().union(*(_panel_metrics(p) for p in panels))
    with (
        run_gateway(tmp_path, grpc=False) as gw,
        run_prometheus(tmp_path, _prometheus_config(gw.url.removeprefix("http://"),
                                                    "127.0.0.1:1")) as prom,
        _demo_service(tmp_path, gw.url) as demo_url,
        _DemoTraffic(demo_url) as traffic,
    ):  # fmt: skip
        missing = _wait_for(prom.url, needed, timeout=30)
        assert not missing, (
            f"the demo's traffic never produced {sorted(missing)} "
            f"(traffic: {traffic.generator.stats})"
        )
        time.sleep(4 * SCRAPE_SECONDS + 1)
        # job is service.namespace/service.name; pick the demo's as a user would.
        jobs = _label_values(prom.url, "job", '{__name__=~"coderunner_.+"}')
        demo_jobs = [j for j in jobs if j.rpartition("/")[2] == "coderunner-demo"]
        assert len(demo_jobs) == 1, jobs
        service = _grafana_regex(demo_jobs)
        instances = _grafana_regex(_label_values(prom.url, "instance", f'{{job="{demo_jobs[0]}"}}'))
        failures = []
        for panel in panels:
            for target in panel["targets"]:
                result = _query(prom.url, _substitute(target["expr"], service, instances))
                if result.get("status") != "success" or not result["data"]["result"]:
                    failures.append(f"panel {panel['id']} {panel['title']}: {target['expr']}")
    assert failures == [], "\n".join(failures)
