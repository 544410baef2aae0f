"""`telemetry-gateway demo --scenario error-spike` end to end: the real demo (gateway, demo
service on the real PostgreSQL, traffic) scraped by a real Prometheus that evaluates this
repository's rules (every `for:` divided by 60, see tests/support/alert_rules.py).

- error-spike: steady state first, where no application alert fires; then the fault fires
  ApiErrorRateCritical; then recovery resolves it once its 5-minute rate window holds more good
  requests than the fault's errors. (The availability SLO page fires too; its long windows keep
  it for many minutes, by design of multi-window burn-rate alerts, so no test waits for that.)
- db-outage: DatabaseConnectionFailure fires, and resolves once the database check passes again.
- slow-deploys: ApiLatencyBudgetBurnPage fires (resolving takes its 30-minute window: not waited
  for).

Host alerts (CPU, memory) are left out of "no alert": they judge the shared test machine, not
the demo; for the same reason the gateway's own host check is off in this run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.alert_rules import local_prometheus_config, rules_with_short_for
from tests.support.postgres import DSN
from tests.support.prometheus import values
from tests.support.servers import REPO, free_port, run_prometheus

pytestmark = pytest.mark.integration

# The host alerts judge the shared test machine, not the demo; Watchdog fires always, by
# design (the dead man's switch).
HOST_ALERTS = frozenset(
    ("CpuUsageCritical", "CpuUsageWarning", "MemoryUsageCritical", "MemoryUsageWarning", "Watchdog")
)
WARMUP_S, FAULT_S = 30, 30


async def _drop_tables(prefix: str) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}deployments, {prefix}users")
    finally:
        await conn.close()


def firing(prom_url: str) -> dict[str, dict[str, Any]]:
    alerts = httpx.get(prom_url + "/api/v1/alerts").json()["data"]["alerts"]
    return {
        a["labels"]["alertname"]: a
        for a in alerts
        if a["state"] == "firing" and a["labels"]["alertname"] not in HOST_ALERTS
    }


def wait_for(what: str, check: Callable[[], bool], timeout: float, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs()[-5000:]}")


@dataclass
class Run:
    prom_url: str
    out: Path
    started: float

    def logs(self) -> str:
        alerts = httpx.get(self.prom_url + "/api/v1/alerts").text
        return f"--- demo\n{self.out.read_text()[-2500:]}\n--- alerts\n{alerts[-2500:]}"

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        wait_for(what, check, timeout, self.logs)


@contextmanager
def scenario(tmp_path: Path, name: str, warmup_s: float, fault_s: float) -> Iterator[Run]:
    """`telemetry-gateway demo --scenario NAME` in a subprocess, scraped by a Prometheus with
    the repository's rules; stopped with Ctrl-C (SIGINT) at the end, its tables dropped."""
    http_port, demo_port = free_port(), free_port()
    prefix = f"s{os.getpid()}_{name.replace('-', '_')}_"
    config = tmp_path / "gateway.yaml"
    config.write_text("health: {system: {enabled: false}}\n")
    out = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_", "DEMO_"))}
    argv = [
        *(sys.executable, "-m", "gateway", "demo", "--scenario", name),
        *("--warmup", str(warmup_s), "--fault-seconds", str(fault_s), "--rate", "30"),
        *("--http-port", str(http_port), "--grpc-port", "0", "--demo-port", str(demo_port)),
        *("--config", str(config), "--table-prefix", prefix),
        *("--log-dir", str(tmp_path / "logs")),
    ]
    with (
        run_prometheus(
            tmp_path, local_prometheus_config(http_port), extra_files=rules_with_short_for()
        ) as prom,
        out.open("w") as sink,
    ):
        demo = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            yield Run(prom.url, out, time.monotonic())
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
            asyncio.run(_drop_tables(prefix))


def test_error_spike_fires_and_resolves_and_steady_state_is_quiet(tmp_path: Path) -> None:
    with scenario(tmp_path, "error-spike", WARMUP_S, FAULT_S) as run:
        # 1. Steady state: traffic flows, no application alert fires, and the ratios the
        # alerts judge stay clear of their thresholds (builds fail at 4 %, nothing answers
        # 5xx). The deployment ratio is summed over the three runtimes: early on, one
        # runtime's handful of builds says little.
        run.wait_for(
            "demo deployments in Prometheus",
            lambda: bool(values(run.prom_url, "job_type:coderunner_deployments:rate15m > 0")),
            WARMUP_S,
        )
        while time.monotonic() - run.started < WARMUP_S - 2:
            assert firing(run.prom_url) == {}, run.logs()
            time.sleep(1)
        failed = values(
            run.prom_url,
            "(sum(job_type:coderunner_deployments_failed:rate15m) or vector(0))"
            " / sum(job_type:coderunner_deployments:rate15m)",
        )
        assert len(failed) == 1 and failed[0] < 0.10, run.logs()
        assert values(run.prom_url, "job:coderunner_api_requests_errors:ratio_rate5m") == [0.0]
        # 2. The fault: the error-rate page fires for the demo's service.
        run.wait_for(
            "ApiErrorRateCritical firing",
            lambda: "ApiErrorRateCritical" in firing(run.prom_url),
            FAULT_S + 20,
        )
        alert = firing(run.prom_url)["ApiErrorRateCritical"]
        assert alert["labels"]["job"] == "coderunner/coderunner-demo"
        assert alert["labels"]["severity"] == "critical"
        assert "DatabaseConnectionFailure" not in firing(run.prom_url)
        # 3. Recovery: steady traffic again, and the page resolves.
        run.wait_for(
            "ApiErrorRateCritical resolved",
            lambda: (
                "ApiErrorRateCritical" not in firing(run.prom_url)
                and time.monotonic() - run.started > WARMUP_S + FAULT_S
            ),
            FAULT_S + 90,
        )
        text = run.out.read_text()
        assert "scenario error-spike: FAULT" in text, text
        assert "scenario error-spike: recovering" in text, text


def test_db_outage_fires_database_connection_failure_then_resolves(tmp_path: Path) -> None:
    warmup, fault = 20, 25
    with scenario(tmp_path, "db-outage", warmup, fault) as run:
        run.wait_for(
            "DatabaseConnectionFailure firing",
            lambda: "DatabaseConnectionFailure" in firing(run.prom_url),
            warmup + fault + 30,  # the machine may be slow to start the demo
        )
        alert = firing(run.prom_url)["DatabaseConnectionFailure"]
        assert alert["labels"]["job"] == "coderunner/coderunner-demo"
        # The relay is restored after the fault; the check's breaker lets a trial through
        # after its cooldown, the check passes, and the alert resolves.
        run.wait_for(
            "DatabaseConnectionFailure resolved",
            lambda: (
                time.monotonic() - run.started > warmup + fault
                and "DatabaseConnectionFailure" not in firing(run.prom_url)
            ),
            fault + 90,
        )
        assert "scenario db-outage: recovering" in run.out.read_text()
        status = 'coderunner_health_check_status{component="postgresql"}'
        assert values(run.prom_url, status) == [1.0], run.logs()


def test_slow_deploys_fire_the_latency_budget_page(tmp_path: Path) -> None:
    warmup, fault = 10, 60
    with scenario(tmp_path, "slow-deploys", warmup, fault) as run:
        run.wait_for(
            "ApiLatencyBudgetBurnPage firing",
            lambda: "ApiLatencyBudgetBurnPage" in firing(run.prom_url),
            warmup + fault + 30,  # the machine may be slow to start the demo
        )
        alert = firing(run.prom_url)["ApiLatencyBudgetBurnPage"]
        assert alert["labels"]["job"] == "coderunner/coderunner-demo"
        assert alert["labels"]["slo"] == "api-latency"
        # Slow, not failing: no error-rate page.
        assert "ApiErrorRateCritical" not in firing(run.prom_url)
