"""`telemetry-gateway stack up --collector --replicas 2`: the production shape locally, with
real processes. The demo pushes to the load-balancing Collector on the gateway's standard port,
two gateway replicas behind it forward to the project's Collector, Prometheus discovers both
replicas from the file the stack writes and scrapes the Collector's exporter; `status` shows
every component, `stop` leaves nothing running."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.prometheus import query
from tests.support.servers import free_port
from tests.support.stack_cli import (
    leftovers,
    port_flags,
    run_stack,
    stack_ports,
    stack_processes,
)

pytestmark = pytest.mark.integration


def _free_run(n: int) -> int:
    """The first of `n` consecutive free ports (the replicas take base, base + 1, ...)."""
    for _ in range(100):
        base = free_port()
        ok = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError(f"no run of {n} free ports")


def test_collector_path_with_two_replicas(stack_dir: Path) -> None:
    ports = stack_ports()
    extra = {
        "gateway-grpc-port": free_port(),
        "replica-base-port": _free_run(4),
        "collector-grpc-port": free_port(),
        "collector-http-port": free_port(),
        "collector-exporter-port": free_port(),
        "collector-telemetry-port": free_port(),
        "collector-health-port": free_port(),
        "loadbalancer-telemetry-port": free_port(),
        "loadbalancer-health-port": free_port(),
    }
    base = extra["replica-base-port"]
    flags = [f for f in port_flags(ports) if not f.startswith("--gateway-grpc-port")]
    flags += [f"--{k}={v}" for k, v in extra.items()]
    up = run_stack(stack_dir, "up", "--collector", "--replicas", "2", *flags, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    procs = stack_processes(stack_dir)
    status = run_stack(stack_dir, "status")
    assert status.returncode == 0, status.stdout
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:] if line}
    for name in ("otel-collector", "gateway-1", "gateway-2", "loadbalancer", "prometheus"):
        assert rows[name][2] == "healthy", status.stdout
    assert f"127.0.0.1:{base}/metrics" in status.stdout
    assert f"127.0.0.1:{base + 2}/metrics" in status.stdout

    prom = f"http://127.0.0.1:{ports['prometheus']}"
    deadline = time.monotonic() + 60
    jobs: dict[str, list[str]] = {}
    demo_series = []
    while time.monotonic() < deadline:
        targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        jobs = {}
        for t in targets:
            jobs.setdefault(t["labels"]["job"], []).append(t["scrapeUrl"])
        # The demo's data reached Prometheus through the load balancer, a replica and the
        # Collector's exporter.
        demo_series = query(prom, '{job=~".*demo.*", __name__=~"coderunner_.+"}')
        if len(jobs.get("gateway", [])) == 2 and demo_series:
            break
        time.sleep(1)
    assert sorted(jobs["gateway"]) == sorted(
        f"http://127.0.0.1:{p}/metrics/self" for p in (base, base + 2)
    ), jobs
    assert jobs["otel-collector"] == [
        f"http://127.0.0.1:{extra['collector-exporter-port']}/metrics"
    ]
    assert "otel-collector-loadbalancer" in jobs
    assert demo_series, "the demo's requests never reached Prometheus through the Collector"

    stop = run_stack(stack_dir, "stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert leftovers(procs) == []
