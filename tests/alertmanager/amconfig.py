"""The repository's Alertmanager config for tests against a real Alertmanager: as it is, with
every receiver swapped for a webhook (`with_webhook`), or with its real receivers pointed at
servers on 127.0.0.1 (`with_local_endpoints`). Routes, grouping, inhibit rules and templates
stay the repository's: only where notifications go (and, for speed, the timers) change."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "AM_CONFIG",
    "REPO",
    "alerts_from_rules",
    "debian_config_file",
    "for_debian",
    "load",
    "with_local_endpoints",
    "with_webhook",
]

REPO = Path(__file__).resolve().parents[2]
AM_CONFIG = REPO / "alertmanager" / "alertmanager.yml"


def load() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(AM_CONFIG.read_text())
    return config


def for_debian(config: dict[str, Any], webhook_url: str) -> dict[str, Any]:
    """`config` for Debian's Alertmanager 0.25, which predates webhook `url_file` (0.26; compose
    runs 0.27): each webhook's `url_file` becomes `url: webhook_url`. Nothing else changes."""
    config = copy.deepcopy(config)
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            if webhook.pop("url_file", None) is not None:
                webhook["url"] = webhook_url
    return config


def debian_config_file(directory: Path) -> Path:
    """The repository's config as Debian's amtool 0.25 reads it (`for_debian`), written under
    `directory`, with its templates found from there."""
    config = for_debian(load(), "http://127.0.0.1:9/deadmans-switch")
    config["templates"] = [str(REPO / "alertmanager" / t) for t in config.get("templates", [])]
    path = directory / "alertmanager.yml"
    path.write_text(yaml.dump(config, Dumper=_NoAliases, sort_keys=False))
    return path


def _retime(route: dict[str, Any], timers: dict[str, str], *, root: bool = True) -> None:
    """Set the timers on the root route, and on child routes that set their own."""
    for key, value in timers.items():
        if root or key in route:
            route[key] = value
    for child in route.get("routes", []):
        _retime(child, timers, root=False)


def with_webhook(
    webhook_url: str,
    *,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> str:
    """The repo's config as YAML text with each receiver replaced by a webhook of the same name
    (so the route tree is unchanged) and short timers (also on child routes that set their own,
    which would otherwise win)."""
    config = copy.deepcopy(load())
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        for r in config["receivers"]
    ]
    # Templates are only used by the real receivers; point them at the repo anyway so the
    # config stays valid wherever the test writes it.
    config["templates"] = [str(REPO / "alertmanager" / t) for t in config.get("templates", [])]
    config["global"] = {"resolve_timeout": config.get("global", {}).get("resolve_timeout", "5m")}
    _retime(
        config["route"],
        {
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
    )
    return yaml.safe_dump(config, sort_keys=False)


def alerts_from_rules() -> list[dict[str, Any]]:
    """Every alerting rule in prometheus/rules/ (as parsed YAML)."""
    out = []
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [rule for rule in group["rules"] if "alert" in rule]
    return out


def with_local_endpoints(
    secrets_dir: Path, *, http_base: str, smtp: str, timers: str = "1s"
) -> str:
    """The repo's config with its real receivers (Slack, PagerDuty, email, with the repo's
    templates) pointed at servers on 127.0.0.1, and its secret files written into
    `secrets_dir` (the Slack webhook at `http_base`/slack, a well-formed PagerDuty routing key,
    an SMTP password the plain test server never asks for)."""
    secrets = {
        "slack_webhook_url": secrets_dir / "slack_webhook_url",
        "pagerduty_routing_key": secrets_dir / "pagerduty_routing_key",
        "smtp_password": secrets_dir / "smtp_password",
    }
    secrets["slack_webhook_url"].write_text(f"{http_base}/slack\n")
    secrets["pagerduty_routing_key"].write_text("R0UT1NGKEY0000000000000000000000\n")
    secrets["smtp_password"].write_text("not-used-without-AUTH\n")
    config = for_debian(load(), f"{http_base}/deadmans-switch")
    config["templates"] = [str(REPO / "alertmanager" / t) for t in config.get("templates", [])]
    config["global"].update(
        slack_api_url_file=str(secrets["slack_webhook_url"]),
        smtp_smarthost=smtp,
        smtp_require_tls=False,  # the test's SMTP server speaks plain SMTP
    )
    for receiver in config["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            pd["routing_key_file"] = str(secrets["pagerduty_routing_key"])
            pd["url"] = f"{http_base}/pagerduty"
        for email in receiver.get("email_configs", []):
            email["auth_password_file"] = str(secrets["smtp_password"])
    _retime(
        config["route"],
        {"group_wait": timers, "group_interval": timers, "repeat_interval": "1h"},
    )
    return yaml.dump(config, Dumper=_NoAliases, sort_keys=False)


class _NoAliases(yaml.SafeDumper):
    """The config shares one PagerDuty block through a YAML anchor; write it out in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
