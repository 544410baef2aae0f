"""The repository's Prometheus rules and local-stack config, made fast enough for a test.

Only time is changed: every `for:` divided by a factor (60 by default: 2m -> 2s, 5m -> 5s) and
1 s scrape and evaluation intervals. The expressions, labels and annotations are the
repository's own.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support.servers import REPO

__all__ = ["local_prometheus_config", "rules_with_short_for", "shorten_for"]

_DURATION = re.compile(r"^(\d+)([smh])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def shorten_for(duration: str, divisor: int) -> str:
    """A rule's `for:` divided by `divisor`, at least 1 s: ("2m", 30) -> "4s"."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"unexpected for: {duration}")
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    return f"{max(1, seconds // divisor)}s"


def rules_with_short_for(divisor: int = 60) -> dict[str, str]:
    """`prometheus/rules/*.yml` with every `for:` divided by `divisor`, as
    `run_prometheus(extra_files=...)` takes them. A smaller divisor keeps more time between a
    critical alert and its warning twin (the end-to-end alerting test needs 30 on a loaded
    machine)."""
    files = {}
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = shorten_for(rule["for"], divisor)
        files[f"rules/{path.name}"] = yaml.safe_dump(data, sort_keys=False)
    return files


def local_prometheus_config(gateway_port: int, alertmanager_port: int | None = None) -> str:
    """`prometheus/prometheus.local.yml` with 1 s intervals and only the gateway job, on the
    test's ports (no Alertmanager unless its port is given)."""
    config: dict[str, Any] = yaml.safe_load(
        (REPO / "prometheus" / "prometheus.local.yml").read_text()
    )
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    if alertmanager_port is None:
        del config["alerting"]
    else:
        config["alerting"]["alertmanagers"][0]["static_configs"] = [
            {"targets": [f"127.0.0.1:{alertmanager_port}"]}
        ]
    (gateway_job,) = [j for j in config["scrape_configs"] if j["job_name"] == "gateway"]
    gateway_job["static_configs"] = [{"targets": [f"127.0.0.1:{gateway_port}"]}]
    config["scrape_configs"] = [gateway_job]
    return yaml.safe_dump(config, sort_keys=False)
