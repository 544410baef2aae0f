"""`telemetry-gateway stack`: up, status, logs and stop on free ports with real Prometheus,
Alertmanager, node_exporter, gateway and demo processes; nothing is left running afterwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.servers import REPO
from tests.support.stack_cli import (
    leftovers,
    port_flags,
    run_stack,
    stack_ports,
    stack_processes,
)

pytestmark = pytest.mark.integration

COMPONENTS = ("node-exporter", "gateway", "demo", "notifications", "alertmanager", "prometheus")


def test_up_status_logs_stop_leaves_nothing_running(stack_dir: Path) -> None:
    ports = stack_ports()
    up = run_stack(stack_dir, "up", *port_flags(ports))
    assert up.returncode == 0, up.stdout + up.stderr
    procs = stack_processes(stack_dir)
    assert len(procs) >= len(COMPONENTS)

    status = run_stack(stack_dir, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:] if line}
    for name in COMPONENTS:
        assert rows[name][2] == "healthy", status.stdout
        assert f"127.0.0.1:{ports[name]}" in rows[name][3], status.stdout
    assert status.stdout.splitlines()[0].split() == ["COMPONENT", "PID", "HEALTH", "URL"]

    # Prometheus runs this repo's rules and scrapes the stack's own ports, and has the
    # retention the design asks for.
    prom = f"http://127.0.0.1:{ports['prometheus']}"
    groups = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
    expected_groups = sum(
        len(yaml.safe_load(p.read_text())["groups"])
        for p in (REPO / "prometheus" / "rules").glob("*.yml")
    )
    assert len(groups) == expected_groups
    scraped: dict[str, str] = {}
    deadline = time.monotonic() + 15  # target discovery runs a few seconds after start
    while len(scraped) < 4 and time.monotonic() < deadline:
        targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        scraped = {t["labels"]["job"]: t["scrapeUrl"] for t in targets}
        time.sleep(0.2)
    assert scraped["gateway"] == f"http://127.0.0.1:{ports['gateway']}/metrics"
    assert scraped["node"] == f"http://127.0.0.1:{ports['node-exporter']}/metrics"
    flags = httpx.get(f"{prom}/api/v1/status/flags", timeout=5).json()["data"]
    assert flags["storage.tsdb.retention.time"] == "5w"  # 35d, as Prometheus prints it
    assert flags["storage.tsdb.retention.size"] == "10GiB"  # Prometheus reads GB as GiB
    assert flags["web.external-url"] == f"http://127.0.0.1:{ports['prometheus']}/"
    am = httpx.get(f"{prom}/api/v1/alertmanagers", timeout=5).json()["data"]
    assert am["activeAlertmanagers"][0]["url"].startswith(
        f"http://127.0.0.1:{ports['alertmanager']}/"
    )

    # Local notifications work without any secret: the Watchdog (firing from the first rule
    # evaluation, 15 s) reaches the stack's own receiver through the dead man's switch route.
    # Usually within 30 s; the margin is for a loaded machine.
    received = stack_dir / "notifications" / "notifications.jsonl"
    deadline = time.monotonic() + 120
    watchdog: list[dict[str, object]] = []
    while not watchdog and time.monotonic() < deadline:
        lines = received.read_text().splitlines() if received.exists() else []
        watchdog = [n for n in map(json.loads, lines) if n["receiver_path"] == "/deadmans-switch"]
        time.sleep(0.5)
    if not watchdog:
        alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        am_log = (stack_dir / "logs" / "alertmanager.log").read_text()[-2000:]
        pytest.fail(
            "the Watchdog never reached the stack's notification receiver; Prometheus' "
            f"alerts: {[a['labels']['alertname'] for a in alerts]}; Alertmanager's log:\n{am_log}"
        )

    again = run_stack(stack_dir, "up", *port_flags(ports))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == len(COMPONENTS)

    restart = run_stack(stack_dir, "restart")  # same ports as the last `up`
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert leftovers(procs) == []
    procs = stack_processes(stack_dir)
    status = run_stack(stack_dir, "status")
    assert status.returncode == 0, status.stdout
    assert f"127.0.0.1:{ports['prometheus']}" in status.stdout

    logs = run_stack(stack_dir, "logs", "-n", "5")
    assert logs.returncode == 0
    for name in COMPONENTS:
        assert f"==> {name} (" in logs.stdout

    stop = run_stack(stack_dir, "stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    for name in COMPONENTS:
        assert f"{name:<14} stopped" in stop.stdout
    assert leftovers(procs) == []
    assert not list((stack_dir / "run").glob("*.pid"))
    after = run_stack(stack_dir, "status")
    assert after.returncode == 3 and "no component is running" in after.stdout


def test_up_says_which_component_failed_and_stops_the_rest(stack_dir: Path) -> None:
    ports = stack_ports()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squat_demo,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squat_prometheus,
    ):
        squat_demo.bind(("127.0.0.1", ports["demo"]))
        squat_prometheus.bind(("127.0.0.1", ports["prometheus"]))
        squat_demo.listen()
        squat_prometheus.listen()
        up = run_stack(stack_dir, "up", *port_flags(ports))
    assert up.returncode == 1, up.stdout + up.stderr
    # The demo is optional: skipped with the reason, and `up` went on.
    assert f"demo           skipped (optional): port {ports['demo']} is in use" in up.stdout
    assert f"prometheus     FAILED: port {ports['prometheus']} is in use" in up.stdout
    assert "--prometheus-port" in up.stdout
    assert "stopped the components this run had started" in up.stdout
    state = json.loads((stack_dir / "stack.json").read_text())
    assert state["running"] == {}
    # The components started before the failure are gone too.
    for name in ("node-exporter", "gateway", "alertmanager"):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{ports[name]}/", timeout=1)


def test_status_and_stop_without_a_stack(stack_dir: Path) -> None:
    status = run_stack(stack_dir, "status")
    assert status.returncode == 3
    assert "has not been started" in status.stdout
    stop = run_stack(stack_dir, "stop")
    assert stop.returncode == 0 and "nothing to stop" in stop.stdout


def test_options_after_the_subcommand_and_a_stack_found_from_anywhere(
    stack_dir: Path, tmp_path: Path
) -> None:
    """Issue 19, item 7: `stack up --dir X` was refused; `status` from another directory said
    nothing ran; node_exporter logged a systemd error at every scrape."""
    ports = stack_ports()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def stack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "stack", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=120,
            env=env,
        )

    up = stack("up", "--dir", str(stack_dir), "--no-demo", *port_flags(ports), cwd=REPO)
    assert up.returncode == 0, up.stdout + up.stderr
    procs = stack_processes(stack_dir)
    status = stack("status", cwd=elsewhere)  # no --dir, another working directory
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"127.0.0.1:{ports['node-exporter']}" in status.stdout
    # Two scrapes of node_exporter: each logged "couldn't get dbus connection" before.
    for _ in range(2):
        assert httpx.get(f"http://127.0.0.1:{ports['node-exporter']}/metrics").status_code == 200
    node_log = (stack_dir / "logs" / "node-exporter.log").read_text()
    assert "systemd" not in node_log, node_log
    stop = stack("stop", cwd=elsewhere)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert leftovers(procs) == []
