"""A fake host and a fake clock for the observer's unit tests (the real psutil path has its
own tests)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.observers.sampler import ProcessSample
from gateway.pipeline.batch import MetricsBatch

GiB = 1024**3
MiB = 1024**2
BOOT = 1_700_000_000.0
NOW = BOOT + 3600.0
PROC_START = BOOT + 3000.0


class CpuT(NamedTuple):
    user: float
    nice: float
    system: float
    idle: float
    iowait: float
    irq: float
    softirq: float
    steal: float


class VM(NamedTuple):
    total: int
    available: int
    used: int
    buffers: int
    cached: int


class Swap(NamedTuple):
    total: int
    used: int


class Net(NamedTuple):
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    errin: int
    errout: int
    dropin: int
    dropout: int


class Disk(NamedTuple):
    read_count: int
    write_count: int
    read_bytes: int
    write_bytes: int


class Part(NamedTuple):
    device: str
    mountpoint: str
    fstype: str


class Usage(NamedTuple):
    total: int
    free: int


def cpu_after(t: CpuT, **delta: float) -> CpuT:
    return t._replace(**{k: getattr(t, k) + v for k, v in delta.items()})


@dataclass
class FakeClock:
    """Time moves only when the test says so; every `thread_time()` call adds `cpu_step`, so
    one observer cycle (which reads it twice) costs exactly `cpu_step` CPU seconds."""

    mono: float = 1000.0
    wall_ns: int = int(NOW * 1e9)
    cpu: float = 0.0
    cpu_step: float = 0.0004

    def monotonic(self) -> float:
        return self.mono

    def time_ns(self) -> int:
        return self.wall_ns

    def thread_time(self) -> float:
        self.cpu += self.cpu_step
        return self.cpu

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall_ns += int(seconds * 1e9)


def _default_cpu() -> list[CpuT]:
    return [
        CpuT(100, 10, 50, 800, 20, 5, 5, 10),
        CpuT(200, 0, 100, 650, 30, 10, 10, 0),
    ]


def _default_partitions() -> list[Part]:
    return [
        Part("/dev/sda1", "/", "ext4"),
        Part("proc", "/proc", "proc"),
        Part("sysfs", "/sys", "sysfs"),
        Part("tmpfs", "/run", "tmpfs"),
        Part("cgroup2", "/sys/fs/cgroup", "cgroup2"),
        Part("/dev/sda2", "/home", "xfs"),
        Part("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay"),
        Part("/dev/sda1", "/var/lib/docker/plugins", "ext4"),
        Part("server:/export", "/mnt/nfs", "nfs4"),
        Part("devpts", "/dev/pts", "devpts"),
        Part("/dev/sdb1", "/data", "ext4"),  # unmounted before it can be stat'ed
    ]


@dataclass
class FakeSampler:
    """A two-core host with lo, eth0, sda and two real filesystems among pseudo ones."""

    cpu: list[CpuT] = field(default_factory=_default_cpu)
    vm: VM = field(default_factory=lambda: VM(8 * GiB, 6 * GiB, 3 * GiB // 2, 256 * MiB, GiB))
    swap: Swap = field(default_factory=lambda: Swap(2 * GiB, 512 * MiB))
    load: tuple[float, float, float] = (0.5, 0.4, 0.3)
    net: dict[str, Net] = field(
        default_factory=lambda: {
            "lo": Net(1000, 1000, 10, 10, 0, 0, 0, 0),
            "eth0": Net(5000, 9000, 50, 90, 1, 2, 3, 4),
        }
    )
    disk: dict[str, Disk] = field(
        default_factory=lambda: {
            "sda": Disk(100, 200, 100 * 4096, 200 * 4096),
            "sda1": Disk(90, 190, 90 * 4096, 190 * 4096),
            "loop0": Disk(5, 0, 5 * 4096, 0),
        }
    )
    partitions: list[Part] = field(default_factory=_default_partitions)
    usage: dict[str, Usage] = field(
        default_factory=lambda: {
            "/": Usage(100 * GiB, 40 * GiB),
            "/home": Usage(50 * GiB, 45 * GiB),
            "/var/lib/docker/plugins": Usage(100 * GiB, 40 * GiB),
        }
    )
    boot: float = BOOT
    proc_start: float = PROC_START
    proc: ProcessSample = field(default_factory=lambda: ProcessSample(1.5, 0.5, 50 * MiB, 12, 4))
    #: method names that raise OSError, to test that one failing part spares the rest
    failing: set[str] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.failing:
            raise OSError(f"{name} failed (fake)")

    def boot_time(self) -> float:
        self._call("boot_time")
        return self.boot

    def cpu_times(self) -> list[CpuT]:
        self._call("cpu_times")
        return list(self.cpu)

    def virtual_memory(self) -> VM:
        self._call("virtual_memory")
        return self.vm

    def swap_memory(self) -> Swap:
        self._call("swap_memory")
        return self.swap

    def load_average(self) -> tuple[float, float, float]:
        self._call("load_average")
        return self.load

    def net_io_counters(self) -> dict[str, Net]:
        self._call("net_io_counters")
        return dict(self.net)

    def disk_io_counters(self) -> dict[str, Disk]:
        self._call("disk_io_counters")
        return dict(self.disk)

    def disk_partitions(self) -> list[Part]:
        self._call("disk_partitions")
        return list(self.partitions)

    def disk_usage(self, mountpoint: str) -> Usage:
        self._call("disk_usage")
        if mountpoint not in self.usage:
            raise FileNotFoundError(mountpoint)
        return self.usage[mountpoint]

    def process_start_time(self) -> float:
        self._call("process_start_time")
        return self.proc_start

    def process(self) -> ProcessSample:
        self._call("process")
        return self.proc


class Collect:
    """A consumer that keeps what it is given."""

    def __init__(self) -> None:
        self.batches: list[MetricsBatch] = []

    def consume(self, batch: MetricsBatch) -> None:
        self.batches.append(batch)


Points = dict[frozenset[tuple[str, str]], float]


def points_by_metric(batch: MetricsBatch) -> dict[str, tuple[str, Points]]:
    """metric name -> (data kind, {attributes: value}); checks timestamps are set."""
    out: dict[str, tuple[str, Points]] = {}
    for rm in batch.request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                assert kind is not None
                points: Points = {}
                for p in getattr(m, kind).data_points:
                    assert p.time_unix_nano > 0
                    key = frozenset((kv.key, kv.value.string_value) for kv in p.attributes)
                    assert key not in points, f"duplicate point {m.name} {dict(key)}"
                    points[key] = p.as_double
                assert m.name not in out, f"duplicate metric {m.name}"
                out[m.name] = (kind, points)
    return out


def attrs(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())
