"""The real psutil path: `PsutilSampler` against psutil itself, and a real observer cycle."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from gateway.catalogue import by_name
from gateway.observers.sampler import PsutilSampler, SystemClock
from gateway.observers.system import SystemObserver
from tests.support.observers import Collect, attrs, points_by_metric

pytestmark = pytest.mark.integration


def n(name: str) -> str:
    return by_name(name).otel_name()


def test_shortcuts_agree_with_psutil() -> None:
    s = PsutilSampler()
    swap, ref_swap = s.swap_memory(), psutil.swap_memory()
    assert swap.total == ref_swap.total
    assert abs(swap.used - ref_swap.used) <= 16 * 1024**2
    p, ref = s.process(), psutil.Process()
    assert abs(p.rss - ref.memory_info().rss) <= 0.1 * ref.memory_info().rss
    assert p.threads == ref.num_threads()
    assert abs(p.open_fds - ref.num_fds()) <= 2
    cpu = ref.cpu_times()
    assert abs(p.cpu_user - cpu.user) <= 0.05 and abs(p.cpu_system - cpu.system) <= 0.05
    assert abs(s.process_start_time() - ref.create_time()) < 1e-6
    assert len(s.cpu_times()) == psutil.cpu_count()


def test_a_real_cycle() -> None:
    out = Collect()
    observer = SystemObserver(out, sampler=PsutilSampler(), clock=SystemClock())
    observer.collect()
    time.sleep(0.3)
    reading = observer.collect()
    got = points_by_metric(out.batches[-1])

    required = {
        "system.cpu.time",
        "system.cpu.usage_percent",
        "system.memory.usage",
        "system.memory.utilization",
        "system.load_average",
        "system.uptime",
        "system.network.io",
        "system.network.packets",
        "system.network.errors",
        "system.network.dropped",
        "system.filesystem.size",
        "system.filesystem.free",
        "system.filesystem.utilization",
        "process.cpu.time",
        "process.memory.rss",
        "process.open_fds",
        "process.threads",
        "gateway.observer.interval",
        "gateway.observer.cycle.cpu",
        "gateway.observer.overhead",
    }
    assert {n(r) for r in required} <= set(got)

    ncpu = psutil.cpu_count()
    _, cpu_time = got[n("system.cpu.time")]
    assert len(cpu_time) == 8 * ncpu
    _, pct = got[n("system.cpu.usage_percent")]
    for core in [*map(str, range(ncpu)), "total"]:
        parts = [pct[attrs(core=core, type=t)] for t in ("user", "system", "iowait", "idle")]
        # 100 / all * idle is 100.00000000000001 for a core idle the whole cycle.
        assert all(0 <= v <= 100 + 1e-9 for v in parts), parts
        assert sum(parts) <= 100.0 + 1e-6  # steal is the rest
        usage = pct[attrs(core=core, type="usage")]
        assert usage == pytest.approx(100 - parts[2] - parts[3])
    assert reading.cpu_usage_percent == pct[attrs(core="total", type="usage")]

    _, memory = got[n("system.memory.usage")]
    assert memory[attrs(type="total")] == psutil.virtual_memory().total
    _, uptime = got[n("system.uptime")]
    assert uptime[attrs()] == pytest.approx(time.time() - psutil.boot_time(), abs=2)
    _, load = got[n("system.load_average")]
    assert load[attrs(period="1m")] == pytest.approx(os.getloadavg()[0], abs=0.5)
    _, sizes = got[n("system.filesystem.size")]
    root = [k for k in sizes if dict(k)["mountpoint"] == "/"]
    if root:  # a container's overlay root is filtered like node_exporter does
        st = os.statvfs("/")
        assert sizes[root[0]] == st.f_blocks * st.f_frsize
    _, rss = got[n("process.memory.rss")]
    assert rss[attrs()] == pytest.approx(psutil.Process().memory_info().rss, rel=0.2)
    _, cost = got[n("gateway.observer.cycle.cpu")]
    assert 0 < cost[attrs()] < 0.05
