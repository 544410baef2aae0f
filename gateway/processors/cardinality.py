"""`CardinalityLimiter`: series limits per metric stream and per service, an overflow series,
label values cut to a length limit.

Where it runs. Admission is decided inside the series store (`SeriesStore._series_for`), the
one place that already knows, on the first sight of a series only, whether it is new. A
processor of its own would have to compute every point's identity a second time (serialise the
point, cut the fixed fields, look it up): about 0.7 us a point against the store's ~1.8 us, far
beyond the 30 % the views and limits may cost together. The OTLP forwarder gets the same
decisions through `OverflowFolder`, an exporter-side wrapper that runs after the store (the
pipeline's last processor) and rewrites only the streams that overflowed, so a Collector's
Prometheus sees what the gateway's own /metrics shows (the Python SDK has no cardinality limit
of its own; the Java, .NET and Go SDKs cap each instrument at 2,000 attribute sets with the
same overflow attribute).

Over a limit, a new series goes into the stream's single overflow series, labelled
`otel_metric_overflow="true"` (the SDKs' `otel.metric.overflow` attribute), and nothing is lost
or counted twice. The store keeps writing `series.value = v` as for any series; what it holds
for an overflowed series is an `_OverflowMember`, whose setter adds the series' increase to the
overflow series:

* monotonic sums: the increase since the member was last seen (`v - last`), or `v` after a
  reset (the value went down, or a delta stream restarted). The first sight adds the whole `v`:
  the series counted that much since it started.
* delta input: the store accumulates deltas into the member, so the increase is the delta.
* gauges and up-down counters: `v - last`, so the overflow series is the sum of the members'
  current values.

Worked example, limit 1, cumulative counter, series a then b and c:

    point         series held                              overflow value
    a=5           {a}=5                                    -
    b=3           {a}=5, overflow=3 (b last 3)             3
    c=2           {a}=5, overflow=5 (c last 2)             5
    b=10          {a}=5, overflow=12 (b: +7)               12
    b=4 (reset)   {a}=5, overflow=16 (b: +4)               16

The trade-off: exactness needs each overflowed series' last value, so the limiter remembers at
most `max_tracked_overflow_series` of them per stream; points of further overflowed series are
dropped and counted (`gateway.points.dropped{reason="cardinality_limit"}`), never guessed.
A member that goes stale (no point for `metric_expiration_seconds`) is forgotten with the rest;
if it comes back it counts as new.

Histograms over the limit go to the overflow histogram the same way, bucket by bucket, when
their bounds are the overflow histogram's (otherwise dropped and counted as
`overflow_bounds_mismatch`). Exponential histograms and summaries over the limit are dropped
and counted (`cardinality_limit`): summaries cannot be added up at all, and exponential buckets
would need rescaling that no runaway label is worth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from pydantic import BaseModel, ConfigDict, Field

from gateway.pipeline.batch import MetricsBatch
from gateway.pipeline.consumer import Consumer
from gateway.pipeline.identity import resource_identity, scope_identity
from gateway.pipeline.streams import (
    Attributed,
    HistogramState,
    NumberState,
    SeriesStream,
)

__all__ = [
    "OVERFLOW_ATTRIBUTE",
    "CardinalityConfig",
    "CardinalityLimiter",
    "HistogramShape",
    "LimiterCounters",
    "NumberShape",
    "OverflowFolder",
    "SeriesIndex",
    "Shape",
]

#: the attribute (and, sanitised, the label) of the overflow series, as the OpenTelemetry SDKs
#: name it
OVERFLOW_ATTRIBUTE = "otel.metric.overflow"
#: what a cut label value ends with
TRUNCATION_MARKER = "..."


class CardinalityConfig(BaseModel):
    """Limits on series (the `cardinality:` YAML section)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: most series one metric stream (metric + resource + scope) holds; more go to its
    #: overflow series
    max_series_per_stream: int = Field(2000, gt=0)
    #: per-metric limits that replace max_series_per_stream, by Prometheus family name
    #: (`coderunner_api_requests_total`)
    per_metric: dict[str, int] = Field(default_factory=dict)
    #: most series of one service (job: service.namespace/service.name) over all its
    #: streams; 0: no limit
    max_series_per_service: int = Field(100_000, ge=0)
    #: label values longer than this many characters are cut and end in "..."; 0: no limit
    max_label_value_length: int = Field(512, ge=0)
    #: overflowed series whose last value is remembered, per stream (memory: ~200 bytes each)
    max_tracked_overflow_series: int = Field(10_000, ge=0)
    #: most series the gateway holds over all services together: past it, a new series goes
    #: into its stream's overflow series if the stream has one, else its points are refused
    #: (`gateway.points.capped`), and a new service or metric gets no series at all; 0: no cap
    max_series_total: int = Field(1_000_000, ge=0)


class LimiterCounters:
    """Points folded into overflow series, and series whose label values were cut, by metric
    (Prometheus family name)."""

    def __init__(self) -> None:
        self.overflowed: dict[str, int] = {}
        self.truncated: dict[str, int] = {}
        #: overflowed histogram points whose bounds differ from the overflow series', by reason
        self.dropped: dict[str, int] = {}


class _OverflowMember:
    """An overflowed series: looks like the store's number series, adds its increases to the
    overflow series instead of holding a value of its own."""

    __slots__ = (
        "_counters",
        "_last",
        "_metric",
        "_monotonic",
        "_reset",
        "_start",
        "_target",
        "_updated",
        "time",
    )

    def __init__(
        self, target: NumberState, monotonic: bool, metric: str, counters: LimiterCounters
    ) -> None:
        self._target = target
        self._monotonic = monotonic
        self._metric = metric
        self._counters = counters
        self._last: float = 0.0
        self._start = 0
        self._reset = False
        self.time = 0
        self._updated = 0.0

    @property
    def value(self) -> float:
        return self._last

    @value.setter
    def value(self, v: float) -> None:
        last = self._last
        # A monotonic series that went down (or restarted) counts from zero again.
        increase = v if self._monotonic and (v < last or self._reset) else v - last
        self._reset = False
        self._last = v
        target = self._target
        target.value += increase
        overflowed = self._counters.overflowed
        overflowed[self._metric] = overflowed.get(self._metric, 0) + 1

    def observe(self, v: float, t: int, now: float) -> bool:
        """A point of a cumulative stream, all at once: what setting `value`, `time` and
        `updated` in turn does, in one call (the store's hot loop under a cardinality attack),
        except counting the point, which the store does per batch (`count_overflowed`).
        False, and nothing changed, for a point older than the last."""
        if t < self.time:
            return False
        last = self._last
        increase = v if self._monotonic and (v < last or self._reset) else v - last
        self._reset = False
        self._last = v
        self.time = t
        self._updated = now
        target = self._target
        target.value += increase
        if now > target.updated:
            target.updated = now
        if t > target.time:
            target.time = t
        return True

    @property
    def start(self) -> int:
        return self._start

    @start.setter
    def start(self, s: int) -> None:
        # A delta stream that restarts (a gap before this point) gets a new start time.
        if self._start and s != self._start:
            self._reset = True
        self._start = s

    @property
    def updated(self) -> float:
        return self._updated

    @updated.setter
    def updated(self, now: float) -> None:
        # The store sets `time`, then `updated`: the overflow series keeps the latest of its
        # members' times, which the forward path's overflow point ends at.
        self._updated = now
        target = self._target
        if now > target.updated:
            target.updated = now
        if self.time > target.time:
            target.time = self.time


class _HistogramMember:
    """An overflowed histogram series: the store writes bounds, counts, count, then sum; the
    sum's setter adds the increase since the last point (bucket by bucket) to the overflow
    histogram. A count that went down, or a new start time, is a reset: the whole point is
    the increase. Points whose bounds differ from the overflow histogram's cannot be added
    and are counted as dropped."""

    __slots__ = (
        "_counters",
        "_metric",
        "_prev",
        "_reset",
        "_start",
        "_sum",
        "_target",
        "_updated",
        "bounds",
        "count",
        "counts",
        "time",
    )

    def __init__(self, target: HistogramState, metric: str, counters: LimiterCounters) -> None:
        self._target = target
        self._metric = metric
        self._counters = counters
        self._prev: tuple[list[int], int, float] | None = None
        self._reset = False
        self._start = 0
        self._sum = 0.0
        self._updated = 0.0
        self.time = 0
        self.bounds: list[float] = []
        self.counts: list[int] = []
        self.count = 0

    @property
    def sum(self) -> float:
        return self._sum

    @sum.setter
    def sum(self, total: float) -> None:
        self._sum = total
        counts, count, prev = self.counts, self.count, self._prev
        if prev is None or self._reset or count < prev[1] or len(prev[0]) != len(counts):
            inc_counts, inc_count, inc_sum = list(counts), count, total
        else:
            inc_counts = [a - b for a, b in zip(counts, prev[0], strict=True)]
            inc_count, inc_sum = count - prev[1], total - prev[2]
        self._reset = False
        self._prev = (list(counts), count, total)
        target = self._target
        metric = self._metric
        if target.count == 0 and not target.counts:
            target.bounds, target.counts = list(self.bounds), inc_counts
        elif target.bounds == self.bounds:
            target.counts = [a + b for a, b in zip(target.counts, inc_counts, strict=True)]
        else:
            dropped = self._counters.dropped
            dropped["overflow_bounds_mismatch"] = dropped.get("overflow_bounds_mismatch", 0) + 1
            return
        target.count += inc_count
        target.sum += inc_sum
        overflowed = self._counters.overflowed
        overflowed[metric] = overflowed.get(metric, 0) + 1

    start = _OverflowMember.start
    updated = _OverflowMember.updated


@dataclass(frozen=True, slots=True)
class NumberShape:
    """What the store's series of a number stream are: made by `factory` from their labels."""

    factory: Callable[[str], NumberState]


@dataclass(frozen=True, slots=True)
class HistogramShape:
    """What the store's series of an explicit-bucket histogram stream are."""

    factory: Callable[[str], HistogramState]


#: the series an overflow series can add up (exponential histograms and summaries: none)
Shape = NumberShape | HistogramShape


_S = TypeVar("_S")
_Member = TypeVar("_Member")


class _OverflowState(Generic[_S, _Member]):
    """The overflow state of a stream: its overflow series, the members adding to it by the
    labels they would have had, and where the forward path's delta points have got to."""

    __slots__ = ("forwarded_end", "forwarded_value", "members", "series")

    def __init__(self, series: _S) -> None:
        self.series = series
        self.members: dict[str, _Member] = {}
        #: end time of the last delta overflow point forwarded: the next one starts there, so
        #: that the upstream sees one contiguous delta stream
        self.forwarded_end = 0
        #: the overflow series' value when the last delta point was forwarded: the next point
        #: is the increase since (what the members added, out-of-order points not included)
        self.forwarded_value = 0.0


class _NumberOverflow(_OverflowState[NumberState, _OverflowMember]):
    __slots__ = ()

    def new_member(
        self, labels: str, monotonic: bool, metric: str, counters: LimiterCounters
    ) -> _OverflowMember:
        member = self.members[labels] = _OverflowMember(self.series, monotonic, metric, counters)
        return member


class _HistogramOverflow(_OverflowState[HistogramState, _HistogramMember]):
    __slots__ = ()

    def new_member(
        self, labels: str, monotonic: bool, metric: str, counters: LimiterCounters
    ) -> _HistogramMember:
        # Histograms have no monotonic flag of their own: a count that goes down is a reset.
        member = self.members[labels] = _HistogramMember(self.series, metric, counters)
        return member


_Overflow = _NumberOverflow | _HistogramOverflow


def _overflow_point() -> metrics_pb2.NumberDataPoint:
    p = metrics_pb2.NumberDataPoint()
    kv: KeyValue = p.attributes.add()
    kv.key = OVERFLOW_ATTRIBUTE
    kv.value.bool_value = True
    return p


#: a point whose only attribute is the overflow one: the store renders its labels
OVERFLOW_POINT = _overflow_point()
#: the attribute the forward path's overflow points carry (`append` copies it)
_OVERFLOW_KV = OVERFLOW_POINT.attributes[0]


def _service_of(stream: SeriesStream) -> str:
    """The job label of a stream's resource (`job="ns/name"` leads the resource labels)."""
    labels = stream.resource.labels
    if not labels.startswith("job="):
        return ""
    end = labels.find('",instance="')
    return labels if end < 0 else labels[:end]


def _live(stream: SeriesStream) -> bool:
    """Whether the store still holds `stream` (one lookup: a family indexes its streams by
    prefix; a scan of the family made the once-a-second recount quadratic)."""
    return stream.family.streams.get(stream.slot) is stream


class CardinalityLimiter:
    """Decides, on the first sight of a series, whether a stream may hold it. Used by the
    series store; holds the overflow state of each stream."""

    def __init__(
        self, config: CardinalityConfig | None = None, *, clock: Callable[[], float]
    ) -> None:
        self.config = config or CardinalityConfig()
        self.counters = LimiterCounters()
        self._clock = clock
        self._overflows: dict[SeriesStream, _Overflow] = {}
        #: job -> streams seen, and their series count, recounted at most once a second
        self._service_streams: dict[str, set[SeriesStream]] = {}
        self._service_series: dict[str, int] = {}
        self._recounted = 0.0

    # ------------------------------------------------------------------ limits

    def limit(self, stream: SeriesStream) -> int:
        return self.config.per_metric.get(stream.family.name, self.config.max_series_per_stream)

    def count_overflowed(self, stream: SeriesStream, n: int) -> None:
        """`n` more points of `stream` went into its overflow series."""
        overflowed = self.counters.overflowed
        metric = stream.family.name
        overflowed[metric] = overflowed.get(metric, 0) + n

    def max_keys(self, stream: SeriesStream) -> int:
        """Identity keys the store may index for a stream: two per series (the same attributes
        in another order are another key) and one per tracked overflowed series, so that a
        point of an overflowed series is found by one lookup, as any other point is. Without
        the latter, 80 % of a stream over the limit cut ingest to 0.18x (bench/ingest.py)."""
        return 2 * self.limit(stream) + self.config.max_tracked_overflow_series

    def over_limit(self, stream: SeriesStream, held: int) -> bool:
        """Whether a stream holding `held` series may not take one more."""
        # First, and with or without a per-service limit: the recount also drops the overflow
        # state of streams the store dropped, which would otherwise be kept for ever.
        self._maybe_recount()
        if held >= self.limit(stream):
            return True
        cap = self.config.max_series_per_service
        if not cap:
            return False
        service = _service_of(stream)
        return self._service_series.get(service, 0) >= cap

    def admitted(self, stream: SeriesStream) -> None:
        """A new series was created in `stream`."""
        if not self.config.max_series_per_service:
            return
        service = _service_of(stream)
        streams = self._service_streams.setdefault(service, set())
        streams.add(stream)
        self._service_series[service] = self._service_series.get(service, 0) + 1

    def _maybe_recount(self) -> None:
        """Series expire and streams go away inside the store; the per-service counts catch
        up here, at most once a second."""
        now = self._clock()
        if now - self._recounted < 1.0:
            return
        self._recounted = now
        for service, streams in list(self._service_streams.items()):
            live = {s for s in streams if _live(s)}
            if not live:
                del self._service_streams[service]
                self._service_series.pop(service, None)
                continue
            self._service_streams[service] = live
            self._service_series[service] = sum(len(s.by_labels) for s in live)
        for stream in [s for s in self._overflows if not _live(s)]:
            del self._overflows[stream]

    # ------------------------------------------------------------------ overflow

    def overflow(
        self,
        stream: SeriesStream,
        labels: str,
        overflow_labels: str,
        *,
        shape: Shape | None,
        may_create: bool = True,
    ) -> tuple[_OverflowMember | _HistogramMember | None, NumberState | HistogramState | None]:
        """The member standing for the over-limit series `labels`, and the overflow series
        (made by `shape.factory`) if the store must add it now; (None, None) when the point
        cannot be taken (counted), or when the stream has no overflow series and `may_create`
        is False (at the gateway-wide series cap). `shape`: what the store's series of the
        stream are, a number or explicit-bucket histogram; None for what cannot be added up
        (exponential histograms, summaries)."""
        if shape is None:
            return None, None  # the store counts it as dropped (cardinality_limit)
        state = self._overflows.get(stream)
        new_series: NumberState | HistogramState | None = None
        if state is None or stream.by_labels.get(overflow_labels) is not state.series:
            if not may_create:
                return None, None
            # First overflow of the stream, or its overflow series went stale and was dropped.
            state = self._overflows[stream] = (
                _NumberOverflow(shape.factory(overflow_labels))
                if isinstance(shape, NumberShape)
                else _HistogramOverflow(shape.factory(overflow_labels))
            )
            new_series = state.series
        member = state.members.get(labels)
        if member is None:
            if len(state.members) >= self.config.max_tracked_overflow_series:
                return None, new_series  # dropped and counted by the store
            member = state.new_member(labels, stream.monotonic, stream.family.name, self.counters)
        return member, new_series

    # ------------------------------------------------------------------ label values

    def shorten(self, stream: SeriesStream, point: Attributed) -> Attributed:
        """`point`, or a copy of its attributes with string values cut to the length limit
        (counted by metric)."""
        cut = self.cut(point)
        if cut is not point:
            metric = stream.family.name
            self.counters.truncated[metric] = self.counters.truncated.get(metric, 0) + 1
        return cut

    def cut(self, point: Attributed) -> Attributed:
        """`point`, or a copy of its attributes with string values cut to the length limit."""
        limit = self.config.max_label_value_length
        if not limit:
            return point
        long = False
        for kv in point.attributes:
            if len(kv.value.string_value) > limit:
                long = True
                break
        if not long:
            return point
        copy = metrics_pb2.NumberDataPoint()
        copy.attributes.extend(point.attributes)
        keep = max(limit - len(TRUNCATION_MARKER), 0)
        for kv in copy.attributes:
            if len(kv.value.string_value) > limit:
                kv.value.string_value = kv.value.string_value[:keep] + TRUNCATION_MARKER
        return copy

    def overflow_state(self, stream: SeriesStream) -> _Overflow | None:
        """The overflow state of a stream that has overflowed, else None."""
        return self._overflows.get(stream)

    @property
    def overflowing(self) -> bool:
        """Whether any stream has overflowed (the folder's fast path)."""
        return bool(self._overflows)


class SeriesIndex(Protocol):
    """What the overflow folder reads of the series store (`SeriesStore` is one): the limiter
    that holds the overflow state, and the stream a metric of a request fed."""

    limiter: CardinalityLimiter

    def stream_of(
        self, resource_key: bytes, scope_key: bytes, metric: metrics_pb2.Metric, kind: str
    ) -> SeriesStream | None: ...


class OverflowFolder:
    """Folds, in a batch on its way to the OTLP forwarder, the points the series store put into
    overflow series, so that what a Collector's Prometheus exporter serves matches the
    gateway's /metrics: at most limit + 1 series per stream, nothing lost or counted twice.

    A `Consumer` wrapped around the forwarder, in the exporters' fan-out after the store (the
    pipeline's last processor): it reads the store's decisions for this very batch
    (`MetricsBatch.overflowed`: which points went to an overflow series, which were dropped),
    so it costs nothing until some stream overflows and then no identity work per point
    (recomputing every point's key here once doubled a point's cost under a cardinality
    attack).
    The folded point carries `otel.metric.overflow=true`: for cumulative sums and gauges the
    store's overflow value, for delta sums the sum of this batch's folded points, for
    cumulative histograms the overflow histogram, for delta histograms the folded points'
    buckets added up (those with the first one's bounds). Points the store dropped at a limit
    are dropped here too.
    """

    def __init__(self, store: SeriesIndex, downstream: Consumer) -> None:
        self._store = store
        self._downstream = downstream

    def consume(self, batch: MetricsBatch) -> None:
        if batch.overflowed:
            self._fold(batch)
        self._downstream.consume(batch)

    def _fold(self, batch: MetricsBatch) -> None:
        store = self._store
        resources = batch.request.resource_metrics
        for (ri, si, mi), decision in batch.overflowed.items():
            rm = resources[ri]
            sm = rm.scope_metrics[si]
            m = sm.metrics[mi]
            kind = m.WhichOneof("data")
            if kind is None:
                continue
            # Any kind may have points dropped; only sums, gauges and histograms fold.
            dps: RepeatedCompositeFieldContainer[Message] = getattr(m, kind).data_points
            point: Message | None = None
            if decision.folded:
                stream = store.stream_of(
                    resource_identity(rm.resource), scope_identity(sm), m, kind
                )
                state = store.limiter.overflow_state(stream) if stream is not None else None
                if stream is not None and state is not None:
                    point = _folded_point(stream, state, m, decision.folded)
            removed = decision.folded
            if decision.dropped:
                removed = sorted(removed + decision.dropped)
            _delete(dps, removed)
            if point is not None:
                dps.append(point)


def _folded_point(
    stream: SeriesStream, state: _Overflow, m: metrics_pb2.Metric, indexes: list[int]
) -> Message | None:
    """The point standing upstream for the folded points of `m` (`data_points[i]` for i in
    `indexes`), or None when there is nothing new to say (a delta stream whose folded points
    were all out of order). Number points are not read again: the overflow series holds the
    value and the latest time (reading 800 points of a 1,000-point request cost more than the
    store's whole walk over them); only its start time comes from the points, once."""
    if isinstance(state, _HistogramOverflow):
        histograms = m.histogram.data_points
        return _folded_histogram(stream, state, [histograms[i] for i in indexes])
    numbers = m.sum.data_points if m.WhichOneof("data") == "sum" else m.gauge.data_points
    target = state.series
    if not target.start:
        target.start = min(numbers[i].start_time_unix_nano for i in indexes)
    point = metrics_pb2.NumberDataPoint()
    end = target.time
    if stream.cumulative:
        point.as_double = target.value
        point.start_time_unix_nano = target.start
    else:
        if end <= state.forwarded_end:
            return None
        point.as_double = target.value - state.forwarded_value
        point.start_time_unix_nano = state.forwarded_end or target.start
        state.forwarded_value = target.value
        state.forwarded_end = end
    point.time_unix_nano = end
    point.attributes.append(_OVERFLOW_KV)
    return point


def _folded_histogram(
    stream: SeriesStream, state: _HistogramOverflow, folded: list[metrics_pb2.HistogramDataPoint]
) -> metrics_pb2.HistogramDataPoint:
    target = state.series
    start = min(p.start_time_unix_nano for p in folded)
    if not target.start or start < target.start:
        target.start = start
    point = metrics_pb2.HistogramDataPoint()
    if stream.cumulative:
        bounds, counts, count, total = (
            target.bounds,
            target.counts,
            target.count,
            target.sum,
        )
    else:
        bounds = list(folded[0].explicit_bounds)
        same = [p for p in folded if list(p.explicit_bounds) == bounds]
        counts = [sum(c) for c in zip(*[p.bucket_counts for p in same], strict=True)]
        count, total = sum(p.count for p in same), sum(p.sum for p in same)
    point.explicit_bounds.extend(bounds)
    point.bucket_counts.extend(counts)
    point.count, point.sum = count, total
    end = max(p.time_unix_nano for p in folded)
    if stream.cumulative:
        point.start_time_unix_nano = target.start
    else:
        point.start_time_unix_nano = state.forwarded_end or start
        state.forwarded_end = end
    point.time_unix_nano = end
    point.attributes.append(_OVERFLOW_KV)
    return point


_M = TypeVar("_M", bound=Message)


def _delete(dps: RepeatedCompositeFieldContainer[_M], indexes: list[int]) -> None:
    """Removes `dps[i]` for the ascending `indexes`: one slice deletion when they are one run
    (the usual case under a cardinality attack: the series past the limit come in a row),
    else one deletion each."""
    if not indexes:
        return
    first, last = indexes[0], indexes[-1]
    if last - first == len(indexes) - 1:
        del dps[first : last + 1]
        return
    for i in reversed(indexes):
        del dps[i]
