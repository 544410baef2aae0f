"""A repository Collector config on loopback ports: what the local stack, the tests and the
benchmarks run instead of the config's own 0.0.0.0 listeners and container paths.

Only where the Collector listens and where it keeps its queue change; pipelines, processors and
exporters' destinations stay the repository's, so what runs locally is what compose runs.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CollectorNotBuilt",
    "CollectorPorts",
    "built_collector",
    "load_collector_config",
    "localize_collector_config",
]


@dataclass(frozen=True)
class CollectorPorts:
    """The loopback ports one Collector listens on."""

    #: OTLP/gRPC and OTLP/HTTP receivers
    otlp_grpc: int
    otlp_http: int
    #: the health_check extension
    health: int
    #: the Collector's own metrics (service.telemetry, a Prometheus pull reader)
    telemetry: int
    #: the Prometheus exporter, when the config has one (the load-balancing tier has none)
    prometheus: int | None = None


class CollectorNotBuilt(RuntimeError):
    """The Collector distribution has not been built (`make collector`)."""


def load_collector_config(*files: Path) -> dict[str, Any]:
    """The Collector's merge of several --config files: maps merge key by key, lists and
    scalars of a later file win (otel-collector/config.yaml + longterm.yaml, say)."""
    merged: dict[str, Any] = {}
    for f in files:
        _merge(merged, yaml.safe_load(f.read_text()) or {})
    return merged


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def localize_collector_config(
    config: Mapping[str, Any], ports: CollectorPorts, queue_dir: Path | None = None
) -> dict[str, Any]:
    """A copy of `config` (a repository Collector config, parsed) with every listener on
    127.0.0.1 at `ports` and every file_storage directory at `queue_dir` (left as it is when
    `queue_dir` is None); nothing else changes.

    For otel-collector/config.yaml: `0.0.0.0:4318` becomes `127.0.0.1:<otlp_http>`,
    `file_storage/queue.directory` (and its compaction directory) becomes `queue_dir`.
    """
    c: dict[str, Any] = copy.deepcopy(dict(config))
    extensions = c.get("extensions") or {}
    if "health_check" in extensions:
        extensions["health_check"]["endpoint"] = f"127.0.0.1:{ports.health}"
    if queue_dir is not None:
        for name, settings in extensions.items():
            if name.startswith("file_storage"):
                settings["directory"] = str(queue_dir)
                if "compaction" in settings:
                    settings["compaction"]["directory"] = str(queue_dir)
    protocols = c["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["endpoint"] = f"127.0.0.1:{ports.otlp_grpc}"
    protocols["http"]["endpoint"] = f"127.0.0.1:{ports.otlp_http}"
    exporters = c.get("exporters") or {}
    if "prometheus" in exporters:
        if ports.prometheus is None:
            raise ValueError("the config has a Prometheus exporter: give it a port")
        exporters["prometheus"]["endpoint"] = f"127.0.0.1:{ports.prometheus}"
    readers = c.get("service", {}).get("telemetry", {}).get("metrics", {}).get("readers", [])
    for reader in readers:
        reader["pull"]["exporter"]["prometheus"].update(host="127.0.0.1", port=ports.telemetry)
    return c


def built_collector(repo: Path, distribution: str = "main") -> Path:
    """The built binary of `distribution` (main, loadbalancer) as scripts/build-collector.sh
    finds it; CollectorNotBuilt (saying what to run) when it is not built, rather than
    building it for minutes on the caller's time."""
    out = subprocess.run(
        ["bash", str(repo / "scripts" / "build-collector.sh"), "--path", distribution],
        capture_output=True,
        text=True,
        check=False,
    )
    path = Path(out.stdout.strip())
    if out.returncode != 0 or not path.is_file():
        raise CollectorNotBuilt(
            f"the {distribution} Collector is not built: run `make collector` (Go toolchain and "
            "the Go module proxy needed)"
        )
    return path
