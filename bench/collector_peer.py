"""The project's OpenTelemetry Collector as a benchmark peer: the main distribution
(`make collector`), pinned to one CPU like the gateway, running the repository's own
otel-collector/config.yaml (otlp -> memory_limiter -> batch -> prometheus exporter) on free
loopback ports, so both are measured in their production shape on the same payload."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from gateway.stack.collector_config import (
    CollectorPorts,
    built_collector,
    load_collector_config,
    localize_collector_config,
)
from gateway.stack.components import REPO
from tests.support.servers import free_port, wait_http

__all__ = ["Peer", "rss_bytes", "start_collector", "start_gateway"]


class Peer:
    """A server process under test: where to send OTLP, where to scrape, its pid."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], otlp_port: int, scrape: str):
        self.name = name
        self.proc = proc
        self.otlp_port = otlp_port
        self.scrape_url = scrape

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start_collector(tmp: Path, pin: Callable[[], None]) -> Peer:
    ports = CollectorPorts(
        otlp_grpc=free_port(),
        otlp_http=free_port(),
        health=free_port(),
        telemetry=free_port(),
        prometheus=free_port(),
    )
    queue = tmp / "collector-queue"
    queue.mkdir(parents=True, exist_ok=True)
    config = localize_collector_config(
        load_collector_config(REPO / "otel-collector" / "config.yaml"), ports, queue
    )
    config_path = tmp / "collector.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["LONGTERM_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    proc = subprocess.Popen(
        [str(built_collector(REPO, "main")), f"--config={config_path}"],
        preexec_fn=pin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    wait_http(f"http://127.0.0.1:{ports.health}/", proc=proc)
    return Peer("collector", proc, ports.otlp_http, f"http://127.0.0.1:{ports.prometheus}/metrics")


def start_gateway(
    port: int, starter: Callable[[int], subprocess.Popen[bytes]], name: str = "gateway"
) -> Peer:
    proc = starter(port)
    wait_http(f"http://127.0.0.1:{port}/live", proc=proc)
    return Peer(name, proc, port, f"http://127.0.0.1:{port}/metrics")


def count_series(url: str, prefix: str) -> int:
    text = httpx.get(url, timeout=120).text
    return sum(1 for line in text.splitlines() if line.startswith(prefix))


def wait_series(url: str, prefix: str, expected: int, timeout: float = 60.0) -> int:
    """The Collector's batch processor hands data on asynchronously: wait until every series
    is exposed (or return what is)."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = count_series(url, prefix)
        if n >= expected:
            return n
        time.sleep(0.5)
    return n
