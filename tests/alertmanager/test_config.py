"""alertmanager/alertmanager.yml: amtool accepts it, every alert the rules can raise is routed
to the receiver the routing plan names (checked with `amtool config routes test`), no secret is
written in it, and a real Alertmanager mutes each warning while its critical twin fires."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.alertmanager.amconfig import (
    AM_CONFIG,
    alerts_from_rules,
    debian_config_file,
    load,
    with_webhook,
)
from tests.support.servers import run_alertmanager


def _amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail("amtool is not installed: run `make system-deps`")
    return path


@pytest.fixture(scope="module")
def debian_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed config as Debian's amtool 0.25 can read it (webhook url_file -> url)."""
    return debian_config_file(tmp_path_factory.mktemp("am"))


def _route(labels: dict[str, str], receiver: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _amtool(),
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            f"--verify.receivers={receiver}",
            *(f"{k}={v}" for k, v in sorted(labels.items())),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _expected_receiver(labels: dict[str, str]) -> str:
    """The routing plan of DESIGN.md, written independently of the config."""
    if labels.get("alertname") == "Watchdog":
        return "deadmans-switch"
    if labels.get("severity") == "critical":
        return "page-email" if labels.get("alert_group") == "memory" else "page-slack"
    return "team-slack"


@pytest.mark.integration
def test_amtool_check_config(debian_config: Path) -> None:
    result = subprocess.run(
        [_amtool(), "check-config", str(debian_config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout and "6 inhibit rules" in result.stdout, result.stdout


def test_the_debian_copy_differs_only_in_the_webhook_url(debian_config: Path) -> None:
    """What amtool 0.25 checks above is the committed file but for url_file, which only
    Alertmanager >= 0.26 reads (compose runs 0.27)."""
    committed, checked = load(), yaml.safe_load(debian_config.read_text())
    (switch,) = [r for r in committed["receivers"] if r["name"] == "deadmans-switch"]
    assert switch["webhook_configs"][0]["url_file"] == "/run/secrets/deadmans_switch_url"
    for config in (committed, checked):
        config.pop("templates")
        for receiver in config["receivers"]:
            for webhook in receiver.get("webhook_configs", []):
                webhook.pop("url", None)
                webhook.pop("url_file", None)
    assert committed == checked


def test_the_dead_mans_switch_url_is_a_secret_not_a_placeholder() -> None:
    """No host is written for the dead man's switch: its URL comes from a secret file."""
    (switch,) = [r for r in load()["receivers"] if r["name"] == "deadmans-switch"]
    for webhook in switch["webhook_configs"]:
        assert "url" not in webhook
        assert webhook["url_file"].startswith("/run/secrets/")


@pytest.mark.integration
@pytest.mark.parametrize("rule", alerts_from_rules(), ids=lambda r: r["alert"])
def test_every_alert_routes_to_its_receiver(rule: dict[str, Any], debian_config: Path) -> None:
    labels = {"alertname": rule["alert"], "job": "api", "instance": "i1", **rule["labels"]}
    result = _route(labels, _expected_receiver(labels), debian_config)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"severity": "critical", "alert_group": "memory"}, "page-email"),
        ({"severity": "warning", "alert_group": "memory"}, "team-slack"),
        ({"severity": "critical", "alert_group": "cpu"}, "page-slack"),
        ({"severity": "critical", "alert_group": "api_errors"}, "page-slack"),
        ({"severity": "warning", "alert_group": "api_errors"}, "team-slack"),
        ({"alertname": "SomethingUnlabelled"}, "team-slack"),
        ({"alertname": "Watchdog", "severity": "none"}, "deadmans-switch"),
    ],
)
@pytest.mark.integration
def test_routing_plan(labels: dict[str, str], receiver: str, debian_config: Path) -> None:
    result = _route(labels, receiver, debian_config)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_route_test_fails_for_the_wrong_receiver(debian_config: Path) -> None:
    """The route tests above can fail: amtool rejects a receiver the tree does not pick."""
    result = _route({"severity": "critical", "alert_group": "memory"}, "page-slack", debian_config)
    assert result.returncode != 0
    assert "page-email" in result.stdout


def test_no_secret_in_the_config() -> None:
    secret_keys = {
        "api_url",
        "slack_api_url",
        "routing_key",
        "service_key",
        "auth_password",
        "smtp_auth_password",
        "auth_secret",
        "bot_token",
        "api_key",
    }
    found: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in secret_keys:
                    found.append(f"{path}.{key}")
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    config = load()
    walk(config, "")
    assert found == [], "secrets must come from *_file fields"
    text = AM_CONFIG.read_text()
    assert "hooks.slack.com" not in text and "events.pagerduty.com/v2/enqueue" not in text
    files = {
        config["global"]["slack_api_url_file"],
        *(
            c["routing_key_file"]
            for r in config["receivers"]
            for c in r.get("pagerduty_configs", [])
        ),
        *(c["auth_password_file"] for r in config["receivers"] for c in r.get("email_configs", [])),
        *(c["url_file"] for r in config["receivers"] for c in r.get("webhook_configs", [])),
    }
    assert all(f.startswith("/run/secrets/") for f in files), files


def _twins() -> list[str]:
    severities: dict[str, set[str]] = {}
    for rule in alerts_from_rules():
        if rule["alert"] == "Watchdog":
            continue
        group = rule["labels"]["alert_group"]
        severities.setdefault(group, set()).add(rule["labels"]["severity"])
    return sorted(g for g, s in severities.items() if s == {"critical", "warning"})


def _name(group: str, severity: str) -> str:
    for rule in alerts_from_rules():
        labels = rule["labels"]
        if labels["alert_group"] == group and labels["severity"] == severity:
            return str(rule["alert"])
    raise AssertionError(f"no {severity} alert in {group}")


@pytest.mark.integration
def test_a_critical_inhibits_its_warning_twin_in_a_real_alertmanager(tmp_path: Path) -> None:
    twins = _twins()
    assert {"cpu", "memory", "api_errors", "database", "target_down"} <= set(twins)
    # The webhook is never reached: this test reads inhibition from the API.
    config = with_webhook("http://127.0.0.1:9/unused", group_wait="1h", group_interval="1h")
    with run_alertmanager(tmp_path, config) as am:
        alerts = []
        for group in twins:
            base = {"alert_group": group, "job": "api"}
            alerts += [
                {
                    "labels": {
                        **base,
                        "alertname": _name(group, "critical"),
                        "severity": "critical",
                        "instance": "i1",
                    }
                },
                # Same instance: inhibited.
                {
                    "labels": {
                        **base,
                        "alertname": _name(group, "warning"),
                        "severity": "warning",
                        "instance": "i1",
                    }
                },
                # Another instance has no critical: not inhibited.
                {
                    "labels": {
                        **base,
                        "alertname": _name(group, "warning"),
                        "severity": "warning",
                        "instance": "i2",
                    }
                },
            ]
        httpx.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

        def states() -> dict[tuple[str, str], str]:
            got = httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
            return {
                (a["labels"]["alertname"], a["labels"]["instance"]): a["status"]["state"]
                for a in got
            }

        expected = {}
        for group in twins:
            expected[(_name(group, "critical"), "i1")] = "active"
            expected[(_name(group, "warning"), "i1")] = "suppressed"
            # GatewayDown means every replica is down: it mutes TargetDown of all of them.
            other = "suppressed" if group == "target_down" else "active"
            expected[(_name(group, "warning"), "i2")] = other
        deadline = time.monotonic() + 10
        while states() != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert states() == expected


@pytest.mark.integration
def test_a_failing_disk_queue_mutes_the_refusals_it_causes_in_a_real_alertmanager(
    tmp_path: Path,
) -> None:
    """One cause, one notification: GatewayDiskQueueWriteFailing mutes
    GatewayRefusingRequests{reason="queue_write_error"} of the same gateway, not its refusals
    for another reason, nor another gateway's."""
    rules = {rule["alert"]: rule for rule in alerts_from_rules()}

    def alert(name: str, instance: str, **labels: str) -> dict[str, Any]:
        return {
            "labels": {
                "alertname": name,
                **rules[name]["labels"],
                "job": "gateway",
                "instance": instance,
                **labels,
            }
        }

    refusing, queue = "GatewayRefusingRequests", "GatewayDiskQueueWriteFailing"
    alerts = [
        alert(queue, "g1:4318"),
        alert(refusing, "g1:4318", reason="queue_write_error"),  # inhibited
        alert(refusing, "g1:4318", reason="overloaded"),  # another cause
        alert(refusing, "g2:4318", reason="queue_write_error"),  # g2's queue is not failing
    ]
    config = with_webhook("http://127.0.0.1:9/unused", group_wait="1h", group_interval="1h")
    with run_alertmanager(tmp_path, config) as am:
        httpx.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

        def states() -> dict[tuple[str, str, str], str]:
            got = httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
            return {
                (
                    a["labels"]["alertname"],
                    a["labels"]["instance"],
                    a["labels"].get("reason", ""),
                ): a["status"]["state"]
                for a in got
            }

        expected = {
            (queue, "g1:4318", ""): "active",
            (refusing, "g1:4318", "queue_write_error"): "suppressed",
            (refusing, "g1:4318", "overloaded"): "active",
            (refusing, "g2:4318", "queue_write_error"): "active",
        }
        deadline = time.monotonic() + 10
        while states() != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert states() == expected
