"""The generated dashboard: up to date, units from the catalogue, thresholds equal to the alert
thresholds, and every alert's dashboard link landing on a panel about the alert's metric."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from dashboards import generate
from gateway.catalogue import CATALOGUE, Kind, Metric

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "json" / "coderunner-overview.json"
RULES = REPO / "prometheus" / "rules"

_BY_PROM = {m.prometheus_name(): m for m in CATALOGUE}
# Catalogue names, not recorded ones (job:coderunner_api_requests:rate5m).
_METRIC_RE = re.compile(r"(?<![\w:])coderunner_[a-z0-9_]+(?![\w:])")
_RECORDED_RE = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")
_OTHER_RE = re.compile(
    r"\b(?:(?:prometheus|alertmanager|node|otelcol|pg|redis)_[a-z0-9_]+|target_info)\b"
)

# Grafana unit ids this dashboard may use (Grafana's valueFormats registry), so a typo such
# as "byte" or "req/s" fails here rather than rendering as a bare number.
GRAFANA_UNITS = {
    "short", "none", "percent", "percentunit", "s", "ms", "bytes", "decbytes", "Bps", "binBps",
    "reqps", "pps", "iops", "cps", "ops", "currencyUSD",
}  # fmt: skip

# The unit a panel must show, restated from the catalogue's UCUM units (not imported from the
# generator, so a wrong mapping there fails here).
EXPECTED_VALUE = {
    "s": "s",
    "By": "bytes",
    "%": "percent",
    "1": "percentunit",
    "{USD}": "currencyUSD",
}
EXPECTED_RATE = {"By": "Bps", "s": "percentunit", "{request}": "reqps", "{packet}": "pps",
                 "{operation}": "iops"}  # fmt: skip


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel["targets"]]


def _metrics_in(expr: str) -> set[Metric]:
    found = set()
    for name in _METRIC_RE.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in _BY_PROM else name
        assert base in _BY_PROM, f"{name} is not a catalogue metric"
        found.add(_BY_PROM[base])
    return found


def _expected_unit(expr: str, metric: Metric) -> str:
    if "histogram_quantile(" in expr:
        assert metric.kind is Kind.HISTOGRAM and re.search(r"_bucket[{\[]", expr)
        return EXPECTED_VALUE[metric.unit]
    if " / " in expr:
        return "percentunit"
    if "rate(" in expr:
        assert metric.kind is Kind.COUNTER, f"rate() of the {metric.prometheus_type} {metric.name}"
        if "* 3600" in expr:
            return EXPECTED_VALUE[metric.unit]
        return EXPECTED_RATE.get(metric.unit, "cps")
    assert metric.kind in (Kind.GAUGE, Kind.UPDOWN), f"{metric.name} plotted without rate()"
    return EXPECTED_VALUE.get(metric.unit, "short")


def test_committed_files_are_what_the_generator_writes() -> None:
    for path, text in generate.render().items():
        assert path.exists(), f"{path} is missing: run python -m dashboards.generate"
        assert path.read_text() == text, f"{path} is stale: run python -m dashboards.generate"


def test_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "coderunner-overview.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(generate, "DASHBOARD_FILE", stale)
    monkeypatch.setattr(generate, "PANELS_FILE", tmp_path / "panels.json")
    monkeypatch.setattr(generate, "REPO", tmp_path)
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0


def test_every_panel_unit_matches_the_catalogue(dashboard: dict[str, Any]) -> None:
    checked = 0
    for panel in _panels(dashboard):
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in GRAFANA_UNITS, f"panel {panel['id']}: unknown Grafana unit {unit}"
        for expr in _exprs(panel):
            if "slo:" in expr:  # SLO ratios (error budget remaining): 0-1
                assert unit == "percentunit", panel["id"]
                continue
            if _RECORDED_RE.search(expr):  # a recording rule: check what it computes
                expr = _resolve(expr, _recording_rules())
            metrics = _metrics_in(expr)
            if not metrics:  # Prometheus' own up / probe_success (0 or 1)
                assert unit == "short", panel["id"]
                continue
            if len(metrics) > 1:
                # One metric over another (queue length / capacity): same unit, a 0-1 ratio.
                assert " / " in expr, f"panel {panel['id']} mixes {metrics}"
                assert len({m.unit for m in metrics}) == 1, f"panel {panel['id']}: {metrics}"
                assert unit == "percentunit", panel["id"]
            else:
                assert unit == _expected_unit(expr, metrics.pop()), f"panel {panel['id']}: {expr}"
            checked += 1
    assert checked >= 40


def test_unit_check_can_fail() -> None:
    requests = _BY_PROM["coderunner_api_requests_total"]
    assert _expected_unit("sum(rate(coderunner_api_requests_total[1m]))", requests) == "reqps"
    with pytest.raises(AssertionError):
        _expected_unit("coderunner_api_requests_total", requests)


def test_panels_cover_every_layer(dashboard: dict[str, Any]) -> None:
    used = set()
    for panel in _panels(dashboard):
        for expr in _exprs(panel):
            used |= _metrics_in(expr)
    names = {m.name for m in used}
    for required in ("system.cpu.usage_percent", "system.memory.utilization", "system.load_average",
                     "system.network.io", "system.disk.io", "system.filesystem.utilization",
                     "api.requests", "api.duration", "deployments", "deployment.duration",
                     "websocket.active_connections", "websocket.connections", "errors",
                     "user.activity", "feature.usage", "resource.costs", "plan.distribution",
                     "health.check.status", "circuit_breaker.state", "gateway.points.received",
                     "gateway.points.rejected", "gateway.points.overflowed",
                     "gateway.forward.queue.length", "gateway.forward.queue.utilization",
                     "gateway.requests.refused", "gateway.points.redelivered"):  # fmt: skip
        assert required in names, required
    titles = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert len(titles) == 11
    # The recording rules are used (what the alerts read is what the dashboard shows).
    exprs = " ".join(e for p in _panels(dashboard) for e in _exprs(p))
    for record in ("job:coderunner_api_requests:rate5m",
                   "job:coderunner_api_requests_errors:ratio_rate5m",
                   "job:coderunner_api_duration_seconds:p99_5m",
                   "slo:period_error_budget_remaining:ratio"):  # fmt: skip
        assert record in exprs, record


def test_ids_unique_and_stable(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "coderunner-overview"
    mapping = json.loads((REPO / "dashboards" / "panels.json").read_text())
    by_id = {p["id"]: p for p in _panels(dashboard)}
    for entry in mapping["panels"]:
        assert by_id[entry["id"]]["title"] == entry["title"]
        assert entry["url"] == f"/d/coderunner-overview/coderunner-overview?viewPanel={entry['id']}"
    # The ids alerts link to (docs/operations.md lists them); changing one breaks a link.
    keys = {e["id"]: e["key"] for e in mapping["panels"]}
    assert {i: keys[i] for i in range(1, 17)} == {
        1: "cpu_usage",
        2: "memory_utilization",
        3: "api_request_rate",
        4: "api_error_ratio",
        5: "api_latency_p50",
        6: "deployment_success_ratio",
        7: "health_checks",
        8: "circuit_breakers_open",
        9: "targets_up",
        10: "endpoint_probes",
        11: "points_rejected",
        12: "points_overflowed",
        13: "points_dropped",
        14: "slo_availability",
        15: "slo_latency",
        16: "forward_queue",
    }


def test_variables_service_and_instance(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"service", "instance"}
    assert variables["service"]["query"].endswith(", job)")
    assert variables["instance"]["query"].endswith(", instance)")
    # Cheap: one target_info series per resource, not every series of the namespace.
    assert "target_info" in variables["service"]["query"]
    assert "__name__" not in variables["service"]["query"] + variables["instance"]["query"]
    unfiltered = {p.id for row in generate.ROWS if row.title in ("System", "Gateway")
                  for p in row.panels}  # fmt: skip
    assert unfiltered
    for panel in _panels(dashboard):
        for expr in _exprs(panel):
            if panel["id"] in unfiltered:
                # Hosts and the gateway itself: picking a service must not blank them.
                assert "$service" not in expr and "$instance" not in expr, expr
            elif _metrics_in(expr):
                assert 'job=~"$service"' in expr and 'instance=~"$instance"' in expr, expr


def test_stat_panels_show_now_not_the_last_value_of_the_range(dashboard: dict[str, Any]) -> None:
    """A range query reduced with lastNotNull shows a check that vanished as its last "pass"
    for as long as the range reaches back; an instant query returns nothing for it."""
    stats = [p for p in _panels(dashboard) if p["type"] == "stat"]
    assert len(stats) >= 5
    for panel in stats:
        for target in panel["targets"]:
            assert target.get("instant") is True and not target.get("range"), panel["title"]


def _steps(panel: dict[str, Any]) -> list[float]:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    return [s["value"] for s in steps if s["value"] is not None]


def test_thresholds_equal_the_design_alert_thresholds(dashboard: dict[str, Any]) -> None:
    by_id = {p["id"]: p for p in _panels(dashboard)}
    # DESIGN.md "Alert thresholds": CPU 80/95 %, memory 85/95 %, API error rate 5/15 %.
    assert _steps(by_id[1]) == [80, 95]
    assert by_id[1]["fieldConfig"]["defaults"]["unit"] == "percent"
    assert _steps(by_id[2]) == [0.85, 0.95]
    assert by_id[2]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert _steps(by_id[4]) == [0.05, 0.15]
    assert by_id[4]["fieldConfig"]["defaults"]["unit"] == "percentunit"


def _recording_rules() -> dict[str, list[str]]:
    """record name -> its expressions (one name may be recorded per label set, as SLO rules do)."""
    records: dict[str, list[str]] = {}
    for path in sorted(RULES.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    records.setdefault(rule["record"], []).append(str(rule["expr"]))
    return records


def _resolve(expr: str, records: dict[str, list[str]]) -> str:
    """The alert's expression with recording rules replaced by what they compute."""
    for _ in range(5):
        for name, bodies in records.items():
            pattern = rf"(?<![\w:]){re.escape(name)}(?![\w:])"
            body = "(" + " or ".join(bodies) + ")"
            expr = re.sub(pattern, lambda _, body=body: body, expr)
    return expr


def _alerts() -> list[dict[str, Any]]:
    alerts = []
    for path in sorted(RULES.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            alerts += [r for r in group.get("rules", []) if "alert" in r]
    return alerts


@pytest.mark.skipif(not (RULES / "alerts.yml").exists(), reason="alert rules not there yet")
def test_alert_links_land_on_a_panel_about_the_alert(dashboard: dict[str, Any]) -> None:
    by_id = {p["id"]: p for p in _panels(dashboard)}
    records = _recording_rules()
    linked = 0
    problems = []
    for alert in _alerts():
        url = alert.get("annotations", {}).get("dashboard_url")
        if not url:
            continue
        linked += 1
        parts = urlsplit(url)
        assert parts.path.startswith("/d/coderunner-overview/"), url
        panel_id = int(parse_qs(parts.query)["viewPanel"][0])
        panel = by_id.get(panel_id)
        if panel is None:
            problems.append(f"{alert['alert']}: no panel {panel_id}")
            continue
        expr = _resolve(str(alert["expr"]), records)
        # A panel that reads recorded series shows what they compute (the SLO panels read the
        # period rules).
        panel_exprs = _resolve(" ".join(_exprs(panel)), records)
        panel_names = set(_METRIC_RE.findall(panel_exprs))
        panel_names |= {n for n in ("up", "probe_success") if n in " ".join(_exprs(panel))}
        # Prometheus', Alertmanager's, node_exporter's own series and target_info.
        panel_names |= set(_OTHER_RE.findall(" ".join(_exprs(panel))))
        if alert["alert"] == "Watchdog":
            continue  # vector(1): no series to show; it links to the targets panel
        if not any(re.search(rf"\b{re.escape(n)}\b", expr) for n in panel_names):
            problems.append(f"{alert['alert']}: panel {panel_id} ({panel['title']}) shows none "
                            f"of the alert's series")  # fmt: skip
            continue
        # An alert on "value > X" draws its line at X (or at 1 - X on a success-ratio panel,
        # whose base colour is red).
        compare = re.search(r">\s*([0-9.]+)\s*$", str(alert["expr"]).strip())
        steps = _steps(panel)
        if compare and steps:
            x = float(compare.group(1))
            base = panel["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["color"]
            want = round(1 - x, 9) if base == "red" else x
            if want not in steps:
                problems.append(f"{alert['alert']}: threshold {x} not drawn on panel {panel_id}")
    assert linked > 0
    assert problems == [], "\n".join(problems)


def test_operations_doc_lists_every_panel_id() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    rows = {
        int(m.group(1)): (m.group(2), m.group(3))
        for m in re.finditer(r"^\| (\d+) \| [^|]+ \| ([^|]+?) \| `(\w+)` \|", doc, re.M)
    }
    mapping = json.loads((REPO / "dashboards" / "panels.json").read_text())
    expected = {p["id"]: (p["title"], p["key"]) for p in mapping["panels"]}
    assert rows == expected


def test_provisioned_datasource_matches_dashboard_and_scrape_interval() -> None:
    provisioning = REPO / "dashboards" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (prom,) = datasource["datasources"]
    assert prom["uid"] == generate.DATASOURCE_UID
    assert prom["url"] == "${PROMETHEUS_URL}"
    # $__rate_interval is four of these: equal to the scrape interval, rate() sees 4 samples.
    scrape = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    assert prom["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in _panels(dashboard) for t in p["targets"]}
    assert uids == {generate.DATASOURCE_UID}
    provider = yaml.safe_load((provisioning / "dashboards" / "coderunner.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
