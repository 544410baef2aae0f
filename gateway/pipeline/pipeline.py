"""`Pipeline`: processors in order, then the exporters' fan-out. Wired in `gateway.app`: the
views, then the series store (the last processor: its refusals and overflow decisions hold for
every exporter), then the forward path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.pipeline.batch import MetricsBatch
from gateway.pipeline.consumer import Consumer, Fanout

__all__ = ["Pipeline", "Processor"]


class Processor(Protocol):
    """Changes a batch in place (renames, drops, limits); refuses points with `batch.reject()`."""

    def process(self, batch: MetricsBatch) -> None: ...


class Pipeline:
    """The one entry point every producer hands batches to."""

    def __init__(self, processors: Sequence[Processor], exporters: Sequence[Consumer]) -> None:
        self._processors = tuple(processors)
        self._fanout = Fanout(exporters)

    def consume(self, batch: MetricsBatch) -> None:
        for processor in self._processors:
            processor.process(batch)
        self._fanout.consume(batch)
