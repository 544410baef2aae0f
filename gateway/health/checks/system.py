"""Host thresholds: CPU, memory and disk use against warn / fail levels from config.

psutil is passed in (`SystemSampler`), as prometheus_client's process collector takes `proc=`,
so tests feed exact numbers. `cpu_percent(interval=None)` compares against the previous call and
never blocks the event loop; it averages over the time since the previous call, so the check
waits (asynchronously) until at least `min_cpu_window_seconds` have passed since the last sample:
a first run right after startup would otherwise report the startup burst as 100 % CPU.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import psutil

from gateway.health.checks._configured import configured_check
from gateway.health.config import SystemCheckConfig
from gateway.health.model import Check, CheckOutcome, Observation, Status

__all__ = ["COMPONENT", "PsutilSampler", "SystemCheck", "SystemSampler", "system_check"]

COMPONENT = "system"


class SystemSampler(Protocol):
    def cpu_percent(self) -> float: ...

    def memory_percent(self) -> float: ...

    def disk_percent(self, path: str) -> float: ...


class PsutilSampler:
    """The real host, through psutil."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # prime: the first call has nothing to compare to

    def cpu_percent(self) -> float:
        return float(psutil.cpu_percent(interval=None))

    def memory_percent(self) -> float:
        return float(psutil.virtual_memory().percent)

    def disk_percent(self, path: str) -> float:
        return float(psutil.disk_usage(path).percent)


def _level(name: str, value: float, warn: float, fail: float) -> Observation:
    if value >= fail:
        status, output = Status.FAIL, f"{name} {value:.1f}% >= {fail:g}%"
    elif value >= warn:
        status, output = Status.WARN, f"{name} {value:.1f}% >= {warn:g}%"
    else:
        status, output = Status.PASS, ""
    return Observation(f"{name}Utilization", round(value, 2), "percent", status, output)


class SystemCheck:
    def __init__(
        self,
        config: SystemCheckConfig,
        sampler: SystemSampler | None = None,
        *,
        min_cpu_window_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._sampler = sampler or PsutilSampler()  # primes the CPU sample
        self._min_window = min_cpu_window_seconds
        self._clock = clock
        self._last_cpu_sample = clock()

    async def __call__(self) -> CheckOutcome:
        cfg, s = self._config, self._sampler
        wait = self._last_cpu_sample + self._min_window - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        cpu = s.cpu_percent()
        self._last_cpu_sample = self._clock()
        return CheckOutcome.of(
            _level("cpu", cpu, cfg.cpu_warn, cfg.cpu_fail),
            _level("memory", s.memory_percent(), cfg.memory_warn, cfg.memory_fail),
            _level("disk", s.disk_percent(cfg.disk_path), cfg.disk_warn, cfg.disk_fail),
        )


def system_check(config: SystemCheckConfig, *, sampler: SystemSampler | None = None) -> Check:
    return configured_check(
        COMPONENT, SystemCheck(config, sampler), config, component_type="system"
    )
