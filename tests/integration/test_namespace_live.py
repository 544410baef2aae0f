"""A live `acme` world: an `acme` gateway fed by the OpenTelemetry SDK with every catalogue
metric (named under the default namespace, as the demo and the dashboards' live test send them:
the gateway's views move them), a real Prometheus running the rules `telemetry-gateway render
--namespace acme` wrote, and every panel of the rendered dashboard queried through Prometheus.

Every rule evaluates without error, the recording rules the panels read have data, every panel
query parses, every panel that reads the namespace's metrics or recorded series returns data,
and the always-firing Watchdog carries the configured links. (The panels that read only
Prometheus', Alertmanager's or node_exporter's own metrics need those targets, which
tests/integration/test_dashboards_live.py scrapes for the default rendering.)
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.render import RenderOptions, render
from tests.support.dashboards_live import (
    SCRAPE_SECONDS,
    Traffic,
    blackbox_exporter,
    opened_with_all,
    prometheus_config,
    substitute,
    wait_for_every_metric,
    wait_for_series,
)
from tests.support.prometheus import query_response
from tests.support.servers import run_gateway, run_prometheus

pytestmark = pytest.mark.integration

RUNBOOKS = "https://wiki.acme.test/runbooks"
DASHBOARD = "https://grafana.acme.test/d/acme-overview/acme-overview"
_OURS = re.compile(r"(?<![\w:])acme_\w+|\b[a-z_]+:acme_\w+:\w+")


def _panel_failures(prometheus: str, board: dict[str, Any]) -> tuple[list[str], int]:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    _, all_services, all_instances = opened_with_all(prometheus, variables)
    failures: list[str] = []
    with_data = 0
    for panel in (p for p in board["panels"] if p["type"] != "row"):
        for target in panel["targets"]:
            expr = target["expr"]
            result = query_response(prometheus, substitute(expr, all_services, all_instances))
            where = f"panel {panel['id']} {panel['title']}"
            if result.get("status") != "success":
                failures.append(f"{where}: {result.get('error')}")
            elif _OURS.search(expr):
                if result["data"]["result"]:
                    with_data += 1
                else:
                    failures.append(f"{where}: no data: {expr}")
    return failures, with_data


def test_the_rendered_rules_and_dashboard_work_on_an_acme_gateway(tmp_path: Path) -> None:
    out = tmp_path / "acme"
    render(out, RenderOptions("acme", runbook_base=RUNBOOKS, dashboard_base=DASHBOARD))
    rules = {
        f"rules/{p.name}": p.read_text()
        for p in sorted((out / "prometheus" / "rules").glob("*.yml"))
    }
    board = json.loads((out / "dashboards" / "json" / "acme-overview.json").read_text())
    with (
        run_gateway(tmp_path, grpc=False, env={"GATEWAY_NAMESPACE": "acme"}) as gw,
        blackbox_exporter(tmp_path) as blackbox,
        run_prometheus(
            tmp_path,
            prometheus_config(gw.url.removeprefix("http://"), blackbox),
            extra_files=rules,
        ) as prom,
    ):
        traffic = Traffic(gw.otlp_http)
        traffic.start()
        try:
            wait_for_every_metric(prom.url, timeout=45.0, namespace="acme")
            wait_for_series(prom.url, "job:acme_api_requests:rate5m", 60)
            time.sleep(4 * SCRAPE_SECONDS + 1)  # every rate() window has its samples
            failures, with_data = _panel_failures(prom.url, board)
            groups = httpx.get(prom.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
            alerts = httpx.get(prom.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        finally:
            traffic.stop()
    assert failures == [], "\n".join(failures)
    assert with_data >= 20
    broken = [
        f"{g['name']}/{r.get('name')}: {r.get('lastError')}"
        for g in groups
        for r in g["rules"]
        if r.get("health") not in ("ok", "unknown")
    ]
    assert broken == []
    assert {g["name"] for g in groups} >= {"acme-system", "acme-api"}
    (watchdog,) = [a for a in alerts if a["labels"]["alertname"] == "Watchdog"]
    assert watchdog["annotations"]["runbook_url"] == f"{RUNBOOKS}#watchdog"
    assert watchdog["annotations"]["dashboard_url"].startswith(f"{DASHBOARD}?viewPanel=")
