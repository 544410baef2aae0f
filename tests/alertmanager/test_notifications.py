"""The real receivers of alertmanager/alertmanager.yml (Slack, PagerDuty, email, with the repo's
templates and secrets read from files) deliver what the on-call person needs: the summary, the
description, the runbook and dashboard links. A real Alertmanager sends to servers run here on
127.0.0.1 (a Slack/PagerDuty stand-in over HTTP and a minimal SMTP server); only their
addresses, the secret files' paths and the group timers are changed for the test."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alertmanager.amconfig import with_local_endpoints
from tests.alertmanager.sinks import HttpSink, SmtpSink
from tests.support.servers import run_alertmanager

pytestmark = pytest.mark.integration

RUNBOOKS = "https://github.com/coderunner/telemetry-gateway/blob/main/docs/runbooks.md"
DASHBOARD = "http://localhost:3001/d/coderunner-overview/coderunner-overview"


def _alert(name: str, severity: str, group: str, instance: str, summary: str) -> dict[str, Any]:
    anchor = name.lower()
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "alert_group": group,
            "job": "api",
            "instance": instance,
        },
        "annotations": {
            "summary": summary,
            "description": f"{name} description on {instance}.",
            "runbook_url": f"{RUNBOOKS}#{anchor}",
            "dashboard_url": f"{DASHBOARD}?viewPanel=1",
        },
        "generatorURL": "http://prometheus.example:9090/graph",
    }


def _wait(what: str, done: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_real_receivers_deliver_summary_description_and_links(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    http, smtp = sinks
    config = with_local_endpoints(tmp_path, http_base=http.base, smtp=smtp.address)

    with run_alertmanager(tmp_path, config) as am:
        alerts = [
            _alert("CpuUsageCritical", "critical", "cpu", "h1", "CPU usage above 95% on h1"),
            _alert("MemoryUsageCritical", "critical", "memory", "h1", "Memory above 95% on h1"),
            _alert("CpuUsageWarning", "warning", "cpu", "h2", "CPU usage above 80% on h2"),
        ]
        httpx.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
        _wait(
            "Slack x2, PagerDuty x2, email x1",
            lambda: (
                len(http.bodies("/slack")) >= 2
                and len(http.bodies("/pagerduty")) >= 2
                and len(smtp.messages) >= 1
            ),
        )
        time.sleep(1)  # nothing else should follow (the routes send each alert once)

    # Slack: the critical to the incidents channel, the warning to the team channel.
    slack = {body["channel"]: body for body in http.bodies("/slack")}
    assert set(slack) == {"#coderunner-incidents", "#coderunner-team"}
    incident = slack["#coderunner-incidents"]["attachments"][0]
    assert incident["title"] == "[FIRING:1] CpuUsageCritical (api): CPU usage above 95% on h1"
    assert incident["title_link"] == f"{DASHBOARD}?viewPanel=1"
    assert incident["color"] == "danger"
    assert "*CRITICAL* CpuUsageCritical description on h1." in incident["text"]
    assert f"<{RUNBOOKS}#cpuusagecritical|Runbook>" in incident["text"]
    assert f"<{DASHBOARD}?viewPanel=1|Dashboard>" in incident["text"]
    team = slack["#coderunner-team"]["attachments"][0]
    assert team["title"].startswith("[FIRING:1] CpuUsageWarning (api)")
    assert team["color"] == "warning"

    # PagerDuty: both criticals (CPU and memory), with the routing key from its file.
    pages = {
        body["payload"]["custom_details"]["summary"]: body for body in http.bodies("/pagerduty")
    }
    assert set(pages) == {"CPU usage above 95% on h1", "Memory above 95% on h1"}
    page = pages["Memory above 95% on h1"]
    assert page["routing_key"] == "R0UT1NGKEY0000000000000000000000"
    assert page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["summary"].startswith("[FIRING:1] MemoryUsageCritical (api)")
    assert page["payload"]["custom_details"]["runbook_url"] == f"{RUNBOOKS}#memoryusagecritical"
    assert {link["text"]: link["href"] for link in page["links"]} == {
        "Runbook": f"{RUNBOOKS}#memoryusagecritical",
        "Dashboard": f"{DASHBOARD}?viewPanel=1",
    }

    # Email: only the memory critical, to the on-call list.
    (mail,) = smtp.messages
    assert mail["To"] == "oncall@coderunner.example.com"
    assert mail["Subject"].startswith("[FIRING:1] MemoryUsageCritical (api)")
    html = "".join(
        part.get_payload(decode=True).decode()
        for part in mail.walk()
        if part.get_content_type() == "text/html"
    )
    assert "MemoryUsageCritical description on h1." in html
    assert f'<a href="{RUNBOOKS}#memoryusagecritical">Runbook</a>' in html
