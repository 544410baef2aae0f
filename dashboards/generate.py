"""The CodeRunner production overview, as code (grafana-foundation-sdk), written to
dashboards/json/coderunner-overview.json plus the panel-id map dashboards/panels.json.

    python -m dashboards.generate           # write the files
    python -m dashboards.generate --check   # exit 1 if the committed files are stale

Every metric name, unit and type comes from `gateway.catalogue`; a panel names the catalogue
entry it reads and how (`Transform`), and `grafana_unit` turns that into the Grafana unit, so a
renamed metric or a changed unit changes the dashboard the next time this runs.

Panel ids are part of the contract: alert rules link to `/d/coderunner-overview/...?viewPanel=<id>`
(prometheus/rules/alerts.yml, `dashboard_url`). Ids are written here by hand, never derived from
the order of panels, so adding or moving a panel never changes an existing link. Ids 1-14 are
the panels alerts point at; rows have ids from 100.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import piechart, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import piechart as piechart_m

from gateway.catalogue import DEFAULT_NAMESPACE, Kind, Metric, by_name

__all__ = [
    "ALERT_THRESHOLDS",
    "DASHBOARD_UID",
    "DATASOURCE_UID",
    "PANELS",
    "PanelSpec",
    "Query",
    "Transform",
    "build",
    "grafana_unit",
    "main",
    "render",
]

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "dashboards" / "json"
DASHBOARD_UID = "coderunner-overview"
DASHBOARD_TITLE = "CodeRunner overview"  # slug: coderunner-overview
DASHBOARD_FILE = OUT_DIR / f"{DASHBOARD_UID}.json"
PANELS_FILE = REPO / "dashboards" / "panels.json"
# dashboards/provisioning/datasources/prometheus.yaml gives the datasource this uid.
DATASOURCE_UID = "prometheus"
_DS = dash_m.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)

# The alert thresholds of DESIGN.md ("Alert thresholds"), in the unit each panel shows.
# prometheus/rules/alerts.yml uses the same numbers; tests/dashboards checks both agree.
ALERT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "cpu_percent": (80.0, 95.0),  # warning > 80 % for 5 m, critical > 95 % for 2 m
    "memory_ratio": (0.85, 0.95),  # warning > 85 %, critical > 95 %
    "api_error_ratio": (0.05, 0.15),  # warning > 5 %, critical > 15 %
}
# The API's service level objectives: prometheus/slo.yaml (alert rules are generated from it).
SLO_FILE = REPO / "prometheus" / "slo.yaml"


def _slo_period() -> str:
    """The SLO period (`30d`): the period rules record the SLI over it."""
    return str(yaml.safe_load(SLO_FILE.read_text(encoding="utf-8"))["period"])


def _slos() -> dict[str, dict[str, Any]]:
    """SLO declarations by name; the panels read objective and latency threshold from them."""
    data = yaml.safe_load(SLO_FILE.read_text(encoding="utf-8"))
    return {slo["name"]: slo for slo in data["slos"]}


# Deployment failures: warning when more than 10 % of deployments fail (alerts.yml,
# DeploymentFailureRateHigh); the panel shows the success ratio, so the line sits at 0.9.
DEPLOYMENT_SUCCESS_FLOOR = 0.9
# GatewayForwardQueueFilling: the forward queue more than 80 % full.
FORWARD_QUEUE_ALERT = 0.8
# CollectorSendingQueueFilling (prometheus/rules/collector.yml): a sending queue over 80 % full.
COLLECTOR_QUEUE_ALERT = 0.8


class Transform(enum.Enum):
    """How a panel turns a catalogue metric into what it plots."""

    VALUE = "value"  # a gauge as it is
    RATE = "rate"  # per-second rate of a counter
    PER_HOUR = "per_hour"  # rate of a counter times 3600
    RATIO = "ratio"  # one rate (or gauge) over another: 0-1
    QUANTILE = "quantile"  # histogram_quantile over the _bucket series


# Catalogue (UCUM) units -> Grafana unit ids. Curly-brace units are annotations (counts of
# something): plain numbers, except where Grafana has a better word for their rate.
_VALUE_UNITS = {"s": "s", "By": "bytes", "%": "percent", "1": "percentunit", "{USD}": "currencyUSD"}
_RATE_UNITS = {
    "By": "Bps",
    "s": "percentunit",  # CPU seconds per second: 1 = one core busy
    "{request}": "reqps",
    "{packet}": "pps",
    "{operation}": "iops",
}


def grafana_unit(metric: Metric | None, transform: Transform) -> str:
    """The Grafana unit of a panel that plots `metric` through `transform`.

    >>> grafana_unit(by_name("api.duration"), Transform.QUANTILE)
    's'
    >>> grafana_unit(by_name("api.requests"), Transform.RATE)
    'reqps'
    """
    if transform is Transform.RATIO:
        return "percentunit"
    if metric is None:  # Prometheus' own series (up, probe_success): 0 or 1
        return "short"
    if transform is Transform.QUANTILE:
        if metric.kind is not Kind.HISTOGRAM:
            raise ValueError(f"{metric.name}: a quantile needs a histogram")
        return _VALUE_UNITS.get(metric.unit, "short")
    if transform is Transform.VALUE:
        if metric.kind is Kind.COUNTER or metric.kind is Kind.HISTOGRAM:
            raise ValueError(f"{metric.name}: plot a counter through a rate")
        return _VALUE_UNITS.get(metric.unit, "short")
    if metric.kind is not Kind.COUNTER:
        raise ValueError(f"{metric.name}: a rate needs a counter")
    if transform is Transform.PER_HOUR:
        return _VALUE_UNITS.get(metric.unit, "short")
    return _RATE_UNITS.get(metric.unit, "cps")


# --- PromQL --------------------------------------------------------------------------------

_MATCH = 'job=~"$service", instance=~"$instance"'
_WINDOW = "$__rate_interval"


def _name(metric: Metric, suffix: str = "") -> str:
    return metric.prometheus_name(DEFAULT_NAMESPACE) + suffix


def _sel(extra: str = "") -> str:
    return "{" + _MATCH + (", " + extra if extra else "") + "}"


def _rate(metric: Metric, extra: str = "") -> str:
    return f"rate({_name(metric)}{_sel(extra)}[{_WINDOW}])"


def _sum_rate(metric: Metric, by: str, extra: str = "") -> str:
    return f"sum by ({by}) ({_rate(metric, extra)})"


def _ratio(metric: Metric, by: str, part: str) -> str:
    """Share of a counter's rate whose series match `part`, per `by`. The `or ... * 0` keeps a
    group whose part is absent (no 5xx at all) at 0 instead of dropping it from the result,
    so a healthy service shows 0 %, not "No data"."""
    whole = _sum_rate(metric, by)
    return f"({_sum_rate(metric, by, part)} or {whole} * 0) / {whole}"


def _slo_period_sli(slo: str, period: str) -> str:
    """The SLI over the whole SLO period, as gateway/slo.py's period rules record it."""
    return f'1 - slo:sli_error:ratio_rate{period}{{slo="{slo}", job=~"$service"}}'


def _quantile(q: float, metric: Metric, by: str) -> str:
    buckets = f"rate({_name(metric, '_bucket')}{_sel()}[{_WINDOW}])"
    return f"histogram_quantile({q}, sum by (le, {by}) ({buckets}))"


def _gauge(metric: Metric, agg: str, by: str, extra: str = "") -> str:
    return f"{agg} by ({by}) ({_name(metric)}{_sel(extra)})"


def _otelcol_rate(counter: str, by: str, fallback: str = "") -> str:
    """Rate of the Collector's `otelcol_<counter>_metric_points` (no `_total` at v0.165); with
    `fallback`, 0 where that counter does not exist yet but `fallback` does."""
    rate = f"rate(otelcol_{counter}_metric_points[{_WINDOW}])"
    if fallback:
        rate += f" or 0 * rate(otelcol_{fallback}_metric_points[{_WINDOW}])"
    return f"sum by ({by}) ({rate})"


# --- panels --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    id: int  # stable: alert links use it
    key: str  # stable name for panels.json and docs
    title: str
    description: str
    metric: Metric | None  # catalogue entry read (None: Prometheus' own `up`/`probe_success`)
    transform: Transform
    queries: tuple[Query, ...]
    viz: Literal["timeseries", "stat", "piechart"] = "timeseries"
    # Threshold steps above the base colour; `lower_is_bad` turns the colours round.
    thresholds: tuple[float, ...] = ()
    lower_is_bad: bool = False
    mappings: dict[str, str] = field(default_factory=dict)  # value -> text (stat panels)
    width: int = 8
    height: int = 8
    stack: bool = False
    bounded: bool = True  # a ratio panel's axis spans 0-1 (off where 99.9 % must be visible)

    @property
    def unit(self) -> str:
        return grafana_unit(self.metric, self.transform)


@dataclass(frozen=True)
class RowSpec:
    id: int
    title: str
    panels: tuple[PanelSpec, ...]


def _q(expr: str, legend: str) -> tuple[Query, ...]:
    return (Query(expr, legend),)


def _rows() -> tuple[RowSpec, ...]:
    cpu = by_name("system.cpu.usage_percent")
    mem_util = by_name("system.memory.utilization")
    mem = by_name("system.memory.usage")
    load = by_name("system.load_average")
    net = by_name("system.network.io")
    disk = by_name("system.disk.io")
    disk_ops = by_name("system.disk.operations")
    fs_util = by_name("system.filesystem.utilization")
    requests = by_name("api.requests")
    duration = by_name("api.duration")
    active = by_name("api.active_requests")
    db_duration = by_name("db.operation.duration")
    deployments = by_name("deployments")
    deploy_duration = by_name("deployment.duration")
    ws_active = by_name("websocket.active_connections")
    ws_events = by_name("websocket.connections")
    errors = by_name("errors")
    activity = by_name("user.activity")
    features = by_name("feature.usage")
    costs = by_name("resource.costs")
    plans = by_name("plan.distribution")
    health = by_name("health.check.status")
    health_duration = by_name("health.check.duration")
    breaker = by_name("circuit_breaker.state")
    transitions = by_name("circuit_breaker.transitions")
    received = by_name("gateway.points.received")
    forwarded = by_name("gateway.points.forwarded")
    rejected = by_name("gateway.points.rejected")
    overflowed = by_name("gateway.points.overflowed")
    dropped = by_name("gateway.points.dropped")
    queue = by_name("gateway.forward.queue.length")
    queue_fill = by_name("gateway.forward.queue.utilization")
    redelivered = by_name("gateway.points.redelivered")
    refused = by_name("gateway.requests.refused")
    background_errors = by_name("gateway.background.errors")
    queue_corrupt = by_name("gateway.forward.queue.corrupt")
    connections_refused = by_name("gateway.connections.refused")
    interval = by_name("gateway.observer.interval")
    series = by_name("gateway.active_series")
    request_duration = by_name("gateway.request.duration")
    proc_cpu = by_name("process.cpu.time")
    proc_rss = by_name("process.memory.rss")
    overhead = by_name("gateway.observer.overhead")

    V, R, H, X, Q = (
        Transform.VALUE,
        Transform.RATE,
        Transform.PER_HOUR,
        Transform.RATIO,
        Transform.QUANTILE,
    )
    status_text = {"0": "fail", "0.5": "warn", "1": "pass"}
    slos = _slos()
    avail, latency = slos["api-availability"], slos["api-latency"]
    period = _slo_period()
    if by_name(avail["sli"]["metric"]) != requests or by_name(latency["sli"]["metric"]) != duration:
        raise ValueError(f"{SLO_FILE}: the SLO panels expect api.requests and api.duration")

    system = RowSpec(100, "System", (
        PanelSpec(1, "cpu_usage", "CPU usage",
                  "Whole-host CPU in use. Alerts: warning above 80 % for 5 m, critical above "
                  "95 % for 2 m.",
                  cpu, V, _q(_gauge(cpu, "max", "job, instance", 'core="total", type="usage"'),
                             "{{instance}}"),
                  thresholds=ALERT_THRESHOLDS["cpu_percent"]),
        PanelSpec(2, "memory_utilization", "Memory utilization",
                  "(total - available) / total. Alerts: warning above 85 % for 5 m, critical "
                  "above 95 % for 2 m.",
                  mem_util, V, _q(_gauge(mem_util, "max", "job, instance"), "{{instance}}"),
                  thresholds=ALERT_THRESHOLDS["memory_ratio"]),
        PanelSpec(20, "load_average", "Load average", "1, 5 and 15 minute load average.",
                  load, V, _q(_gauge(load, "max", "instance, period"),
                              "{{instance}} {{period}}")),
        PanelSpec(21, "memory_by_type", "Memory by type", "Used, available, cached, buffers.",
                  mem, V, _q(_gauge(mem, "max", "instance, type",
                                    'type=~"used|available|cached|buffers"'),
                             "{{instance}} {{type}}")),
        PanelSpec(22, "network_io", "Network I/O", "Bytes per second by direction.",
                  net, R, _q(_sum_rate(net, "instance, direction"),
                             "{{instance}} {{direction}}")),
        PanelSpec(23, "disk_io", "Disk I/O", "Bytes per second read and written.",
                  disk, R, _q(_sum_rate(disk, "instance, direction"),
                              "{{instance}} {{direction}}")),
        PanelSpec(24, "disk_operations", "Disk operations", "Read and write operations per "
                  "second.", disk_ops, R, _q(_sum_rate(disk_ops, "instance, direction"),
                                              "{{instance}} {{direction}}")),
        PanelSpec(25, "filesystem_utilization", "Filesystem utilization",
                  "Space in use by mountpoint.",
                  fs_util, V, _q(_gauge(fs_util, "max", "instance, mountpoint"),
                                 "{{instance}} {{mountpoint}}"), width=16),
    ))  # fmt: skip

    api = RowSpec(101, "API", (
        PanelSpec(3, "api_request_rate", "Request rate by endpoint", "Requests per second.",
                  requests, R, _q(_sum_rate(requests, "endpoint"), "{{endpoint}}")),
        PanelSpec(4, "api_error_ratio", "Error ratio (5xx)",
                  "Share of requests answered with a 5xx. Alerts: warning above 5 % for 5 m, "
                  "critical above 15 % for 2 m.",
                  requests, X,
                  _q(_ratio(requests, "job", 'status="5xx"'), "{{job}}"),
                  thresholds=ALERT_THRESHOLDS["api_error_ratio"]),
        PanelSpec(28, "api_requests_by_status", "Requests by status class",
                  "Requests per second by status class.",
                  requests, R, _q(_sum_rate(requests, "status"), "{{status}}"), stack=True),
        PanelSpec(5, "api_latency_p50", "Latency p50 by endpoint", "Median request duration.",
                  duration, Q, _q(_quantile(0.5, duration, "endpoint"), "{{endpoint}}")),
        PanelSpec(26, "api_latency_p95", "Latency p95 by endpoint",
                  "95th percentile of request duration.",
                  duration, Q, _q(_quantile(0.95, duration, "endpoint"), "{{endpoint}}")),
        PanelSpec(27, "api_latency_p99", "Latency p99 by endpoint",
                  "99th percentile of request duration.",
                  duration, Q, _q(_quantile(0.99, duration, "endpoint"), "{{endpoint}}")),
        PanelSpec(29, "api_active_requests", "Requests in flight", "Requests being served.",
                  active, V, _q(_gauge(active, "sum", "job"), "{{job}}")),
        PanelSpec(30, "db_latency_p95", "Database operation p95", "95th percentile of "
                  "database operation duration by operation.",
                  db_duration, Q, _q(_quantile(0.95, db_duration, "operation"),
                                     "{{operation}}"), width=16),
        PanelSpec(14, "slo_availability", f"Availability over {period} "
                  f"(SLO {avail['objective']:.1%})",
                  f"SLO {avail['name']}: {avail['description']}, over the whole SLO period "
                  f"as recorded by the period rules (`slo:sli_error:ratio_rate{period}`). Below "
                  "the line the period's error budget is spent; what is left of it: panel 64. "
                  "Alerts: availability budget burn.",
                  requests, X, _q(_slo_period_sli(avail["name"], period), "{{job}}"),
                  thresholds=(float(avail["objective"]),), lower_is_bad=True, width=12,
                  bounded=False),
        PanelSpec(15, "slo_latency", f"Requests within {float(latency['sli']['threshold']):g} s "
                  f"over {period} (SLO {latency['objective']:.0%})",
                  f"SLO {latency['name']}: {latency['description']}, over the whole SLO "
                  f"period (`slo:sli_error:ratio_rate{period}`). Below the line the period's "
                  "budget is spent; what is left of it: panel 64. Alerts: latency budget burn.",
                  duration, X, _q(_slo_period_sli(latency["name"], period), "{{job}}"),
                  thresholds=(float(latency["objective"]),), lower_is_bad=True, width=12,
                  bounded=False),
        # RED per service from the recording rules (prometheus/rules/), as the alerts see it.
        PanelSpec(61, "service_request_rate", "Requests per service",
                  "Requests per second per job (`job:coderunner_api_requests:rate5m`).",
                  requests, R, _q('job:coderunner_api_requests:rate5m{job=~"$service"}',
                                  "{{job}}")),
        PanelSpec(62, "service_error_ratio", "Error ratio per service",
                  "Share of 5xx per job (`job:coderunner_api_requests_errors:ratio_rate5m`). "
                  "Alerts: API error rate, over at least 100 requests in 5 minutes.",
                  requests, X,
                  _q('job:coderunner_api_requests_errors:ratio_rate5m{job=~"$service"}',
                     "{{job}}"),
                  thresholds=ALERT_THRESHOLDS["api_error_ratio"]),
        PanelSpec(63, "service_latency_p99", "p99 per service vs latency SLO",
                  "99th percentile per job (`job:coderunner_api_duration_seconds:p99_5m`); the "
                  f"line is the latency SLO's {float(latency['sli']['threshold']):g} s.",
                  duration, Q,
                  _q('job:coderunner_api_duration_seconds:p99_5m{job=~"$service"}', "{{job}}"),
                  thresholds=(float(latency["sli"]["threshold"]),)),
        PanelSpec(64, "error_budget_remaining", "Error budget remaining (30 days)",
                  "Share of each SLO's error budget left over the SLO period "
                  "(`slo:period_error_budget_remaining:ratio`): 100 % untouched, 0 spent, "
                  "below 0 overspent.",
                  None, X,
                  _q('slo:period_error_budget_remaining:ratio{job=~"$service"}',
                     "{{job}} {{slo}}"),
                  viz="stat", thresholds=(0.0, 0.25), lower_is_bad=True, width=24,
                  bounded=False),
    ))  # fmt: skip

    deploy = RowSpec(102, "Deployments", (
        PanelSpec(31, "deployment_rate", "Deployments by status",
                  "Deployments finished per second, by final status.",
                  deployments, R, _q(_sum_rate(deployments, "status"), "{{status}}"),
                  stack=True),
        PanelSpec(6, "deployment_success_ratio", "Deployment success ratio",
                  "Share of deployments that succeeded, by runtime type. Alert: warning when "
                  "more than 10 % fail.",
                  deployments, X,
                  _q(_ratio(deployments, "type", 'status="success"'), "{{type}}"),
                  thresholds=(DEPLOYMENT_SUCCESS_FLOOR,), lower_is_bad=True),
        PanelSpec(32, "deployment_duration", "Deployment duration p50 / p95",
                  "Build-and-start duration by runtime type.",
                  deploy_duration, Q,
                  (Query(_quantile(0.5, deploy_duration, "type"), "p50 {{type}}"),
                   Query(_quantile(0.95, deploy_duration, "type"), "p95 {{type}}"))),
    ))  # fmt: skip

    websocket = RowSpec(103, "WebSocket", (
        PanelSpec(33, "websocket_open", "Open WebSocket connections", "Connections open now.",
                  ws_active, V, _q(_gauge(ws_active, "sum", "job"), "{{job}}"), width=12),
        PanelSpec(34, "websocket_events", "WebSocket connection events",
                  "Authenticated, rejected and closed connections per second.",
                  ws_events, R, _q(_sum_rate(ws_events, "status"), "{{status}}"), width=12),
    ))  # fmt: skip

    errs = RowSpec(104, "Errors", (
        PanelSpec(35, "errors_by_type", "Errors by type", "Errors per second by type.",
                  errors, R, _q(_sum_rate(errors, "type"), "{{type}}"), width=12, stack=True),
        PanelSpec(36, "errors_by_severity", "Errors by severity",
                  "Errors per second by severity and service.",
                  errors, R, _q(_sum_rate(errors, "severity, service"),
                                "{{severity}} {{service}}"), width=12, stack=True),
    ))  # fmt: skip

    business = RowSpec(105, "Business", (
        PanelSpec(37, "user_activity", "User activity by action", "Actions per second.",
                  activity, R, _q(_sum_rate(activity, "action"), "{{action}}"), stack=True),
        PanelSpec(38, "activity_by_plan", "User activity by plan", "Actions per second by "
                  "the user's plan.",
                  activity, R, _q(_sum_rate(activity, "plan_type"), "{{plan_type}}"),
                  stack=True),
        PanelSpec(39, "feature_usage", "Feature usage", "Uses per second by feature.",
                  features, R, _q(_sum_rate(features, "feature"), "{{feature}}"), stack=True),
        PanelSpec(40, "resource_costs", "Resource cost rate (USD per hour)",
                  "Accrued cost by resource type, as US dollars per hour.",
                  costs, H, _q(_sum_rate(costs, "resource_type") + " * 3600",
                               "{{resource_type}}"), width=16, stack=True),
        PanelSpec(41, "plan_mix", "Plan mix", "Users on each plan now.",
                  plans, V, _q(_gauge(plans, "sum", "plan_type"), "{{plan_type}}"),
                  viz="piechart"),
    ))  # fmt: skip

    health_row = RowSpec(106, "Health and circuit breakers", (
        PanelSpec(7, "health_checks", "Health checks",
                  "Last result per dependency: pass, warn or fail. Alerts: database "
                  "connection failure, health check failing.",
                  health, V, _q(_gauge(health, "min", "component"), "{{component}}"),
                  viz="stat", thresholds=(0.5, 1.0), lower_is_bad=True,
                  mappings=status_text, width=12),
        PanelSpec(8, "circuit_breakers_open", "Circuit breakers open",
                  "1 while a dependency's circuit breaker is open. Alert: circuit breaker open.",
                  breaker, V, _q(_gauge(breaker, "max", "component", 'state="open"'),
                                 "{{component}}"),
                  viz="stat", thresholds=(1.0,), mappings={"0": "closed", "1": "open"},
                  width=12),
        PanelSpec(9, "targets_up", "Scrape targets up",
                  "Prometheus' `up` per scrape job. Alerts: gateway down, target down.",
                  None, V, _q("min by (job) (up)", "{{job}}"), viz="stat",
                  thresholds=(1.0,), lower_is_bad=True, mappings={"0": "down", "1": "up"},
                  width=12),
        PanelSpec(10, "endpoint_probes", "Endpoint probes",
                  "Blackbox probes of the health endpoints. Alert: endpoint probe failing.",
                  None, V, _q("min by (instance) (probe_success)", "{{instance}}"), viz="stat",
                  thresholds=(1.0,), lower_is_bad=True, mappings={"0": "failing", "1": "ok"},
                  width=12),
        PanelSpec(42, "health_check_duration", "Health check duration",
                  "Duration of the last run of each check.",
                  health_duration, V, _q(_gauge(health_duration, "max", "component"),
                                         "{{component}}"), width=12),
        PanelSpec(43, "circuit_breaker_transitions", "Circuit breaker transitions",
                  "State changes per second.",
                  transitions, R, _q(_sum_rate(transitions, "component, to"),
                                     "{{component}} -> {{to}}"), width=12),
    ))  # fmt: skip

    gateway = RowSpec(107, "Gateway", (
        PanelSpec(44, "points_received", "Points received", "Data points per second by "
                  "transport.",
                  received, R, _q(_sum_rate(received, "transport"), "{{transport}}"),
                  stack=True),
        PanelSpec(45, "points_forwarded", "Points forwarded", "Data points per second sent "
                  "upstream.",
                  forwarded, R, _q(_sum_rate(forwarded, "instance"), "{{instance}}")),
        PanelSpec(11, "points_rejected", "Points rejected", "Refused data points per second "
                  "by reason. Alert: gateway rejecting points.",
                  rejected, R, _q(_sum_rate(rejected, "reason"), "{{reason}}")),
        PanelSpec(12, "points_overflowed", "Cardinality overflow", "Points folded into the "
                  "overflow series per second, by metric. Alert: cardinality overflow.",
                  overflowed, R, _q(_sum_rate(overflowed, "metric"), "{{metric}}")),
        PanelSpec(13, "points_dropped", "Points dropped", "Accepted points dropped per second "
                  "by reason. Alert: gateway dropping points.",
                  dropped, R, _q(_sum_rate(dropped, "reason"), "{{reason}}")),
        PanelSpec(16, "forward_queue", "Forward queue fill", "How full the forward queue is "
                  "(batches for the memory queue, bytes for the disk queue). Alert: forward "
                  f"queue filling, above {FORWARD_QUEUE_ALERT:.0%}.",
                  queue_fill, V, _q(_gauge(queue_fill, "max", "job, instance"), "{{instance}}"),
                  thresholds=(FORWARD_QUEUE_ALERT,)),
        PanelSpec(51, "forward_queue_length", "Forward queue length",
                  "Batches waiting to be forwarded.",
                  queue, V, _q(_gauge(queue, "max", "instance"), "{{instance}}")),
        PanelSpec(52, "points_redelivered", "Points redelivered", "Points sent again after a "
                  "send whose outcome was unknown (timeout, crash), per second.",
                  redelivered, R, _q(_sum_rate(redelivered, "instance"), "{{instance}}")),
        PanelSpec(53, "requests_refused", "Requests refused", "Export requests refused whole, "
                  "per second, by transport and reason.",
                  refused, R, _q(_sum_rate(refused, "transport, reason"),
                                 "{{transport}} {{reason}}")),
        PanelSpec(46, "active_series", "Active series", "Series held for exposition.",
                  series, V, _q(_gauge(series, "sum", "instance"), "{{instance}}")),
        PanelSpec(47, "export_duration_p99", "Export request duration p99",
                  "99th percentile of the time to handle one export request.",
                  request_duration, Q, _q(_quantile(0.99, request_duration, "transport"),
                                          "{{transport}}")),
        PanelSpec(48, "gateway_cpu", "Gateway CPU", "CPU of the gateway process "
                  "(100 % = one core).",
                  proc_cpu, R, _q(_sum_rate(proc_cpu, "instance"), "{{instance}}")),
        PanelSpec(49, "gateway_memory", "Gateway memory", "Resident memory of the gateway.",
                  proc_rss, V, _q(_gauge(proc_rss, "max", "instance"), "{{instance}}")),
        PanelSpec(50, "observer_overhead", "Observer overhead", "CPU the system observer "
                  "costs, as a share of one core.",
                  overhead, V, _q(_gauge(overhead, "max", "instance"), "{{instance}}")),
        PanelSpec(54, "observer_interval", "Observer interval", "Current interval of the "
                  "adaptive system observer (longer under load or when over its CPU budget).",
                  interval, V, _q(_gauge(interval, "max", "instance"), "{{instance}}")),
        # Counters that only exist once something happened fall back to one 0 line.
        PanelSpec(67, "background_errors", "Background task errors and damaged queue files",
                  "Unexpected errors per second that a background task (memory limiter, "
                  "forwarder) survived, by task, and damaged disk-queue files set aside at "
                  "start. Alerts: gateway background task failing, gateway disk queue corrupt.",
                  background_errors, R, (
                      Query(_sum_rate(background_errors, "instance, task"),
                            "{{task}} {{instance}}"),
                      Query(_sum_rate(queue_corrupt, "instance") + " or vector(0)",
                            "queue files set aside {{instance}}"),
                  )),
        PanelSpec(68, "connections_refused", "Connections refused",
                  "HTTP connections closed at the gateway's limits per second, by reason "
                  "(header_too_large, too_many_headers, header_timeout, connection_limit). "
                  "Alerts: gateway refusing connections, gateway connection limit reached.",
                  connections_refused, R,
                  _q(_sum_rate(connections_refused, "instance, reason") + " or vector(0)",
                     "{{reason}} {{instance}}")),
    ))  # fmt: skip

    # The monitoring itself and the hosts under it: not a service's metrics, so no $service
    # filter (a service picked in the variable must not blank these).
    pipeline = RowSpec(108, "Alerting pipeline and hosts", (
        PanelSpec(55, "services_reporting", "Services reporting",
                  "Instances pushing metrics per job (`target_info`, one per OTel resource). "
                  "A job that drops to nothing has stopped reporting. Alert: service stopped "
                  "reporting.",
                  None, V, _q("count by (job) (target_info)", "{{job}}")),
        PanelSpec(56, "rule_evaluation_failures", "Rule evaluation failures",
                  "Failed rule evaluations per second, by rule group; the alerts of a failing "
                  "group cannot fire. Alert: Prometheus rule evaluation failures.",
                  None, V, _q("sum by (rule_group) "
                              "(rate(prometheus_rule_evaluation_failures_total[$__rate_interval]))",
                              "{{rule_group}}")),
        PanelSpec(57, "alert_delivery", "Alert delivery failures",
                  "Prometheus -> Alertmanager send errors, and Alertmanager notifications that "
                  "failed per integration (a missing secret file shows here). Alerts: "
                  "Prometheus Alertmanager unreachable, Alertmanager notifications failing.",
                  None, V, (
                      Query("sum by (alertmanager) (rate(prometheus_notifications_errors_total"
                            "[$__rate_interval]))", "prometheus -> {{alertmanager}}"),
                      Query("sum by (integration) (increase(alertmanager_notifications_failed_total"
                            "[1h]))", "{{integration}} failed (1h)"),
                      Query("min by (instance) (prometheus_notifications_alertmanagers_discovered)",
                            "Alertmanagers discovered"),
                  )),
        PanelSpec(58, "config_reloads", "Config reloads",
                  "1 while the last configuration reload succeeded. Alert: config reload "
                  "failed.",
                  None, V, (
                      Query("min by (job, instance) (prometheus_config_last_reload_successful)",
                            "{{job}} {{instance}}"),
                      Query("min by (job, instance) (alertmanager_config_last_reload_successful)",
                            "{{job}} {{instance}}"),
                  )),
        PanelSpec(59, "tsdb_storage", "Prometheus storage",
                  "TSDB block bytes against the retention size limit. Alert: Prometheus storage "
                  "filling up (the size limit would cut the 30-day SLO period short).",
                  None, V, (
                      Query("max by (instance) (prometheus_tsdb_storage_blocks_bytes)",
                            "blocks {{instance}}"),
                      Query("max by (instance) (prometheus_tsdb_retention_limit_bytes)",
                            "limit {{instance}}"),
                  )),
        PanelSpec(60, "host_disk_free", "Host disk free",
                  "Free share of each real file system (node_exporter). Alerts: host disk will "
                  "fill in 24h / 4h.",
                  None, V, _q('min by (instance, mountpoint) (node_filesystem_avail_bytes{fstype!~'
                              '"tmpfs|ramfs|squashfs|nsfs|overlay|fuse.*"} / '
                              "node_filesystem_size_bytes)", "{{instance}} {{mountpoint}}")),
    ))  # fmt: skip

    # The OpenTelemetry Collector's own metrics (job otel-collector-self, deployment with a
    # Collector; prometheus/rules/collector.yml). Series a Collector only creates once they
    # count something (refusals, failures) fall back to 0 beside a series it always has, so a
    # healthy Collector shows 0, not "No data"; a Collector without a queued exporter shows a
    # queue fill of 0.
    collector = RowSpec(109, "Collector", (
        PanelSpec(65, "collector_points", "Collector points in and out",
                  "Points per second the Collector's receivers accepted and refused, and its "
                  "exporters sent and failed to send (after retries: lost). Alerts: Collector "
                  "refusing points, Collector export failing.",
                  None, V, (
                      Query(_otelcol_rate("receiver_accepted", "instance"),
                            "accepted {{instance}}"),
                      Query(_otelcol_rate("receiver_refused", "instance", "receiver_accepted"),
                            "refused {{instance}}"),
                      Query(_otelcol_rate("exporter_sent", "instance, exporter"),
                            "sent {{exporter}} {{instance}}"),
                      Query(_otelcol_rate("exporter_send_failed", "instance, exporter",
                                          "exporter_sent"),
                            "failed {{exporter}} {{instance}}"),
                  )),
        PanelSpec(66, "collector_pressure", "Collector queue and memory limiter",
                  "How full each exporter's sending queue is (0-1), and points per second the "
                  "memory limiter refused. Alerts: Collector sending queue filling (above "
                  f"{COLLECTOR_QUEUE_ALERT:.0%}), Collector memory limiter refusing.",
                  None, V, (
                      Query("max by (instance, exporter) (otelcol_exporter_queue_size"
                            " / otelcol_exporter_queue_capacity) or on (instance)"
                            ' max by (instance) (0 * up{job="otel-collector-self"})',
                            "queue {{exporter}} {{instance}}"),
                      Query(_otelcol_rate("processor_memory_limiter_refused", "instance",
                                          "processor_memory_limiter_accepted"),
                            "memory limiter refused {{instance}}"),
                  ), thresholds=(COLLECTOR_QUEUE_ALERT,)),
    ))  # fmt: skip

    # The databases behind the services, through the exporters prometheus.yml scrapes (jobs
    # postgres and redis in compose): reachability and connections against their limits.
    databases = RowSpec(110, "Databases", (
        PanelSpec(69, "databases_up", "Databases up",
                  "Whether each exporter reaches its database (`pg_up`, `redis_up`); an "
                  "exporter that is down itself shows in panel 9 (TargetDown).",
                  None, V, (
                      Query("min by (instance) (pg_up)", "PostgreSQL {{instance}}"),
                      Query("min by (instance) (redis_up)", "Redis {{instance}}"),
                  ), viz="stat", thresholds=(1.0,), lower_is_bad=True,
                  mappings={"0": "down", "1": "up"}),
        PanelSpec(70, "postgres_connections", "PostgreSQL connections",
                  "Backends connected per database server, against `max_connections`: "
                  "near the limit, new connections (the services' pools) are refused.",
                  None, V, (
                      Query("sum by (instance) (pg_stat_database_numbackends)",
                            "connected {{instance}}"),
                      Query("max by (instance) (pg_settings_max_connections)",
                            "max_connections {{instance}}"),
                  )),
        PanelSpec(71, "redis_clients", "Redis clients",
                  "Clients connected per Redis server, against its `maxclients`.",
                  None, V, (
                      Query("max by (instance) (redis_connected_clients)",
                            "connected {{instance}}"),
                      Query("max by (instance) (redis_config_maxclients)",
                            "maxclients {{instance}}"),
                  )),
    ))  # fmt: skip

    # The System and Gateway rows show the hosts and the gateway, not a service: picking a
    # service in $service (or its instances) must not blank them.
    system = _unfiltered(system)
    gateway = _unfiltered(gateway)
    return (system, api, deploy, websocket, errs, business, health_row, gateway, pipeline,
            collector, databases)  # fmt: skip


def _unfiltered(row: RowSpec) -> RowSpec:
    def strip(expr: str) -> str:
        return expr.replace("{" + _MATCH + ", ", "{").replace("{" + _MATCH + "}", "")

    panels = tuple(
        replace(p, queries=tuple(Query(strip(q.expr), q.legend) for q in p.queries))
        for p in row.panels
    )
    return replace(row, panels=panels)


ROWS: tuple[RowSpec, ...] = _rows()
PANELS: tuple[PanelSpec, ...] = tuple(p for row in ROWS for p in row.panels)


def _check_ids() -> None:
    ids = [p.id for p in PANELS] + [r.id for r in ROWS]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate panel ids: {duplicates}")
    keys = [p.key for p in PANELS]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate panel keys")


# --- Grafana objects ------------------------------------------------------------------------


def _steps(spec: PanelSpec) -> list[dash_m.Threshold]:
    bad_to_good = ["red", "orange", "green"] if len(spec.thresholds) == 2 else ["red", "green"]
    colours = bad_to_good if spec.lower_is_bad else bad_to_good[::-1]
    steps = [dash_m.Threshold(value=None, color=colours[0])]
    steps += [
        dash_m.Threshold(value=v, color=c)
        for v, c in zip(spec.thresholds, colours[1:], strict=True)
    ]
    return steps


def _targets(spec: PanelSpec) -> list[prometheus.Dataquery]:
    # A stat panel shows "now": an instant query, so a series that vanished (a check that
    # stopped reporting) is gone, instead of a range query reduced to its last non-null
    # value, which shows the last "pass" for as long as the range reaches back.
    targets = []
    for i, q in enumerate(spec.queries):
        target = (
            prometheus.Dataquery()
            .expr(q.expr)
            .legend_format(q.legend)
            .ref_id(chr(ord("A") + i))
            .datasource(_DS)
        )
        targets.append(target.instant() if spec.viz == "stat" else target.range())
    return targets


def _mappings(spec: PanelSpec) -> list[dash_m.ValueMapping]:
    if not spec.mappings:
        return []
    options = {
        value: dash_m.ValueMappingResult(text=text, index=i)
        for i, (value, text) in enumerate(spec.mappings.items())
    }
    return [dash_m.ValueMap(options=options)]


def _panel(spec: PanelSpec) -> Any:
    if spec.viz == "timeseries":
        panel: Any = (
            timeseries.Panel()
            .legend(
                common_b.VizLegendOptions()
                .display_mode(common_m.LegendDisplayMode.LIST)
                .placement(common_m.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(
                common_b.VizTooltipOptions()
                .mode(common_m.TooltipDisplayMode.MULTI)
                .sort(common_m.SortOrder.DESCENDING)
            )
            .fill_opacity(10 if not spec.stack else 30)
            .line_width(1)
        )
        if spec.stack:
            panel = panel.stacking(
                common_b.StackingConfig().mode(common_m.StackingMode.NORMAL).group("A")
            )
        if spec.thresholds:
            panel = panel.thresholds_style(
                common_b.GraphThresholdsStyleConfig().mode(common_m.GraphTresholdsStyleMode.LINE)
            )
    elif spec.viz == "stat":
        panel = (
            stat.Panel()
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .color_mode(common_m.BigValueColorMode.BACKGROUND)
            .graph_mode(common_m.BigValueGraphMode.NONE)
        )
    else:
        panel = (
            piechart.Panel()
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .pie_type(piechart_m.PieChartType.DONUT)
            .legend(
                piechart.PieChartLegendOptions()
                .show_legend(True)
                .display_mode(common_m.LegendDisplayMode.TABLE)
                .placement(common_m.LegendPlacement.RIGHT)
                .values(
                    [piechart_m.PieChartLegendValues.VALUE, piechart_m.PieChartLegendValues.PERCENT]
                )
            )
        )
    panel = (
        panel.id(spec.id)
        .title(spec.title)
        .description(spec.description)
        .datasource(_DS)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
        .targets(_targets(spec))
    )
    if spec.thresholds:
        panel = panel.thresholds(
            dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE).steps(_steps(spec))
        )
    if spec.mappings:
        panel = panel.mappings(_mappings(spec))
    if spec.transform is Transform.RATIO and spec.bounded:
        panel = panel.min(0).max(1)
    return panel


def _variables() -> list[dash_b.QueryVariable]:
    # Grafana sends a multi-value "All" as (a|b|c), so the queries use =~ matchers.
    every = dash_m.VariableOption(selected=True, text="All", value="$__all")
    service = (
        dash_b.QueryVariable("service")
        .label("Service")
        .description("Prometheus `job`: the OTel service.namespace/service.name.")
        .datasource(_DS)
        # target_info: one series per pushing resource, instead of every series of the
        # namespace (`{__name__=~"coderunner_.+"}` touches them all).
        .query("label_values(target_info, job)")
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(every)
    )
    instance = (
        dash_b.QueryVariable("instance")
        .label("Instance")
        .description("Prometheus `instance`: the OTel service.instance.id.")
        .datasource(_DS)
        .query('label_values(target_info{job=~"$service"}, instance)')
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(every)
    )
    return [service, instance]


def build() -> dict[str, Any]:
    """The dashboard as the JSON object Grafana reads."""
    _check_ids()
    board = (
        dash_b.Dashboard(DASHBOARD_TITLE)
        .uid(DASHBOARD_UID)
        .description(
            "Production overview: system, API, deployments, WebSocket, errors, business, "
            "health and the telemetry gateway. Generated by dashboards/generate.py from "
            "gateway/catalogue.py; do not edit the JSON."
        )
        .tags(["coderunner", "telemetry-gateway", "generated"])
        .editable()
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .variables(_variables())
        .annotation(
            dash_b.AnnotationQuery()
            .name("Firing alerts")
            .datasource(_DS)
            .enable(True)
            .icon_color("red")
            .expr('ALERTS{alertstate="firing", job=~"$service"}')
        )
    )
    for row in ROWS:
        board = board.with_row(dash_b.Row(row.title).id(row.id))
        for spec in row.panels:
            board = board.with_panel(_panel(spec))
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def panel_map() -> dict[str, Any]:
    """id -> panel, for alert links (dashboards/panels.json, docs/operations.md)."""
    slug = DASHBOARD_UID
    return {
        "dashboard_uid": DASHBOARD_UID,
        "url": f"/d/{DASHBOARD_UID}/{slug}",
        "panels": [
            {
                "id": p.id,
                "key": p.key,
                "title": p.title,
                "row": row.title,
                "url": f"/d/{DASHBOARD_UID}/{slug}?viewPanel={p.id}",
            }
            for row in ROWS
            for p in sorted(row.panels, key=lambda p: p.id)
        ],
    }


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[Path, str]:
    """Every generated file and its exact text."""
    return {DASHBOARD_FILE: _dump(build()), PANELS_FILE: _dump(panel_map())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed files differ from the code"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        names = ", ".join(str(p.relative_to(REPO)) for p in stale)
        print(f"stale: {names}; run `python -m dashboards.generate`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
