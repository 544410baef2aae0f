"""`ObserversConfig`: settings of the system observer (the `observers:` YAML section).

Settings only; the running state (previous CPU times, the filesystem cache, the interval
controller's window) lives in `SystemObserver` and `IntervalController`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_CURVE",
    "DEFAULT_DISK_DEVICES_EXCLUDE",
    "DEFAULT_FSTYPES_EXCLUDE",
    "DEFAULT_MOUNTPOINTS_EXCLUDE",
    "ObserversConfig",
]

# Load per core -> interval seconds, linear between points and flat beyond the ends.
# A busy host gets a finer look (5 s at one runnable task per core and above): that is when the
# CPU and memory alerts need samples, and a cycle costs well under 1 ms, so looking closely is
# cheap. A normal host stays at the 10 s default; an idle one is sampled every 30 s because
# nothing there changes. The self-overhead budget lengthens any of these when cycles get dear.
DEFAULT_CURVE: tuple[tuple[float, float], ...] = (
    (0.05, 30.0),
    (0.25, 10.0),
    (0.7, 10.0),
    (1.0, 5.0),
)

# Pseudo, virtual and network filesystems: node_exporter's default exclusions plus tmpfs/ramfs
# (memory, not disk), and network filesystems, whose statvfs can block the event loop for as
# long as the server is unreachable.
DEFAULT_FSTYPES_EXCLUDE: tuple[str, ...] = (
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "efivarfs", "erofs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs",
    "overlay", "proc", "procfs", "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs",
    "squashfs", "sysfs", "tmpfs", "tracefs",
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "ceph", "glusterfs",
)  # fmt: skip

# node_exporter's defaults (collector.filesystem.mount-points-exclude, diskstats.device-exclude).
DEFAULT_MOUNTPOINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_DISK_DEVICES_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"


class ObserversConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: run the system observer at all
    enabled: bool = True
    #: interval of the first cycles, and the fixed interval when `adaptive` is false
    interval_seconds: float = Field(default=10.0, gt=0)
    #: bounds the adaptive interval never leaves
    min_interval_seconds: float = Field(default=5.0, gt=0)
    max_interval_seconds: float = Field(default=30.0, gt=0)
    #: move the interval with system load and the self-overhead budget
    adaptive: bool = True
    #: what the curve reads: the 1-minute load average per core, or the CPU usage percent over
    #: the last interval (reacts one cycle after a spike, where load_1m takes about a minute)
    signal: Literal["load_per_core", "cpu_percent"] = "load_per_core"
    #: (signal value, interval seconds) points, signal strictly increasing; linear in between,
    #: flat beyond the first and last point; the result is then held within the bounds
    curve: tuple[tuple[float, float], ...] = DEFAULT_CURVE
    #: the observer's own CPU time as a ratio of one core it may use (0.005 = 0.5 %); when
    #: its cycles cost more, the interval lengthens (up to max_interval_seconds)
    overhead_budget: float = Field(default=0.005, gt=0, le=1)
    #: cycles over which the per-cycle cost and the overhead ratio are averaged
    cost_window_cycles: int = Field(default=6, ge=1, le=1000)
    #: re-read the mount table every this many cycles (mounts change rarely; reading them costs
    #: more than the statvfs calls themselves)
    filesystem_refresh_cycles: int = Field(default=30, ge=1)
    #: filesystem types left out (exact names)
    fstypes_exclude: tuple[str, ...] = DEFAULT_FSTYPES_EXCLUDE
    #: mountpoints left out (regular expression, searched)
    mountpoints_exclude: str = DEFAULT_MOUNTPOINTS_EXCLUDE
    #: block devices left out of disk I/O (regular expression; default: partitions, loop, ram)
    disk_devices_exclude: str = DEFAULT_DISK_DEVICES_EXCLUDE
    #: network interfaces left out (regular expression; empty: none)
    network_interfaces_exclude: str = ""
    #: per-core CPU series besides core="total" (turn off on hosts with very many cores)
    per_cpu: bool = True
    #: the gateway's own process: CPU, RSS, open fds, threads
    process: bool = True
    #: minutes of key gauges (CPU usage, memory utilisation, load 1m) kept for
    #: GET /api/metrics/current; the buffer holds at most this many minutes at the min interval
    history_minutes: float = Field(default=15.0, gt=0, le=24 * 60)

    @field_validator("mountpoints_exclude", "disk_devices_exclude", "network_interfaces_exclude")
    @classmethod
    def _is_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("curve")
    @classmethod
    def _curve_increases(
        cls, value: tuple[tuple[float, float], ...]
    ) -> tuple[tuple[float, float], ...]:
        if not value:
            raise ValueError("needs at least one (signal, interval seconds) point")
        for i, (x, seconds) in enumerate(value):
            if seconds <= 0:
                raise ValueError(f"point {i}: interval {seconds} must be > 0")
            if i and x <= value[i - 1][0]:
                raise ValueError(f"point {i}: signal values must increase ({value[i - 1][0]}, {x})")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> ObserversConfig:
        if self.min_interval_seconds > self.max_interval_seconds:
            raise ValueError(
                f"min_interval_seconds ({self.min_interval_seconds}) is above "
                f"max_interval_seconds ({self.max_interval_seconds})"
            )
        if not self.min_interval_seconds <= self.interval_seconds <= self.max_interval_seconds:
            raise ValueError(
                f"interval_seconds ({self.interval_seconds}) is outside "
                f"[min_interval_seconds, max_interval_seconds]"
            )
        return self

    @property
    def history_size(self) -> int:
        """Entries the history buffer holds: `history_minutes` at the shortest interval."""
        return int(self.history_minutes * 60 / self.min_interval_seconds) + 1
