"""The Collector alerts (prometheus/rules/collector.yml) against the real Collector.

    OTLP pushes -> Collector "export" (config.yaml + longterm.yaml, its backend down, a
                   2-request sending queue, retries given up after 300 ms)
                -> Collector "memory" (config.yaml, memory_limiter at 1 MiB: refuses)
    a real Prometheus scrapes both telemetry endpoints as job otel-collector-self (as
    prometheus/prometheus.yml does) and evaluates the repository's rules

Every `otelcol_` name the rules use must be stored in that Prometheus (the names are the
Collector's at the pinned release, whatever a changelog says), and each alert's expression must
select the Collector whose fault it is about, and not the other one: a rename at a Collector
upgrade fails here instead of silencing an alert.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.support.alert_rules import rules_with_short_for
from tests.support.collector import COLLECTOR_DIR, CollectorProcess, load_config, run_collector
from tests.support.otlp import Req
from tests.support.servers import REPO, free_port, run_prometheus

pytestmark = pytest.mark.integration

RULES = REPO / "prometheus" / "rules" / "collector.yml"
JOB = "otel-collector-self"


def _rule_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    exprs = " ".join(str(rule["expr"]) for group in groups for rule in group["rules"])
    return set(re.findall(r"\botelcol_\w+", exprs))


def _export_config() -> dict[str, Any]:
    config = load_config(COLLECTOR_DIR / "config.yaml", COLLECTOR_DIR / "longterm.yaml")
    exporter = config["exporters"]["otlp_http/longterm"]
    exporter["timeout"] = "200ms"
    exporter["retry_on_failure"].update(
        initial_interval="50ms", max_interval="100ms", max_elapsed_time="300ms"
    )
    exporter["sending_queue"].update(queue_size=2, num_consumers=1)
    return config


def _memory_config() -> dict[str, Any]:
    config = load_config(COLLECTOR_DIR / "config.yaml")
    config["processors"]["memory_limiter"].update(limit_mib=1, spike_limit_mib=0)
    return config


class _Pusher:
    """Pushes 50-point OTLP/HTTP requests to each Collector until stopped; refusals (503) are
    the point, so the answers are only counted."""

    def __init__(self, *collectors: CollectorProcess) -> None:
        self._urls = [c.otlp_http_url + "/v1/metrics" for c in collectors]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.answers: dict[int, int] = {}

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                points = [({"k": str(j)}, n, 1, 1 + n) for j in range(50)]
                body = Req(service="svc", instance="i-1").sum("x", points).request
                for url in self._urls:
                    r = client.post(
                        url,
                        content=body.SerializeToString(),
                        headers={"content-type": "application/x-protobuf"},
                    )
                    self.answers[r.status_code] = self.answers.get(r.status_code, 0) + 1
                self._stop.wait(0.05)

    def __enter__(self) -> _Pusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _prometheus_config(*targets: str) -> str:
    return yaml.safe_dump(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules/*.yml"],
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": list(targets)}]},
            ],
        }
    )


def _stored_names(prometheus: str) -> set[str]:
    r = httpx.get(
        f"{prometheus}/api/v1/label/__name__/values",
        params={"match[]": f'{{job="{JOB}"}}'},
        timeout=10,
    )
    r.raise_for_status()
    return set(r.json()["data"])


def _active(prometheus: str) -> dict[str, set[str]]:
    """alertname -> instances it is pending or firing for."""
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    out: dict[str, set[str]] = {}
    for alert in alerts:
        labels = alert["labels"]
        out.setdefault(labels["alertname"], set()).add(labels.get("instance", ""))
    return out


def _eventually(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is None or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(prometheus url, export Collector's instance, memory Collector's instance)."""
    tmp = tmp_path_factory.mktemp("collector-alerts")
    backend_down = {"LONGTERM_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    with (
        run_collector(tmp, _export_config(), env=backend_down, name="export") as export,
        run_collector(tmp, _memory_config(), name="memory") as memory,
        run_prometheus(
            tmp,
            _prometheus_config(export.telemetry_target, memory.telemetry_target),
            extra_files=rules_with_short_for(),
        ) as prom,
        _Pusher(export, memory) as pusher,
    ):
        yield prom.url, export.telemetry_target, memory.telemetry_target
    assert pusher.answers.get(503, 0) > 0, pusher.answers


def test_every_collector_metric_the_rules_use_exists(scraped: tuple[str, str, str]) -> None:
    prometheus, _, _ = scraped
    wanted = _rule_names()
    assert len(wanted) >= 7, wanted  # the pattern found the rules' names

    def missing() -> set[str] | None:
        gone = wanted - _stored_names(prometheus)
        return gone or None

    assert _eventually(missing, 40) is None, (
        f"the Collector never exposed {sorted(missing() or ())}; "
        f"it has {sorted(n for n in _stored_names(prometheus) if n.startswith('otelcol_'))}"
    )


def test_the_name_check_can_fail(scraped: tuple[str, str, str]) -> None:
    """The same lookup with the `_total` names a changelog might promise finds nothing."""
    prometheus, _, _ = scraped
    stored = _stored_names(prometheus)
    assert "otelcol_receiver_refused_metric_points" in stored
    assert "otelcol_receiver_refused_metric_points_total" not in stored


@pytest.mark.parametrize(
    ("alert", "collector"),
    [
        ("CollectorRefusingPoints", "export"),  # the full sending queue refuses
        ("CollectorExportFailing", "export"),  # the backend is down: retries give up
        ("CollectorSendingQueueFilling", "export"),
        ("CollectorMemoryLimiterRefusing", "memory"),
    ],
)
def test_each_alert_selects_the_collector_at_fault(
    scraped: tuple[str, str, str], alert: str, collector: str
) -> None:
    prometheus, export, memory = scraped
    at_fault = export if collector == "export" else memory

    def not_yet() -> str | None:
        active = _active(prometheus)
        return None if at_fault in active.get(alert, set()) else f"active: {active}"

    assert _eventually(not_yet, 60) is None, f"{alert} never became active for {at_fault}"
    # The other Collector has no such fault. The memory Collector's receiver refuses too,
    # but there the memory limiter is the cause and CollectorRefusingPoints stays quiet.
    other = memory if at_fault == export else export
    assert other not in _active(prometheus).get(alert, set())
