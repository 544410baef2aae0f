"""`telemetry-gateway demo --scenario error-spike` end to end: the real demo (gateway, demo
service on the real PostgreSQL, traffic) scraped by a real Prometheus that evaluates this
repository's rules (every `for:` divided by 60, see tests/support/alert_rules.py).

Steady state first: no application alert fires. Then the fault: ApiErrorRateCritical fires.
Then recovery: it resolves once its 5-minute rate window holds more good requests than the
fault's errors. (The availability SLO page also fires; its 1 h window keeps it longer, by
design of multi-window burn-rate alerts, so the test does not wait for it to resolve.)

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.demo.conftest import DSN
from tests.support.alert_rules import local_prometheus_config, rules_with_short_for
from tests.support.servers import REPO, free_port, run_prometheus

pytestmark = pytest.mark.integration

HOST_ALERTS = frozenset(
    ("CpuUsageCritical", "CpuUsageWarning", "MemoryUsageCritical", "MemoryUsageWarning")
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


def query(prom_url: str, promql: str) -> list[float]:
    result = httpx.get(prom_url + "/api/v1/query", params={"query": promql}).json()
    return [float(r["value"][1]) for r in result["data"]["result"]]


def wait_for(what: str, check: Callable[[], bool], timeout: float, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs()[-5000:]}")


def test_error_spike_fires_and_resolves_and_steady_state_is_quiet(tmp_path: Path) -> None:
    http_port, demo_port = free_port(), free_port()
    prefix = f"s{os.getpid()}_"
    config = tmp_path / "gateway.yaml"
    config.write_text("health: {system: {enabled: false}}\n")
    out = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_", "DEMO_"))}
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "demo",
        "--scenario",
        "error-spike",
        "--warmup",
        str(WARMUP_S),
        "--fault-seconds",
        str(FAULT_S),
        "--rate",
        "30",
        "--http-port",
        str(http_port),
        "--grpc-port",
        "0",
        "--demo-port",
        str(demo_port),
        "--config",
        str(config),
        "--table-prefix",
        prefix,
        "--log-dir",
        str(tmp_path / "logs"),
    ]
    with (
        run_prometheus(
            tmp_path, local_prometheus_config(http_port), extra_files=rules_with_short_for()
        ) as prom,
        out.open("w") as sink,
    ):
        demo = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        started = time.monotonic()

        def logs() -> str:
            alerts = httpx.get(prom.url + "/api/v1/alerts").text
            return f"--- demo\n{out.read_text()[-2500:]}\n--- alerts\n{alerts[-2500:]}"

        try:
            # 1. Steady state: traffic flows, no application alert fires, and the ratios the
            # alerts judge stay clear of their thresholds (builds fail at 4 %, nothing
            # answers 5xx). The deployment ratio is summed over the three runtimes: early on,
            # one runtime's handful of builds says little.
            wait_for(
                "demo deployments in Prometheus",
                lambda: bool(query(prom.url, "job_type:coderunner_deployments:rate15m > 0")),
                WARMUP_S,
                logs,
            )
            while time.monotonic() - started < WARMUP_S - 2:
                assert firing(prom.url) == {}, logs()
                time.sleep(1)
            failed = query(
                prom.url,
                "(sum(job_type:coderunner_deployments_failed:rate15m) or vector(0))"
                " / sum(job_type:coderunner_deployments:rate15m)",
            )
            assert len(failed) == 1 and failed[0] < 0.10, logs()
            assert query(prom.url, "job:coderunner_api_requests_errors:ratio_rate5m") == [0.0]
            # 2. The fault: the error-rate page fires for the demo's service.
            wait_for(
                "ApiErrorRateCritical firing",
                lambda: "ApiErrorRateCritical" in firing(prom.url),
                FAULT_S + 20,
                logs,
            )
            alert = firing(prom.url)["ApiErrorRateCritical"]
            assert alert["labels"]["job"] == "coderunner/coderunner-demo"
            assert alert["labels"]["severity"] == "critical"
            assert "DatabaseConnectionFailure" not in firing(prom.url)
            # 3. Recovery: steady traffic again, and the page resolves.
            wait_for(
                "ApiErrorRateCritical resolved",
                lambda: (
                    "ApiErrorRateCritical" not in firing(prom.url)
                    and time.monotonic() - started > WARMUP_S + FAULT_S
                ),
                FAULT_S + 90,
                logs,
            )
            text = out.read_text()
            assert "scenario error-spike: FAULT" in text, text
            assert "scenario error-spike: recovering" in text, text
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
            asyncio.run(_drop_tables(prefix))
