"""alertmanager/templates/coderunner.tmpl rendered by `amtool template render` for a group of
several alerts: an annotation that differs between them (the summary names the instance) is not
a common annotation, and the title, PagerDuty's details.summary and the links must still say
something."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.alertmanager.amconfig import REPO, load

TEMPLATES = REPO / "alertmanager" / "templates" / "*.tmpl"
RUNBOOKS = "https://github.com/coderunner/telemetry-gateway/blob/main/docs/runbooks.md"
DASHBOARD = "http://localhost:3001/d/coderunner-overview/coderunner-overview"


def _render(tmp_path: Path, text: str, data: dict[str, Any]) -> str:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is not installed: run `make system-deps`")
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    result = subprocess.run(
        [
            amtool,
            "template",
            "render",
            f"--template.glob={TEMPLATES}",
            f"--template.text={text}",
            f"--template.data={path}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _alert(name: str, instance: str, group: str = "cpu") -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": name,
            "severity": "critical",
            "alert_group": group,
            "job": "api",
            "instance": instance,
        },
        "annotations": {
            "summary": f"{name} on {instance}",
            "description": f"{name} description on {instance}.",
            "runbook_url": f"{RUNBOOKS}#{name.lower()}",
            "dashboard_url": f"{DASHBOARD}?viewPanel=1",
        },
    }


def _group(*alerts: dict[str, Any]) -> dict[str, Any]:
    """What Alertmanager hands the templates: common labels/annotations are the ones every
    alert of the group has with the same value."""
    common_labels = dict(alerts[0]["labels"])
    common_notes = dict(alerts[0]["annotations"])
    for alert in alerts[1:]:
        common_labels = {k: v for k, v in common_labels.items() if alert["labels"].get(k) == v}
        common_notes = {k: v for k, v in common_notes.items() if alert["annotations"].get(k) == v}
    return {
        "receiver": "page-slack",
        "status": "firing",
        "alerts": list(alerts),
        "groupLabels": {"alert_group": common_labels.get("alert_group"), "job": "api"},
        "commonLabels": common_labels,
        "commonAnnotations": common_notes,
        "externalURL": "http://127.0.0.1:9093",
    }


def _pagerduty_details() -> dict[str, str]:
    (page,) = [r for r in load()["receivers"] if r["name"] == "page-slack"]
    details: dict[str, str] = page["pagerduty_configs"][0]["details"]
    return details


@pytest.mark.integration
def test_title_of_a_group_of_two_instances_has_a_summary(tmp_path: Path) -> None:
    data = _group(_alert("CpuUsageCritical", "h1"), _alert("CpuUsageCritical", "h2"))
    title = _render(tmp_path, '{{ template "coderunner.title" . }}', data)
    assert title == "[FIRING:2] CpuUsageCritical (api): CpuUsageCritical on h1 (1 of 2 firing)"


@pytest.mark.integration
def test_pagerduty_summary_and_links_of_a_mixed_group_are_filled(tmp_path: Path) -> None:
    """ApiErrorRateCritical and the SLO burn page share a group (one incident): their summary
    and runbook differ, so neither is common."""
    data = _group(
        _alert("ApiErrorRateCritical", "i1", "api_errors"),
        _alert("ApiAvailabilityBudgetBurnPage", "i1", "api_errors"),
    )
    details = _pagerduty_details()
    summary = _render(tmp_path, details["summary"], data)
    assert summary == "ApiErrorRateCritical on i1 (1 of 2 firing)"
    assert _render(tmp_path, details["runbook_url"], data) == f"{RUNBOOKS}#apierrorratecritical"
    assert _render(tmp_path, details["dashboard_url"], data) == f"{DASHBOARD}?viewPanel=1"
    title = _render(tmp_path, '{{ template "coderunner.title" . }}', data)
    assert title.startswith("[FIRING:2] api_errors (api): ApiErrorRateCritical on i1")
    described = _render(tmp_path, details["description"], data)
    assert "[ApiErrorRateCritical] ApiErrorRateCritical description on i1." in described
    assert "[ApiAvailabilityBudgetBurnPage]" in described


@pytest.mark.integration
def test_a_single_alert_keeps_its_own_summary(tmp_path: Path) -> None:
    data = _group(_alert("CpuUsageCritical", "h1"))
    title = _render(tmp_path, '{{ template "coderunner.title" . }}', data)
    assert title == "[FIRING:1] CpuUsageCritical (api): CpuUsageCritical on h1"
