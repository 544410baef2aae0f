"""The project's real OpenTelemetry Collector in tests: its binary (built by
`scripts/build-collector.sh`, which `make test` runs first) started with the repository's own
configs, rewritten only where a test must differ (free loopback ports, a temporary queue
directory)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.stack.collector_config import CollectorPorts as LoopbackPorts
from gateway.stack.collector_config import built_collector, localize_collector_config
from gateway.stack.collector_config import load_collector_config as load_config
from tests.support.servers import REPO, ServerProcess, _spawn, free_port

__all__ = [
    "COLLECTOR_CONFIG",
    "CollectorPorts",
    "CollectorProcess",
    "collector_binary",
    "load_config",
    "run_collector",
]

COLLECTOR_DIR = REPO / "otel-collector"
COLLECTOR_CONFIG = COLLECTOR_DIR / "config.yaml"


def collector_binary(distribution: str = "main") -> Path:
    """The built binary of `distribution` (main, loadbalancer); fails with what to run when it
    was not built, instead of building for minutes inside a test."""
    return built_collector(REPO, distribution)


@dataclass(frozen=True)
class CollectorPorts(LoopbackPorts):
    """Every port a Collector of the main config listens on, each a free one; reused across a
    restart."""

    otlp_grpc: int = field(default_factory=free_port)
    otlp_http: int = field(default_factory=free_port)
    prometheus: int = field(default_factory=free_port)
    telemetry: int = field(default_factory=free_port)
    health: int = field(default_factory=free_port)


@dataclass
class CollectorProcess(ServerProcess):
    ports: CollectorPorts = field(default_factory=CollectorPorts)
    config_path: Path = Path()

    @property
    def otlp_http_url(self) -> str:
        """For the gateway's forwarder (http/protobuf): it adds /v1/metrics."""
        return f"http://127.0.0.1:{self.ports.otlp_http}"

    @property
    def otlp_grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports.otlp_grpc}"

    @property
    def exporter_target(self) -> str:
        """host:port of the Prometheus exporter (scraped at /metrics)."""
        return f"127.0.0.1:{self.ports.prometheus}"

    @property
    def telemetry_target(self) -> str:
        """host:port of the Collector's own metrics."""
        return f"127.0.0.1:{self.ports.telemetry}"


@contextlib.contextmanager
def run_collector(
    tmp: Path,
    config: dict[str, Any] | None = None,
    *,
    ports: CollectorPorts | None = None,
    env: Mapping[str, str] | None = None,
    distribution: str = "main",
    name: str = "collector",
) -> Iterator[CollectorProcess]:
    """The real Collector with `config` (default: otel-collector/config.yaml) localized to
    free ports under `tmp`; yields once its health_check answers. Pass the same `ports` (and
    `name`, which names the queue directory) to start it again after a kill."""
    ports = ports or CollectorPorts()
    home = tmp / name
    queue = home / "queue"
    queue.mkdir(parents=True, exist_ok=True)
    localized = localize_collector_config(config or load_config(COLLECTOR_CONFIG), ports, queue)
    config_path = home / "config.yaml"
    config_path.write_text(yaml.safe_dump(localized, sort_keys=False))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full_env.setdefault("LONGTERM_OTLP_ENDPOINT", "http://127.0.0.1:9")
    full_env.update(env or {})
    argv = [str(collector_binary(distribution)), f"--config={config_path}"]
    log = home / f"collector-{len(list(home.glob('collector-*.log')))}.log"
    url = f"http://127.0.0.1:{ports.health}"
    with _spawn(argv, log, url, "/", env=full_env, cwd=home) as server:
        yield CollectorProcess(server.proc, server.url, server.log, ports, config_path)
