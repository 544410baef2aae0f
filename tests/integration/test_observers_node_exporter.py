"""The observer against Debian's node_exporter on the same host, at the same moment.

Counters (CPU seconds, network bytes) are bracketed: the observer reads the host, node_exporter
is scraped, the observer reads again, and node_exporter's value must lie between the two
readings (both read the same kernel counters, so this is exact up to node_exporter's float
formatting). Gauges that move on their own get a stated tolerance:

- memory available: 2 % of total (other processes allocate between the reads)
- load averages: 0.25 absolute around the two readings (the kernel updates them every 5 s)
- filesystem size: exact (0.01 %); bytes available: 1 % of size
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.catalogue import by_name
from gateway.observers.sampler import PsutilSampler, SystemClock
from gateway.observers.system import SystemObserver
from tests.support.node_exporter import (
    node_exporter,
)
from tests.support.observers import Collect, points_by_metric
from tests.support.servers import run_gateway

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url + "/metrics", timeout=10).text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def values(batch_points: dict, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return batch_points[by_name(name).otel_name()][1]


def test_observer_agrees_with_node_exporter(tmp_path: Path) -> None:
    out = Collect()
    observer = SystemObserver(out, sampler=PsutilSampler(), clock=SystemClock())
    with node_exporter(tmp_path) as ne:
        scrape(ne.url)  # warm up: first scrapes are slow, and the bracket should be tight
        observer.collect()
        time.sleep(0.05)
        observer.collect()
        node = scrape(ne.url)
        observer.collect()
    before = points_by_metric(out.batches[-2])
    after = points_by_metric(out.batches[-1])

    def bracket(name: str, key: frozenset[tuple[str, str]], got: float, slack: float) -> None:
        lo, hi = values(before, name)[key], values(after, name)[key]
        assert lo - slack <= got <= hi + slack, (name, dict(key), lo, got, hi)

    # CPU seconds, per core and mode
    checked = 0
    for (sample, labels), value in node.items():
        if sample != "node_cpu_seconds_total":
            continue
        lab = dict(labels)
        key = frozenset({"core": lab["cpu"], "mode": lab["mode"]}.items())
        bracket("system.cpu.time", key, value, slack=0.011)
        checked += 1
    assert checked >= 8

    # network bytes, per interface and direction (node_exporter leaves out lo)
    checked = 0
    for (sample, labels), value in node.items():
        direction = {"node_network_receive_bytes_total": "receive"}.get(sample) or {
            "node_network_transmit_bytes_total": "transmit"
        }.get(sample)
        if direction is None:
            continue
        key = frozenset({"interface": dict(labels)["device"], "direction": direction}.items())
        bracket("system.network.io", key, value, slack=0)
        checked += 1
    assert checked >= 2

    # memory available and total
    memory = values(after, "system.memory.usage")
    total = memory[frozenset({"type": "total"}.items())]
    assert node[("node_memory_MemTotal_bytes", frozenset())] == total
    available = memory[frozenset({"type": "available"}.items())]
    assert node[("node_memory_MemAvailable_bytes", frozenset())] == pytest.approx(
        available, abs=0.02 * total
    )

    # load averages
    for period, sample in (("1m", "node_load1"), ("5m", "node_load5"), ("15m", "node_load15")):
        bracket(
            "system.load_average",
            frozenset({"period": period}.items()),
            node[(sample, frozenset())],
            0.25,
        )

    # filesystems both report (their mountpoint exclusions are wider than ours)
    sizes = values(after, "system.filesystem.size")
    free = values(after, "system.filesystem.free")
    checked = 0
    for key, size in sizes.items():
        lab = dict(key)
        ne_key = frozenset(
            {
                "device": lab["device"],
                "mountpoint": lab["mountpoint"],
                "fstype": lab["fstype"],
            }.items()
        )
        ne_size = node.get(("node_filesystem_size_bytes", ne_key))
        if ne_size is None:
            continue
        assert ne_size == pytest.approx(size, rel=1e-4), lab
        ne_avail = node[("node_filesystem_avail_bytes", ne_key)]
        assert ne_avail == pytest.approx(free[key], abs=0.01 * size), lab
        checked += 1
    assert checked >= 1, f"no filesystem in common: ours {[dict(k) for k in sizes]}"


def test_gateway_metrics_endpoint_agrees_with_node_exporter(tmp_path: Path) -> None:
    """The same facts through the running gateway: observer -> pipeline -> /metrics."""
    with run_gateway(tmp_path, grpc=False) as gw, node_exporter(tmp_path) as ne:
        deadline = time.monotonic() + 15
        while httpx.get(gw.url + "/api/metrics/current").status_code != 200:
            assert time.monotonic() < deadline, "no observer cycle within 15 s"
            time.sleep(0.1)
        current = httpx.get(gw.url + "/api/metrics/current").json()
        ours = scrape(gw.url)
        node = scrape(ne.url)

    def series(name: str) -> dict[frozenset[tuple[str, str]], float]:
        drop = {"job", "instance", "otel_scope_name", "otel_scope_version"}
        return {
            frozenset((k, v) for k, v in labels if k not in drop): value
            for (sample, labels), value in ours.items()
            if sample == name
        }

    memory = series(by_name("system.memory.usage").prometheus_name())
    assert (
        memory[frozenset({("type", "total")})] == node[("node_memory_MemTotal_bytes", frozenset())]
    )

    # CPU seconds only grow: node_exporter, scraped after the observer's cycle, reads as much
    # or more, and not more than the time since (15 s on every core, generously)
    cpu = series(by_name("system.cpu.time").prometheus_name())
    for (sample, labels), value in node.items():
        if sample == "node_cpu_seconds_total":
            lab = dict(labels)
            got = cpu[frozenset({("core", lab["cpu"]), ("mode", lab["mode"])})]
            assert got - 0.011 <= value <= got + 15, (lab, got, value)

    sizes = series(by_name("system.filesystem.size").prometheus_name())
    common = [
        (key, size) for key, size in sizes.items() if ("node_filesystem_size_bytes", key) in node
    ]
    assert common, f"no filesystem in common: {list(sizes)}"
    for key, size in common:
        assert node[("node_filesystem_size_bytes", key)] == pytest.approx(size, rel=1e-4)

    load = series(by_name("system.load_average").prometheus_name())
    assert load[frozenset({("period", "15m")})] == pytest.approx(
        node[("node_load15", frozenset())], abs=0.25
    )
    assert current["summary"]["memory_utilization"] is not None
    assert current["history"]["points"], current
