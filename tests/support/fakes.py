"""In-process stand-ins for the parts tests should not wait on: a clock that moves only when the
test says so, and a sink that keeps every batch a pipeline stage sends on."""

from __future__ import annotations

import asyncio

from gateway.pipeline.batch import MetricsBatch

__all__ = ["FakeClock", "ListConsumer"]


class FakeClock:
    """A monotonic clock for code that takes `clock: Callable[[], float]`; `sleep` is its
    matching async sleep, which moves the clock, records the wait and returns at once."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still a suspension point: other tasks run, as with a real one


class ListConsumer:
    """A pipeline `Consumer` that keeps every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[MetricsBatch] = []

    def consume(self, batch: MetricsBatch) -> None:
        self.batches.append(batch)
