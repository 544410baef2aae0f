"""What the observer reads the host through: a `Sampler` (a psutil facade) and a `Clock`.

Both are injected, as prometheus_client's process collector takes `proc=`: tests hand the
observer a fake host and a fake clock, production gets `PsutilSampler` and `SystemClock`.

The records are protocols of read-only attributes, so psutil's own named tuples pass through
unconverted (a copy per core per cycle would be pure overhead) and a test's `NamedTuple` fits.
`psutil.net_connections()` is deliberately absent: it is what makes
opentelemetry-instrumentation-system-metrics cost ~10 ms a collection.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import psutil

__all__ = [
    "Clock",
    "CpuTimes",
    "DiskIO",
    "DiskUsage",
    "NetIO",
    "Partition",
    "ProcessSample",
    "PsutilSampler",
    "Sampler",
    "SwapMemory",
    "SystemClock",
    "VirtualMemory",
]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds, for intervals."""
        ...

    def time_ns(self) -> int:
        """Wall clock, Unix nanoseconds, for data point timestamps."""
        ...

    def thread_time(self) -> float:
        """CPU seconds the calling thread has used (a cycle runs on one thread)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()

    def thread_time(self) -> float:
        return time.thread_time()


class CpuTimes(Protocol):
    """Seconds per mode since boot, as /proc/stat (Linux's `user` includes `guest`)."""

    @property
    def user(self) -> float: ...
    @property
    def nice(self) -> float: ...
    @property
    def system(self) -> float: ...
    @property
    def idle(self) -> float: ...
    @property
    def iowait(self) -> float: ...
    @property
    def irq(self) -> float: ...
    @property
    def softirq(self) -> float: ...
    @property
    def steal(self) -> float: ...


class VirtualMemory(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def available(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def buffers(self) -> int: ...
    @property
    def cached(self) -> int: ...


class SwapMemory(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def used(self) -> int: ...


class NetIO(Protocol):
    @property
    def bytes_sent(self) -> int: ...
    @property
    def bytes_recv(self) -> int: ...
    @property
    def packets_sent(self) -> int: ...
    @property
    def packets_recv(self) -> int: ...
    @property
    def errin(self) -> int: ...
    @property
    def errout(self) -> int: ...
    @property
    def dropin(self) -> int: ...
    @property
    def dropout(self) -> int: ...


class DiskIO(Protocol):
    @property
    def read_count(self) -> int: ...
    @property
    def write_count(self) -> int: ...
    @property
    def read_bytes(self) -> int: ...
    @property
    def write_bytes(self) -> int: ...


class Partition(Protocol):
    @property
    def device(self) -> str: ...
    @property
    def mountpoint(self) -> str: ...
    @property
    def fstype(self) -> str: ...


class DiskUsage(Protocol):
    """Bytes: `total` is the filesystem size, `free` what unprivileged users may still use."""

    @property
    def total(self) -> int: ...
    @property
    def free(self) -> int: ...


class ProcessSample(NamedTuple):
    cpu_user: float  # seconds
    cpu_system: float  # seconds
    rss: int  # bytes
    open_fds: int
    threads: int


class Sampler(Protocol):
    """Everything the observer reads from the host. Calls that fail raise `OSError` (or
    psutil's errors); the observer skips that part of the cycle and keeps the rest."""

    def boot_time(self) -> float:
        """Unix seconds."""
        ...

    def cpu_times(self) -> Sequence[CpuTimes]:
        """One entry per core, in core order."""
        ...

    def virtual_memory(self) -> VirtualMemory: ...
    def swap_memory(self) -> SwapMemory: ...
    def load_average(self) -> tuple[float, float, float]: ...
    def net_io_counters(self) -> Mapping[str, NetIO]: ...
    def disk_io_counters(self) -> Mapping[str, DiskIO]: ...
    def disk_partitions(self) -> Sequence[Partition]:
        """Every mount, pseudo filesystems included; the observer filters."""
        ...

    def disk_usage(self, mountpoint: str) -> DiskUsage: ...
    def process_start_time(self) -> float:
        """Unix seconds the observed (own) process started."""
        ...

    def process(self) -> ProcessSample: ...


class _Usage(NamedTuple):
    total: int
    free: int


class _Swap(NamedTuple):
    total: int
    used: int


_LINUX = sys.platform.startswith("linux")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if _LINUX else 4096


def _meminfo_kib(data: bytes, key: bytes) -> int:
    start = data.index(key) + len(key)
    return int(data[start : data.index(b"kB", start)])


class PsutilSampler:
    """The real host (and this process), through psutil.

    Two Linux shortcuts, both because a cycle's budget is about a millisecond and psutil spends
    a third of it on work the observer throws away: swap comes from two lines of
    /proc/meminfo (`psutil.swap_memory()` also parses all of /proc/vmstat for swap-in/out
    counts, ~90 us), and the process sample takes CPU times from `os.times()` and RSS and
    threads from the one /proc/self/stat line (psutil reads stat, statm and status, ~140 us).
    prometheus_client's process collector reads the same line the same way.
    """

    def __init__(self) -> None:
        self._proc = psutil.Process()

    def boot_time(self) -> float:
        return psutil.boot_time()

    def cpu_times(self) -> Sequence[CpuTimes]:
        return psutil.cpu_times(percpu=True)

    def virtual_memory(self) -> VirtualMemory:
        return psutil.virtual_memory()

    def swap_memory(self) -> SwapMemory:
        if not _LINUX:
            return psutil.swap_memory()
        with open("/proc/meminfo", "rb") as f:
            data = f.read()
        total = _meminfo_kib(data, b"SwapTotal:") * 1024
        return _Swap(total, total - _meminfo_kib(data, b"SwapFree:") * 1024)

    def load_average(self) -> tuple[float, float, float]:
        return os.getloadavg()

    # nowrap=False: Linux keeps these counters in 64 bits, and psutil's wrap bookkeeping
    # (a process-global cache it updates on every call) costs a quarter of the call.
    def net_io_counters(self) -> Mapping[str, NetIO]:
        return psutil.net_io_counters(pernic=True, nowrap=False)

    def disk_io_counters(self) -> Mapping[str, DiskIO]:
        return psutil.disk_io_counters(perdisk=True, nowrap=False)

    def disk_partitions(self) -> Sequence[Partition]:
        return psutil.disk_partitions(all=True)

    def disk_usage(self, mountpoint: str) -> DiskUsage:
        # statvfs directly: psutil.disk_usage computes `used` and `percent` we do not need.
        st = os.statvfs(mountpoint)
        return _Usage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)

    def process_start_time(self) -> float:
        return self._proc.create_time()

    def process(self) -> ProcessSample:
        if _LINUX:
            times = os.times()
            with open("/proc/self/stat", "rb") as f:
                # after "pid (comm) ": state is field 3, num_threads 20, rss (pages) 24
                fields = f.read().rpartition(b")")[2].split()
            return ProcessSample(
                times.user,
                times.system,
                int(fields[21]) * _PAGE_SIZE,
                len(os.listdir("/proc/self/fd")),
                int(fields[17]),
            )
        p = self._proc
        with p.oneshot():
            cpu = p.cpu_times()
            return ProcessSample(
                cpu.user, cpu.system, p.memory_info().rss, p.num_fds(), p.num_threads()
            )
