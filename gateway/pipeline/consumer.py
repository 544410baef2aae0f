"""The two contracts every component follows: `Component` and `Consumer`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from gateway.pipeline.batch import MetricsBatch

__all__ = ["Component", "Consumer", "Fanout"]


@runtime_checkable
class Component(Protocol):
    """Lifecycle: `start()` then `shutdown()`. Shutdown is safe twice and without start, and
    flushes whatever the component still holds downstream."""

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


@runtime_checkable
class Consumer(Protocol):
    """Takes a batch. Raises `PermanentError` or `RetryableError` for a batch it refuses whole;
    refuses single points with `batch.reject()`.

    `consume` is synchronous on purpose: every consumer's work is CPU-bound or an enqueue, and
    a coroutine per batch per stage would cost more than the work on the ingest path.
    """

    def consume(self, batch: MetricsBatch) -> None: ...


class Fanout:
    """Hands one batch to several consumers in order. No consumer may depend on another
    having run: a stage whose decisions others read (the series store: refusals, overflow) is
    a processor (`Pipeline`), which runs before every exporter."""

    def __init__(self, consumers: Sequence[Consumer]) -> None:
        self._consumers = tuple(consumers)

    def consume(self, batch: MetricsBatch) -> None:
        for consumer in self._consumers:
            consumer.consume(batch)
