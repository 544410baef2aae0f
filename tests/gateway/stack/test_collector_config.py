"""The repository's Collector configs moved onto loopback ports: what the stack, the tests and
the benchmarks run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from gateway.stack.collector_config import (
    CollectorPorts,
    load_collector_config,
    localize_collector_config,
)
from gateway.stack.components import REPO

COLLECTOR = REPO / "otel-collector"
PORTS = CollectorPorts(otlp_grpc=1001, otlp_http=1002, health=1003, telemetry=1004, prometheus=1005)


def test_every_listener_of_the_main_config_moves_to_loopback(tmp_path: Path) -> None:
    original = load_collector_config(COLLECTOR / "config.yaml")
    kept = copy.deepcopy(original)
    c = localize_collector_config(original, PORTS, tmp_path)
    assert "0.0.0.0" not in yaml.safe_dump(c)
    assert c["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "127.0.0.1:1001"
    assert c["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "127.0.0.1:1002"
    assert c["extensions"]["health_check"]["endpoint"] == "127.0.0.1:1003"
    assert c["exporters"]["prometheus"]["endpoint"] == "127.0.0.1:1005"
    (reader,) = c["service"]["telemetry"]["metrics"]["readers"]
    exporter = reader["pull"]["exporter"]["prometheus"]
    assert (exporter["host"], exporter["port"]) == ("127.0.0.1", 1004)
    queue = c["extensions"]["file_storage/queue"]
    assert queue["directory"] == str(tmp_path)
    assert queue["compaction"]["directory"] == str(tmp_path)
    # Only listeners and directories: the pipelines are the repository's, the input untouched.
    assert c["service"]["pipelines"] == kept["service"]["pipelines"]
    assert c["processors"] == kept["processors"]
    assert original == kept


def test_the_load_balancing_tier_needs_no_exporter_port_or_queue() -> None:
    config = load_collector_config(COLLECTOR / "loadbalancer.yaml")
    ports = CollectorPorts(otlp_grpc=2001, otlp_http=2002, health=2003, telemetry=2004)
    c = localize_collector_config(config, ports)
    assert "0.0.0.0" not in yaml.safe_dump(c)
    assert c["exporters"]["load_balancing"] == config["exporters"]["load_balancing"]


def test_a_prometheus_exporter_without_a_port_is_refused() -> None:
    config = load_collector_config(COLLECTOR / "config.yaml")
    ports = CollectorPorts(otlp_grpc=1, otlp_http=2, health=3, telemetry=4)
    with pytest.raises(ValueError, match="Prometheus exporter"):
        localize_collector_config(config, ports)


def test_later_files_win_and_maps_merge(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("x: {keep: 1, over: 1, list: [1, 2]}\n")
    b.write_text("x: {over: 2, list: [3]}\ny: 4\n")
    assert load_collector_config(a, b) == {"x": {"keep": 1, "over": 2, "list": [3]}, "y": 4}
