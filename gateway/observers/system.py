"""`SystemObserver`: host and own-process metrics into the pipeline, on an adaptive interval.

Each cycle reads the host through the injected `Sampler`, turns it into a `Reading` (catalogue
entries and points), builds one OTLP batch (`source="observer"`) and hands it to the consumer,
then asks the `IntervalController` when to come back. It measures its own cost with the
injected clock's thread CPU time: the cycle runs synchronously on the event loop's thread, so
that is exactly the CPU the cycle used (about half a millisecond; see docs/performance.md).

What keeps a cycle cheap: no `net_connections()`; the mount table is read every
`filesystem_refresh_cycles` cycles, not every cycle; boot and process start times are read once;
attribute mappings are built once per core, interface, device and mount and reused.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable, Sequence

from gateway import __version__
from gateway.catalogue import DEFAULT_NAMESPACE, Metric, by_name
from gateway.errors import GatewayError
from gateway.observers.adaptive import IntervalController
from gateway.observers.config import ObserversConfig
from gateway.observers.history import History
from gateway.observers.reading import Reading, Series
from gateway.observers.sampler import Clock, CpuTimes, PsutilSampler, Sampler, SystemClock
from gateway.observers.template import BatchTemplate
from gateway.pipeline import Consumer, MetricsBatch
from gateway.pipeline.builder import Attributes

__all__ = ["SCOPE", "SystemObserver", "default_resource"]

SCOPE = "gateway.observers"

_log = logging.getLogger(__name__)

_NS = 1_000_000_000
# After start, the first cycle waits this long so that CPU usage has an interval to cover.
_FIRST_CYCLE_DELAY_SECONDS = 1.0
# Attribute caches keyed by interface or device name are cleared past this size, so that hosts
# creating and removing interfaces (a veth per container) do not grow them forever.
_MAX_CACHED_NAMES = 1024
_NET_DIRECTIONS = ("receive", "transmit")
_DISK_DIRECTIONS = ("read", "write")


def _pair(
    cache: dict[str, tuple[Attributes, Attributes] | None],
    name: str,
    excluded: Callable[[str], bool],
    key: str,
    directions: tuple[str, str],
) -> tuple[Attributes, Attributes] | None:
    """The two attribute sets of an interface or device (one per direction), made once and
    reused every cycle; None for an excluded name. The cache is bounded: it starts over past
    `_MAX_CACHED_NAMES` names (containers come and go)."""
    if name in cache:
        return cache[name]
    if len(cache) > _MAX_CACHED_NAMES:
        cache.clear()
    first, second = directions
    attrs: tuple[Attributes, Attributes] | None = (
        None
        if excluded(name)
        else ({key: name, "direction": first}, {key: name, "direction": second})
    )
    cache[name] = attrs
    return attrs


_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# usage_percent types: user and system fold in their kin (nice; irq and softirq) so that
# user + system + iowait + idle + steal = 100; usage = 100 - idle - iowait.
_PCT_TYPES = ("user", "system", "iowait", "idle", "usage")
_MEMORY_TYPES = ("total", "used", "available", "cached", "buffers", "swap_total", "swap_used")
_LOAD_PERIODS = ("1m", "5m", "15m")
# catalogue name -> (receive field, transmit field) of psutil's snetio
_NET_FIELDS = (
    ("system.network.io", "bytes_recv", "bytes_sent"),
    ("system.network.packets", "packets_recv", "packets_sent"),
    ("system.network.errors", "errin", "errout"),
    ("system.network.dropped", "dropin", "dropout"),
)

_NO_ATTRS: Attributes = {}


def default_resource(instance_id: str | None = None) -> dict[str, str]:
    """The gateway's resource when the caller has none: job "telemetry-gateway", instance the
    host name."""
    host = socket.gethostname()
    return {
        "service.name": "telemetry-gateway",
        "service.instance.id": instance_id or host,
        "host.name": host,
    }


def _matcher(pattern: str) -> Callable[[str], bool]:
    if not pattern:
        return lambda _name: False
    compiled = re.compile(pattern)
    return lambda name: compiled.search(name) is not None


class SystemObserver:
    """A Component that feeds host and process metrics to `consumer` every few seconds.

    `collect()` runs one cycle synchronously (tests and the benchmark call it directly);
    `start()` runs cycles on the event loop until `shutdown()`.
    """

    def __init__(
        self,
        consumer: Consumer,
        config: ObserversConfig | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        resource: Attributes | None = None,
        clock: Clock | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self._consumer = consumer
        self._config = config = config or ObserversConfig()
        self._namespace = namespace
        self._resource: Attributes = dict(resource) if resource else default_resource()
        self._clock: Clock = clock or SystemClock()
        self._sampler: Sampler = sampler or PsutilSampler()
        self._controller = IntervalController(
            curve=config.curve,
            min_seconds=config.min_interval_seconds,
            max_seconds=config.max_interval_seconds,
            budget=config.overhead_budget,
            initial_seconds=config.interval_seconds,
            window=config.cost_window_cycles,
            adaptive=config.adaptive,
        )
        self._history = History(config.history_size)
        self._otel_names: dict[str, str] = {}
        self._template = BatchTemplate(
            self._resource, scope=SCOPE, scope_version=__version__, otel_name=self._name
        )
        self._fstypes_exclude = frozenset(config.fstypes_exclude)
        self._mount_excluded = _matcher(config.mountpoints_exclude)
        self._disk_excluded = _matcher(config.disk_devices_exclude)
        self._net_excluded = _matcher(config.network_interfaces_exclude)

        # state between cycles
        self._cycles = 0
        self._last_start: float | None = None
        self._last_cost: float | None = None
        self._prev_cpu: Sequence[CpuTimes] | None = None
        self._boot_ns: int | None = None
        self._proc_start_ns: int | None = None
        self._cpu_count = 0
        self._mounts: list[tuple[str, Attributes]] = []
        self._failed: set[str] = set()

        # attribute mappings, built once and reused every cycle
        self._cpu_time_attrs: list[tuple[Attributes, ...]] = []
        self._pct_attrs: dict[str, tuple[Attributes, ...]] = {}
        self._net_attrs: dict[str, tuple[Attributes, Attributes] | None] = {}
        self._disk_attrs: dict[str, tuple[Attributes, Attributes] | None] = {}
        self._memory_attrs = tuple({"type": t} for t in _MEMORY_TYPES)
        self._load_attrs = tuple({"period": p} for p in _LOAD_PERIODS)
        self._proc_cpu_attrs = ({"mode": "user"}, {"mode": "system"})

        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    # --- public surface -------------------------------------------------------------------

    @property
    def history(self) -> History:
        return self._history

    @property
    def interval(self) -> float:
        """Seconds until the next cycle."""
        return self._controller.interval

    @property
    def overhead(self) -> float:
        """Own CPU time as a ratio of one core over recent cycles."""
        return self._controller.overhead

    def collect(self) -> Reading:
        """One cycle: read the host, hand one batch downstream, adapt the interval."""
        clock = self._clock
        cpu_start = clock.thread_time()
        started = clock.monotonic()
        reading = self.read()
        batch = self.build(reading)
        try:
            self._consumer.consume(batch)
        except GatewayError as exc:
            # The next cycle carries fresh values; a refused batch is not worth a retry.
            _log.warning("system observer: pipeline refused a batch: %s", exc)
        wall = started - self._last_start if self._last_start is not None else self.interval
        self._last_start = started
        cost = clock.thread_time() - cpu_start
        self._controller.observe(
            signal=self._signal(reading), cycle_cpu_seconds=cost, wall_seconds=wall
        )
        self._last_cost = cost
        self._history.record(reading)
        self._history.interval_seconds = self._controller.interval
        self._history.cycle_cpu_seconds = cost
        self._history.overhead = self._controller.overhead
        return reading

    def read(self) -> Reading:
        """Read the host into a `Reading` (no batch, no adaptation). A part that fails is left
        out of this reading and logged once; the rest is kept."""
        now = self._clock.time_ns()
        if self._cycles % self._config.filesystem_refresh_cycles == 0:
            self._guard("mounts", self._refresh_mounts)
        self._cycles += 1
        if self._boot_ns is None:
            self._guard("boot_time", self._read_boot_time)
        out: list[Series] = []
        summary: dict[str, float] = {}
        self._guard("cpu", lambda: self._read_cpu(out, summary))
        self._guard("memory", lambda: self._read_memory(out, summary))
        self._guard("load", lambda: self._read_load(out, summary))
        if self._boot_ns is not None:
            out.append(Series(self._m("system.uptime"), [(_NO_ATTRS, (now - self._boot_ns) / _NS)]))
            self._guard("network", lambda: self._read_network(out))
            self._guard("disk", lambda: self._read_disk(out))
        self._guard("filesystem", lambda: self._read_filesystems(out))
        if self._config.process:
            self._guard("process", lambda: self._read_process(out))
        self._read_self(out)
        return Reading(
            now,
            tuple(out),
            summary.get("cpu"),
            summary.get("memory"),
            summary.get("load"),
        )

    def build(self, reading: Reading) -> MetricsBatch:
        """The OTLP batch for a reading."""
        return self._template.render(reading)

    async def start(self) -> None:
        if self._task is not None or not self._config.enabled:
            return
        # A baseline for CPU usage, so the first cycle (after a short delay) has a delta.
        self._guard("cpu", self._prime_cpu)
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="system-observer")

    async def shutdown(self) -> None:
        if self._task is None or self._stopping is None:
            return
        self._stopping.set()
        task, self._task = self._task, None
        await task

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._stopping is not None
        delay = min(_FIRST_CYCLE_DELAY_SECONDS, self._config.min_interval_seconds)
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            started = self._clock.monotonic()
            try:
                self.collect()
            except Exception:
                # Never let one bad cycle end the observer; the next one may well work.
                _log.exception("system observer: cycle failed")
            # Keep a steady cadence: the cycle's own duration comes off the wait.
            delay = max(0.0, self.interval - (self._clock.monotonic() - started))

    # --- helpers --------------------------------------------------------------------------

    def _m(self, name: str) -> Metric:
        return by_name(name)

    def _name(self, metric: Metric) -> str:
        name = self._otel_names.get(metric.name)
        if name is None:
            name = self._otel_names[metric.name] = metric.otel_name(self._namespace)
        return name

    def _guard(self, part: str, read: Callable[[], None]) -> None:
        try:
            read()
        except Exception as exc:
            # psutil raises OSError, its own errors, or ValueError on odd /proc lines: any of
            # them costs this part of this cycle only. Logged once per part, not per cycle.
            if part not in self._failed:
                self._failed.add(part)
                _log.warning("system observer: cannot read %s: %r", part, exc)
        else:
            self._failed.discard(part)

    def _signal(self, reading: Reading) -> float | None:
        if self._config.signal == "cpu_percent":
            return reading.cpu_usage_percent
        if reading.load_1m is None or self._cpu_count <= 0:
            return None
        return reading.load_1m / self._cpu_count

    def _read_boot_time(self) -> None:
        self._boot_ns = int(self._sampler.boot_time() * _NS)

    def _prime_cpu(self) -> None:
        self._prev_cpu = self._sampler.cpu_times()

    # --- cpu ------------------------------------------------------------------------------

    def _read_cpu(self, out: list[Series], summary: dict[str, float]) -> None:
        times = self._sampler.cpu_times()
        ncores = len(times)
        self._cpu_count = ncores or self._cpu_count
        if len(self._cpu_time_attrs) != ncores:
            self._cpu_time_attrs = [
                tuple({"core": str(core), "mode": mode} for mode in _CPU_MODES)
                for core in range(ncores)
            ]
        if self._boot_ns is not None:
            points: list[tuple[Attributes, float]] = []
            for attrs, t in zip(self._cpu_time_attrs, times, strict=True):
                points.extend(
                    zip(
                        attrs,
                        (t.user, t.nice, t.system, t.idle, t.iowait, t.irq, t.softirq, t.steal),
                        strict=True,
                    )
                )
            out.append(Series(self._m("system.cpu.time"), points, self._boot_ns))

        prev, self._prev_cpu = self._prev_cpu, times
        if prev is None or len(prev) != ncores:
            return
        pct: list[tuple[Attributes, float]] = []
        total = [0.0] * 6  # user, system, iowait, idle, steal, all
        per_cpu = self._config.per_cpu
        for core, (t, p) in enumerate(zip(times, prev, strict=True)):
            # Linux's per-core iowait can step backwards; a negative delta counts as none.
            user = max(t.user - p.user, 0.0) + max(t.nice - p.nice, 0.0)
            system = (
                max(t.system - p.system, 0.0)
                + max(t.irq - p.irq, 0.0)
                + max(t.softirq - p.softirq, 0.0)
            )
            iowait = max(t.iowait - p.iowait, 0.0)
            idle = max(t.idle - p.idle, 0.0)
            steal = max(t.steal - p.steal, 0.0)
            all_ = user + system + iowait + idle + steal
            total[0] += user
            total[1] += system
            total[2] += iowait
            total[3] += idle
            total[4] += steal
            total[5] += all_
            if per_cpu and all_ > 0:
                self._percent(pct, str(core), user, system, iowait, idle, all_)
        if total[5] > 0:
            usage = self._percent(pct, "total", total[0], total[1], total[2], total[3], total[5])
            summary["cpu"] = usage
        if pct:
            out.append(Series(self._m("system.cpu.usage_percent"), pct))

    def _percent(
        self,
        out: list[tuple[Attributes, float]],
        core: str,
        user: float,
        system: float,
        iowait: float,
        idle: float,
        all_: float,
    ) -> float:
        attrs = self._pct_attrs.get(core)
        if attrs is None:
            attrs = self._pct_attrs[core] = tuple({"core": core, "type": t} for t in _PCT_TYPES)
        scale = 100.0 / all_
        usage = 100.0 - (idle + iowait) * scale
        out.extend(
            zip(
                attrs,
                (user * scale, system * scale, iowait * scale, idle * scale, usage),
                strict=True,
            )
        )
        return usage

    # --- memory, load ---------------------------------------------------------------------

    def _read_memory(self, out: list[Series], summary: dict[str, float]) -> None:
        vm = self._sampler.virtual_memory()
        sw = self._sampler.swap_memory()
        values = (vm.total, vm.used, vm.available, vm.cached, vm.buffers, sw.total, sw.used)
        out.append(
            Series(
                self._m("system.memory.usage"), list(zip(self._memory_attrs, values, strict=True))
            )
        )
        if vm.total > 0:
            util = (vm.total - vm.available) / vm.total
            out.append(Series(self._m("system.memory.utilization"), [(_NO_ATTRS, util)]))
            summary["memory"] = util

    def _read_load(self, out: list[Series], summary: dict[str, float]) -> None:
        load = self._sampler.load_average()
        out.append(
            Series(self._m("system.load_average"), list(zip(self._load_attrs, load, strict=True)))
        )
        summary["load"] = load[0]

    # --- network, disk --------------------------------------------------------------------

    def _read_network(self, out: list[Series]) -> None:
        counters = self._sampler.net_io_counters()
        series: list[list[tuple[Attributes, float]]] = [[] for _ in _NET_FIELDS]
        for name, c in counters.items():
            attrs = _pair(self._net_attrs, name, self._net_excluded, "interface", _NET_DIRECTIONS)
            if attrs is None:
                continue
            rx, tx = attrs
            io, packets, errors, dropped = series
            io.append((rx, c.bytes_recv))
            io.append((tx, c.bytes_sent))
            packets.append((rx, c.packets_recv))
            packets.append((tx, c.packets_sent))
            errors.append((rx, c.errin))
            errors.append((tx, c.errout))
            dropped.append((rx, c.dropin))
            dropped.append((tx, c.dropout))
        assert self._boot_ns is not None
        for (metric, _, _), points in zip(_NET_FIELDS, series, strict=True):
            if points:
                out.append(Series(self._m(metric), points, self._boot_ns))

    def _read_disk(self, out: list[Series]) -> None:
        counters = self._sampler.disk_io_counters()
        io: list[tuple[Attributes, float]] = []
        ops: list[tuple[Attributes, float]] = []
        for name, c in counters.items():
            attrs = _pair(self._disk_attrs, name, self._disk_excluded, "device", _DISK_DIRECTIONS)
            if attrs is None:
                continue
            read, write = attrs
            io.append((read, c.read_bytes))
            io.append((write, c.write_bytes))
            ops.append((read, c.read_count))
            ops.append((write, c.write_count))
        assert self._boot_ns is not None
        if io:
            out.append(Series(self._m("system.disk.io"), io, self._boot_ns))
            out.append(Series(self._m("system.disk.operations"), ops, self._boot_ns))

    # --- filesystems ----------------------------------------------------------------------

    def _refresh_mounts(self) -> None:
        mounts: dict[str, Attributes] = {}
        for part in self._sampler.disk_partitions():
            if part.fstype in self._fstypes_exclude or self._mount_excluded(part.mountpoint):
                continue
            # A mountpoint mounted over keeps only its last (visible) mount.
            mounts[part.mountpoint] = {
                "device": part.device,
                "mountpoint": part.mountpoint,
                "fstype": part.fstype,
            }
        self._mounts = list(mounts.items())

    def _read_filesystems(self, out: list[Series]) -> None:
        size: list[tuple[Attributes, float]] = []
        free: list[tuple[Attributes, float]] = []
        util: list[tuple[Attributes, float]] = []
        usage = self._sampler.disk_usage
        for mountpoint, attrs in self._mounts:
            try:
                u = usage(mountpoint)
            except OSError:
                continue  # unmounted since the last refresh, or not ours to stat
            if u.total <= 0:
                continue  # a pseudo filesystem that slipped through the type filter
            size.append((attrs, u.total))
            free.append((attrs, u.free))
            util.append((attrs, 1.0 - u.free / u.total))
        if size:
            out.append(Series(self._m("system.filesystem.size"), size))
            out.append(Series(self._m("system.filesystem.free"), free))
            out.append(Series(self._m("system.filesystem.utilization"), util))

    # --- own process ----------------------------------------------------------------------

    def _read_process(self, out: list[Series]) -> None:
        if self._proc_start_ns is None:
            self._proc_start_ns = int(self._sampler.process_start_time() * _NS)
        p = self._sampler.process()
        user, system = self._proc_cpu_attrs
        out.append(
            Series(
                self._m("process.cpu.time"),
                [(user, p.cpu_user), (system, p.cpu_system)],
                self._proc_start_ns,
            )
        )
        out.append(Series(self._m("process.memory.rss"), [(_NO_ATTRS, p.rss)]))
        out.append(Series(self._m("process.open_fds"), [(_NO_ATTRS, p.open_fds)]))
        out.append(Series(self._m("process.threads"), [(_NO_ATTRS, p.threads)]))

    def _read_self(self, out: list[Series]) -> None:
        out.append(Series(self._m("gateway.observer.interval"), [(_NO_ATTRS, self.interval)]))
        if self._last_cost is not None:
            # The cost of the previous cycle: this one is not finished yet.
            out.append(
                Series(self._m("gateway.observer.cycle.cpu"), [(_NO_ATTRS, self._last_cost)])
            )
            out.append(Series(self._m("gateway.observer.overhead"), [(_NO_ATTRS, self.overhead)]))
