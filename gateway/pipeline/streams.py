"""What a stage may read and write of the series store's state, as Protocols.

The store (`gateway.exporters.prometheus.store`) owns streams and series; the cardinality
limiter and the overflow folder (`gateway.processors.cardinality`) work on them but may not
import the exporter (`make lint`: processors never import exporters). These Protocols are the
boundary: the store's classes satisfy them structurally, mypy checks every call across it, and
neither side names the other's classes.

Read-only members are properties, so that the store's concrete attribute types (a
`dict[str, _Stream]`, a `dict[str, NumberSeries]`) fit the wider types here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

__all__ = [
    "Attributed",
    "HistogramState",
    "NumberState",
    "SeriesFamily",
    "SeriesResource",
    "SeriesStream",
]


class NumberState(Protocol):
    """A number series (sum or gauge): the overflow series a member adds its increases to."""

    value: float
    #: start of the series' current run, Unix ns (delta streams)
    start: int
    #: time of the latest point, Unix ns
    time: int
    #: when the store last wrote it (its clock): staleness
    updated: float


class HistogramState(Protocol):
    """An explicit-bucket histogram series."""

    bounds: list[float]
    counts: list[int]
    count: int
    sum: float
    start: int
    time: int
    updated: float


class SeriesFamily(Protocol):
    """A Prometheus metric family."""

    @property
    def name(self) -> str:
        """The family name as exposed (`..._total` for counters)."""
        ...

    @property
    def streams(self) -> Mapping[str, object]:
        """Its live streams by slot (`SeriesStream.slot`)."""
        ...


class SeriesResource(Protocol):
    @property
    def labels(self) -> str:
        """`job="..",instance=".."` and the copied resource attributes, rendered."""
        ...


class SeriesStream(Protocol):
    """One metric of one resource and scope: the unit cardinality limits apply to."""

    @property
    def family(self) -> SeriesFamily: ...

    @property
    def slot(self) -> str:
        """Its key in `family.streams`."""
        ...

    @property
    def resource(self) -> SeriesResource: ...

    @property
    def by_labels(self) -> Mapping[str, object]:
        """Its series by rendered point labels."""
        ...

    @property
    def cumulative(self) -> bool: ...

    @property
    def monotonic(self) -> bool: ...


class Attributed(Protocol):
    """Any OTLP data point, as far as its attributes go."""

    @property
    def attributes(self) -> RepeatedCompositeFieldContainer[KeyValue]: ...
