from __future__ import annotations

import asyncio
import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.metrics.v1 import metrics_pb2

from gateway.catalogue import Kind, by_name
from gateway.errors import RetryableError
from gateway.observers.config import ObserversConfig
from gateway.observers.system import SCOPE, SystemObserver
from gateway.pipeline.batch import MetricsBatch
from tests.support.observers import (
    BOOT,
    PROC_START,
    Collect,
    FakeClock,
    FakeSampler,
    GiB,
    MiB,
    Net,
    attrs,
    cpu_after,
    points_by_metric,
)

NS = "testns"
RESOURCE = {"service.name": "telemetry-gateway", "service.instance.id": "test:1"}


def make(
    config: ObserversConfig | None = None,
    sampler: FakeSampler | None = None,
    clock: FakeClock | None = None,
    consumer: Collect | None = None,
) -> tuple[SystemObserver, FakeSampler, FakeClock, Collect]:
    sampler = sampler or FakeSampler()
    clock = clock or FakeClock()
    consumer = consumer or Collect()
    observer = SystemObserver(
        consumer, config, namespace=NS, resource=RESOURCE, clock=clock, sampler=sampler
    )
    return observer, sampler, clock, consumer


def n(name: str) -> str:
    return by_name(name).otel_name(NS)


def second_cycle_host(sampler: FakeSampler) -> None:
    """CPU moves by exactly 100 ticks per core between the two cycles."""
    c0, c1 = sampler.cpu
    sampler.cpu = [
        cpu_after(c0, user=30, system=10, idle=50, iowait=5, irq=2, softirq=3),
        cpu_after(c1, user=10, system=5, idle=80, iowait=5),
    ]


def expected_second_cycle(
    sampler: FakeSampler,
) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    cpu_time = {}
    for core, t in enumerate(sampler.cpu):
        for mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"):
            cpu_time[attrs(core=str(core), mode=mode)] = float(getattr(t, mode))
    pct = {}
    for core, values in (
        ("0", (30, 15, 5, 50, 45)),
        ("1", (10, 5, 5, 80, 15)),
        ("total", (20, 10, 5, 65, 30)),
    ):
        for type_, v in zip(("user", "system", "iowait", "idle", "usage"), values, strict=True):
            pct[attrs(core=core, type=type_)] = float(v)

    def net(rx_lo: float, tx_lo: float, rx_eth: float, tx_eth: float) -> dict:
        return {
            attrs(interface="lo", direction="receive"): rx_lo,
            attrs(interface="lo", direction="transmit"): tx_lo,
            attrs(interface="eth0", direction="receive"): rx_eth,
            attrs(interface="eth0", direction="transmit"): tx_eth,
        }

    root = attrs(device="/dev/sda1", mountpoint="/", fstype="ext4")
    home = attrs(device="/dev/sda2", mountpoint="/home", fstype="xfs")
    return {
        n("system.cpu.time"): cpu_time,
        n("system.cpu.usage_percent"): pct,
        n("system.memory.usage"): {
            attrs(type="total"): 8 * GiB,
            attrs(type="used"): 1.5 * GiB,
            attrs(type="available"): 6 * GiB,
            attrs(type="cached"): 1 * GiB,
            attrs(type="buffers"): 256 * MiB,
            attrs(type="swap_total"): 2 * GiB,
            attrs(type="swap_used"): 512 * MiB,
        },
        n("system.memory.utilization"): {attrs(): 0.25},
        n("system.load_average"): {
            attrs(period="1m"): 0.5,
            attrs(period="5m"): 0.4,
            attrs(period="15m"): 0.3,
        },
        n("system.uptime"): {attrs(): 3610.0},
        n("system.network.io"): net(1000, 1000, 9000, 5000),
        n("system.network.packets"): net(10, 10, 90, 50),
        n("system.network.errors"): net(0, 0, 1, 2),
        n("system.network.dropped"): net(0, 0, 3, 4),
        n("system.disk.io"): {
            attrs(device="sda", direction="read"): 100 * 4096,
            attrs(device="sda", direction="write"): 200 * 4096,
        },
        n("system.disk.operations"): {
            attrs(device="sda", direction="read"): 100,
            attrs(device="sda", direction="write"): 200,
        },
        n("system.filesystem.size"): {root: 100 * GiB, home: 50 * GiB},
        n("system.filesystem.free"): {root: 40 * GiB, home: 45 * GiB},
        n("system.filesystem.utilization"): {root: 0.6, home: 0.1},
        n("process.cpu.time"): {attrs(mode="user"): 1.5, attrs(mode="system"): 0.5},
        n("process.memory.rss"): {attrs(): 50 * MiB},
        n("process.open_fds"): {attrs(): 12},
        n("process.threads"): {attrs(): 4},
        # load 0.5 on two cores = 0.25 per core: the default curve's 10 s
        n("gateway.observer.interval"): {attrs(): 10.0},
        n("gateway.observer.cycle.cpu"): {attrs(): 0.0004},
        # first cycle: 0.4 ms over the planned 10 s
        n("gateway.observer.overhead"): {attrs(): 0.0004 / 10},
    }


def test_batch_has_exactly_the_expected_metrics_labels_and_values() -> None:
    observer, sampler, clock, out = make()
    observer.collect()
    clock.advance(10)
    second_cycle_host(sampler)
    observer.collect()

    batch = out.batches[-1]
    assert batch.source == "observer"
    got = points_by_metric(batch)
    want = expected_second_cycle(sampler)
    assert set(got) == set(want)
    for name, points in want.items():
        _, values = got[name]
        assert set(values) == set(points), name
        for key, value in points.items():
            assert values[key] == pytest.approx(value, rel=1e-12), (name, dict(key))


def test_metric_kinds_units_start_times_and_resource() -> None:
    observer, _, clock, out = make()
    observer.collect()
    clock.advance(10)
    observer.collect()
    request = out.batches[-1].request
    rm = request.resource_metrics[0]
    resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
    assert resource == RESOURCE
    assert rm.scope_metrics[0].scope.name == SCOPE
    for m in rm.scope_metrics[0].metrics:
        entry = by_name(m.name.removeprefix(NS + "."))
        assert m.unit == entry.unit and m.description == entry.help
        if entry.kind is Kind.GAUGE:
            assert m.WhichOneof("data") == "gauge", m.name
            continue
        assert m.WhichOneof("data") == "sum", m.name
        assert m.sum.is_monotonic
        assert m.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        start = PROC_START if m.name.startswith(NS + ".process.") else BOOT
        for p in m.sum.data_points:
            assert p.start_time_unix_nano == int(start * 1e9), m.name
            assert p.time_unix_nano == clock.wall_ns


def test_first_cycle_has_no_cpu_percent_and_no_cost_yet() -> None:
    observer, _, _, out = make()
    reading = observer.collect()
    got = points_by_metric(out.batches[0])
    assert n("system.cpu.time") in got
    assert n("system.cpu.usage_percent") not in got
    assert n("gateway.observer.cycle.cpu") not in got
    assert reading.cpu_usage_percent is None
    assert reading.memory_utilization == 0.25 and reading.load_1m == 0.5


def test_per_cpu_off_keeps_only_the_total() -> None:
    observer, sampler, clock, out = make(ObserversConfig(per_cpu=False))
    observer.collect()
    clock.advance(10)
    second_cycle_host(sampler)
    observer.collect()
    _, pct = points_by_metric(out.batches[-1])[n("system.cpu.usage_percent")]
    assert {dict(k)["core"] for k in pct} == {"total"}
    assert pct[attrs(core="total", type="usage")] == pytest.approx(30.0)


def test_pseudo_network_and_excluded_filesystems_are_filtered() -> None:
    observer, _, _, out = make()
    observer.collect()
    _, sizes = points_by_metric(out.batches[0])[n("system.filesystem.size")]
    mounts = {dict(k)["mountpoint"] for k in sizes}
    # proc, sysfs, tmpfs, cgroup2, overlay, devpts, nfs4: by type; docker plugins: by path;
    # /data: gone before its statvfs
    assert mounts == {"/", "/home"}


def test_exclusion_patterns_come_from_config() -> None:
    config = ObserversConfig(
        network_interfaces_exclude="^lo$",
        disk_devices_exclude="^loop",
        fstypes_exclude=("proc",),
        mountpoints_exclude="^/home$",
    )
    sampler = FakeSampler()
    sampler.usage["/run"] = sampler.usage["/"]
    observer, _, _, out = make(config, sampler)
    observer.collect()
    got = points_by_metric(out.batches[0])
    assert {dict(k)["interface"] for k in got[n("system.network.io")][1]} == {"eth0"}
    assert {dict(k)["device"] for k in got[n("system.disk.io")][1]} == {"sda", "sda1"}
    mounts = {dict(k)["mountpoint"] for k in got[n("system.filesystem.size")][1]}
    assert mounts == {"/", "/run", "/var/lib/docker/plugins"}


def test_mount_table_is_read_every_n_cycles_but_usage_every_cycle() -> None:
    observer, sampler, clock, _ = make(ObserversConfig(filesystem_refresh_cycles=5))
    for _ in range(5):
        observer.collect()
        clock.advance(10)
    assert sampler.calls["disk_partitions"] == 1
    assert sampler.calls["disk_usage"] == 5 * 3  # /, /home and the vanished /data
    sampler.partitions = sampler.partitions[:1]
    observer.collect()
    assert sampler.calls["disk_partitions"] == 2
    assert sampler.calls["disk_usage"] == 5 * 3 + 1
    assert sampler.calls["boot_time"] == 1 and sampler.calls["process_start_time"] == 1


def test_one_failing_part_spares_the_rest_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    sampler = FakeSampler(failing={"net_io_counters", "swap_memory"})
    observer, _, clock, out = make(sampler=sampler)
    with caplog.at_level(logging.WARNING, logger="gateway.observers.system"):
        for _ in range(3):
            observer.collect()
            clock.advance(10)
    got = points_by_metric(out.batches[-1])
    assert n("system.network.io") not in got and n("system.memory.usage") not in got
    assert n("system.cpu.time") in got and n("system.filesystem.size") in got
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert any("network" in w for w in warnings) and any("memory" in w for w in warnings)
    # recovered: back in the next batch
    sampler.failing.clear()
    observer.collect()
    assert n("system.network.io") in points_by_metric(out.batches[-1])


def test_refused_batch_does_not_stop_the_cycle() -> None:
    class Refuses:
        def consume(self, batch: MetricsBatch) -> None:
            raise RetryableError("full")

    observer = SystemObserver(Refuses(), clock=FakeClock(), sampler=FakeSampler())
    observer.collect()
    observer.collect()
    assert len(observer.history) == 2


def test_network_interface_appearing_changes_the_batch_shape() -> None:
    observer, sampler, clock, out = make()
    observer.collect()
    sampler.net["veth1"] = Net(1, 2, 3, 4, 0, 0, 0, 0)
    clock.advance(10)
    observer.collect()
    del sampler.net["lo"]
    clock.advance(10)
    observer.collect()
    ifaces = [
        {dict(k)["interface"] for k in points_by_metric(b)[n("system.network.io")][1]}
        for b in out.batches
    ]
    assert ifaces == [{"lo", "eth0"}, {"lo", "eth0", "veth1"}, {"eth0", "veth1"}]
    _, io = points_by_metric(out.batches[1])[n("system.network.io")]
    assert io[attrs(interface="veth1", direction="receive")] == 2


def test_interval_follows_load_per_core_between_the_bounds() -> None:
    observer, sampler, clock, _ = make()
    seen = []
    for load_per_core in (0.0, 0.05, 0.15, 0.25, 0.5, 0.85, 1.0, 3.0, 0.5, 0.0):
        sampler.load = (load_per_core * 2, 0.0, 0.0)
        observer.collect()
        seen.append(observer.interval)
        clock.advance(observer.interval)
    assert seen == pytest.approx([30, 30, 20, 10, 10, 7.5, 5, 5, 10, 30])


def test_cpu_percent_signal() -> None:
    curve = ((10.0, 30.0), (90.0, 5.0))
    observer, sampler, clock, _ = make(ObserversConfig(signal="cpu_percent", curve=curve))
    observer.collect()
    assert observer.interval == 10.0  # no CPU usage yet on the first cycle: unchanged
    clock.advance(10)
    second_cycle_host(sampler)  # 30 % busy
    observer.collect()
    assert observer.interval == pytest.approx(30 - 25 * (30 - 10) / 80)


def test_self_cost_lengthens_the_interval_and_it_recovers() -> None:
    config = ObserversConfig(cost_window_cycles=3)
    sampler = FakeSampler(load=(4.0, 0.0, 0.0))  # 2 per core: the curve wants 5 s
    clock = FakeClock(cpu_step=0.0004)
    observer, _, _, out = make(config, sampler, clock)

    def run(cycles: int) -> list[float]:
        seen = []
        for _ in range(cycles):
            observer.collect()
            seen.append(observer.interval)
            clock.advance(observer.interval)
        return seen

    assert run(3) == [5.0, 5.0, 5.0]
    clock.cpu_step = 0.1  # 100 ms a cycle: 0.5 % of a core needs 20 s
    assert run(3)[-1] == pytest.approx(20.0)
    clock.cpu_step = 1.0  # would need 200 s: held at the 30 s bound
    assert run(4)[-1] == 30.0
    assert observer.overhead == pytest.approx(1.0 / 30)
    clock.cpu_step = 0.0004
    assert run(3)[-1] == 5.0
    exported = points_by_metric(out.batches[-1])
    assert exported[n("gateway.observer.cycle.cpu")][1][attrs()] == pytest.approx(0.0004)


def test_fixed_interval_when_not_adaptive() -> None:
    config = ObserversConfig(adaptive=False, interval_seconds=12)
    observer, sampler, clock, _ = make(config, clock=FakeClock(cpu_step=1.0))
    for load in (0.0, 10.0):
        sampler.load = (load, 0, 0)
        observer.collect()
        clock.advance(12)
        assert observer.interval == 12


def test_history_gets_one_point_per_cycle() -> None:
    observer, sampler, clock, _ = make()
    observer.collect()
    clock.advance(10)
    second_cycle_host(sampler)
    observer.collect()
    points = observer.history.points()
    assert [p.cpu_usage_percent for p in points] == [None, pytest.approx(30.0)]
    assert points[-1].time_unix_nano == clock.wall_ns
    assert observer.history.interval_seconds == 10.0


# --- lifecycle (real event loop, real time, tiny intervals) ----------------------------------


def _fast_config() -> ObserversConfig:
    return ObserversConfig(
        interval_seconds=0.02,
        min_interval_seconds=0.02,
        max_interval_seconds=0.05,
        curve=((0.0, 0.02),),
    )


def test_start_runs_cycles_until_shutdown_and_shutdown_is_idempotent() -> None:
    out = Collect()
    observer = SystemObserver(out, _fast_config(), sampler=FakeSampler())

    async def scenario() -> None:
        await observer.shutdown()  # before start: nothing to do
        await observer.start()
        await observer.start()  # twice: still one loop
        deadline = time.monotonic() + 5
        while len(out.batches) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await observer.shutdown()
        await observer.shutdown()

    asyncio.run(scenario())
    assert len(out.batches) >= 3
    stopped_at = len(out.batches)
    time.sleep(0.1)
    assert len(out.batches) == stopped_at


def test_loop_survives_a_failing_cycle(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def consume(self, batch: MetricsBatch) -> None:
            self.calls += 1
            if self.calls == 1:
                raise ValueError("a bug downstream")

    flaky = Flaky()
    observer = SystemObserver(flaky, _fast_config(), sampler=FakeSampler())

    async def scenario() -> None:
        await observer.start()
        deadline = time.monotonic() + 5
        while flaky.calls < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await observer.shutdown()

    with caplog.at_level(logging.ERROR, logger="gateway.observers.system"):
        asyncio.run(scenario())
    assert flaky.calls >= 3
    assert any("cycle failed" in r.getMessage() for r in caplog.records)


def test_disabled_observer_does_not_run() -> None:
    out = Collect()
    observer = SystemObserver(out, ObserversConfig(enabled=False), sampler=FakeSampler())

    async def scenario() -> None:
        await observer.start()
        await asyncio.sleep(0.05)
        await observer.shutdown()

    asyncio.run(scenario())
    assert out.batches == []


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=64), st.floats(min_value=0, max_value=2)),
        min_size=1,
        max_size=30,
    )
)
def test_interval_stays_within_bounds_whatever_load_and_cost(
    cycles: list[tuple[float, float]],
) -> None:
    observer, sampler, clock, _ = make()
    for load, cost in cycles:
        sampler.load = (load, load, load)
        clock.cpu_step = cost
        observer.collect()
        assert 5.0 <= observer.interval <= 30.0
        clock.advance(observer.interval)
