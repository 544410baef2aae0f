"""One incident, one page, through the repository's real Alertmanager routing and its real
PagerDuty receiver (pointed at a stand-in on 127.0.0.1): Alertmanager's PagerDuty dedup key is
the notification group, so one incident is one dedup key however many alerts it raises.

- 20 % 5xx on one service raises ApiErrorRateCritical first and, minutes later, the
  availability SLO's ApiAvailabilityBudgetBurnPage (and both warnings): one PagerDuty incident.
- Every gateway replica down raises GatewayDown, the blackbox probe of the gateway's /ready,
  TargetDown for each replica and ServiceStoppedReporting for each service behind it: one
  PagerDuty incident, GatewayDown's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alertmanager.amconfig import alerts_from_rules, with_local_endpoints
from tests.alertmanager.sinks import HttpSink, SmtpSink
from tests.support.servers import run_alertmanager

pytestmark = pytest.mark.integration

_RULES = {rule["alert"]: rule for rule in alerts_from_rules()}


def _alert(name: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus would send it: the rule's own labels and annotations."""
    rule = _RULES[name]
    all_labels = {"alertname": name, **rule["labels"], **labels}
    notes = {}
    for key, text in rule["annotations"].items():
        for label, value in all_labels.items():
            text = str(text).replace("{{ $labels." + label + " }}", value)
        notes[key] = text
    return {
        "labels": all_labels,
        "annotations": notes,
        "generatorURL": "http://prometheus.example:9090/graph",
    }


def _pages(
    tmp_path: Path, http: HttpSink, smtp: SmtpSink, waves: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    config = with_local_endpoints(tmp_path, http_base=http.base, smtp=smtp.address)
    with run_alertmanager(tmp_path, config) as am:
        for wave in waves:
            httpx.post(f"{am.url}/api/v2/alerts", json=wave, timeout=5).raise_for_status()
            # Several group intervals (1 s in the test): every notification due has gone out.
            time.sleep(4)
    return [body for body in http.bodies("/pagerduty") if body["event_action"] == "trigger"]


def test_api_error_incident_is_one_pagerduty_incident(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    http, smtp = sinks
    job = {"job": "coderunner-api"}
    pages = _pages(
        tmp_path,
        http,
        smtp,
        [
            # The threshold alerts fire first (5-minute ratio), the burn rate minutes later.
            [_alert("ApiErrorRateCritical", **job), _alert("ApiErrorRateWarning", **job)],
            [
                _alert("ApiAvailabilityBudgetBurnPage", **job),
                _alert("ApiAvailabilityBudgetBurnTicket", **job),
            ],
        ],
    )
    assert pages, "no page at all"
    assert len({page["dedup_key"] for page in pages}) == 1, [
        page["payload"]["summary"] for page in pages
    ]
    # The incident's details name both alerts, and the summary is filled.
    last = pages[-1]["payload"]["custom_details"]
    assert "ApiErrorRateCritical" in last["description"]
    assert "ApiAvailabilityBudgetBurnPage" in last["description"]
    assert last["summary"].startswith("More than 15% of coderunner-api API requests fail")
    # The warnings went nowhere: muted by the critical of their alert_group.
    team = [b for b in http.bodies("/slack") if b["channel"] == "#coderunner-team"]
    assert team == []


def test_all_gateways_down_is_one_pagerduty_incident(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    http, smtp = sinks
    pages = _pages(
        tmp_path,
        http,
        smtp,
        [
            [_alert("GatewayDown", job="gateway")],
            [
                _alert(
                    "EndpointProbeFailing",
                    job="blackbox-http",
                    instance="http://gateway:4318/ready",
                    probed_job="gateway",
                ),
                _alert("TargetDown", job="gateway", instance="g1:4318"),
                _alert("TargetDown", job="gateway", instance="g2:4318"),
                _alert("ServiceStoppedReporting", job="coderunner-api"),
                _alert("ServiceStoppedReporting", job="coderunner-worker"),
            ],
        ],
    )
    assert len({page["dedup_key"] for page in pages}) == 1, [
        page["payload"]["summary"] for page in pages
    ]
    assert pages[0]["payload"]["summary"].startswith("[FIRING:1] GatewayDown (gateway)")
    # The demo's probe is not the gateway's: it still pages on its own.


def test_all_collectors_down_is_one_pagerduty_incident(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    http, smtp = sinks
    pages = _pages(
        tmp_path,
        http,
        smtp,
        [
            [_alert("CollectorDown", job="otel-collector-self")],
            [
                # The Collector's two targets (telemetry and Prometheus exporter): muted.
                _alert("TargetDown", job="otel-collector-self", instance="c1:8888"),
                _alert("TargetDown", job="otel-collector", instance="c1:8889"),
                # Another exporter down is another incident: it still notifies.
                _alert("TargetDown", job="node", instance="n1:9100"),
            ],
        ],
    )
    assert [page["payload"]["summary"] for page in pages] == [
        "[FIRING:1] CollectorDown (otel-collector-self): No OpenTelemetry Collector can be scraped"
    ]
    team = [b for b in http.bodies("/slack") if b["channel"] == "#coderunner-team"]
    titles = [attachment["title"] for body in team for attachment in body["attachments"]]
    assert titles == ["[FIRING:1] TargetDown (node): Target n1:9100 of job node is down"], titles
