"""`MemoryLimiter`: backpressure on the process's resident memory.

A background task samples RSS every `check_interval_seconds` (one `psutil` call, not one per
request); the receivers call `check()` before they read a request body, which only reads a
flag. Above the soft limit every export is refused with a `RetryableError` (HTTP 503 with
`Retry-After`, gRPC UNAVAILABLE with RetryInfo) until RSS falls below it again; above the hard
limit the limiter also runs a full garbage collection, at most every `_GC_PAUSE_SECONDS` since
on a large heap one collection takes a noticeable time.

Refusing cannot make memory shrink by itself (series expire after
`prometheus.metric_expiration_seconds`), but it keeps the gateway from growing past the limit
and crashing, and tells well-behaved clients to hold their data and retry.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

import psutil

from gateway.config import MemoryLimiterConfig
from gateway.errors import RetryableError
from gateway.pipeline.lifecycle import cancel

__all__ = ["MemoryLimiter"]

log = logging.getLogger(__name__)

_GC_PAUSE_SECONDS = 5.0


class MemoryLimiter:
    """A `Component` with an admission check for the receivers."""

    def __init__(
        self,
        config: MemoryLimiterConfig,
        *,
        rss: Callable[[], int] | None = None,
        collect: Callable[[], object] = gc.collect,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._rss: Callable[[], int] = rss if rss is not None else self._process_rss
        self._process = psutil.Process()
        self._collect = collect
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._last_gc = float("-inf")
        #: RSS at the last sample, bytes
        self.last_rss = 0
        #: whether ingest is refused now
        self.refusing = False
        #: times the soft limit was crossed upwards, and exports refused since start
        self.episodes = 0
        self.refused = 0
        #: samples that failed (EMFILE while reading /proc, ...), and the last failure while
        #: the limiter cannot read RSS (None once a sample succeeds again): its health fails
        self.errors = 0
        self.error: str | None = None

    def _process_rss(self) -> int:
        return int(self._process.memory_info().rss)

    @property
    def enabled(self) -> bool:
        return self._config.soft_limit_bytes > 0

    def check(self) -> None:
        """Raise `RetryableError` while above the soft limit."""
        if self.refusing:
            self.refused += 1
            raise RetryableError(
                f"memory limit reached ({self.last_rss >> 20} MiB resident, soft limit "
                f"{self._config.soft_limit_bytes >> 20} MiB); retry later",
                retry_after_seconds=self._config.retry_after_seconds,
            )

    def sample(self) -> None:
        """Read RSS once and update the state; the background task calls this."""
        cfg = self._config
        rss = self._rss()
        self.last_rss = rss
        over = rss >= cfg.soft_limit_bytes
        if over and not self.refusing:
            self.episodes += 1
            log.warning(
                "memory limiter: %d MiB resident >= soft limit %d MiB: refusing ingest",
                rss >> 20,
                cfg.soft_limit_bytes >> 20,
            )
        elif self.refusing and not over:
            log.warning("memory limiter: %d MiB resident: accepting ingest again", rss >> 20)
        self.refusing = over
        if rss >= cfg.hard_limit_bytes:
            now = self._clock()
            if now - self._last_gc >= _GC_PAUSE_SECONDS:
                self._last_gc = now
                self._collect()

    async def _run(self) -> None:
        """Sample forever. Any error is counted and the loop goes on: a short shortage of file
        descriptors (EMFILE while opening /proc) once killed this loop for good, leaving the
        last reading frozen and the limit unenforced while health said pass."""
        while True:
            try:
                self.sample()
            except Exception as exc:
                self.errors += 1
                if self.error is None:
                    log.error("memory limiter: cannot read RSS (limit not enforced): %r", exc)
                self.error = f"cannot read RSS: {exc!r}"
            else:
                if self.error is not None:
                    log.warning("memory limiter: reading RSS again after %d errors", self.errors)
                self.error = None
            await asyncio.sleep(self._config.check_interval_seconds)

    async def start(self) -> None:
        if self._task is None and self.enabled:
            self.sample()
            self._task = asyncio.create_task(self._run(), name="memory-limiter")

    async def shutdown(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
