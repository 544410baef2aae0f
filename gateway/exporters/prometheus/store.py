"""`SeriesStore`: the state behind `/metrics`, fed by the pipeline.

One walk over each request does everything per point: validation, delta-to-cumulative,
out-of-order checks, staleness bookkeeping. Separate passes would each cost about as much as
the whole walk (a Python loop over protobuf points is the bottleneck of the gateway), so the
stages are functions this walk calls rather than processors of their own.

Series identity is `gateway.pipeline.identity`'s: a point's attributes as bytes, a dict key.
The number loop inlines `identity.number_key` (it is the hottest loop of the gateway); a
property test pins the two together. Only on the first sight of a key are the attributes
decoded into labels (`labels.point_labels`). Attributes that arrive in another order give
another key, so a second index by rendered labels catches them and aliases the key to the same
series.

Exemplars (`exemplars` module) ride on paths the points without them never take: a number
point with exemplars already takes the slow identity path, where it is noted, and its exemplar
is kept after the walk if the point was; a classic histogram point costs one look at its
(empty) exemplars field. They live in a per-stream table that exists once one arrives.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from gateway.exporters.prometheus.exemplars import bucket_exemplars, latest
from gateway.exporters.prometheus.labels import (
    attribute_string,
    escape_value,
    point_labels,
    render_pairs,
)
from gateway.exporters.prometheus.series import (
    EXPONENTIAL,
    HISTOGRAM,
    SUMMARY,
    HistogramSeries,
    Kind,
    NumberSeries,
    Series,
)
from gateway.naming import (
    metric_name,
    sanitize_label_name,
    unit_suffix,
)
from gateway.pipeline.batch import MetricsBatch, Overflowed
from gateway.pipeline.identity import (
    EXEMPLARS_TAG,
    FLAGS_TAG,
    NO_RECORDED_VALUE,
    NUMBER_FIXED_TAGS,
    attributes_key,
    histogram_key,
    resource_identity,
    scope_identity,
)
from gateway.processors.cardinality import (
    OVERFLOW_POINT,
    CardinalityConfig,
    CardinalityLimiter,
    HistogramShape,
    NumberShape,
    Shape,
)
from gateway.processors.delta import Outcome, accumulate

__all__ = ["Family", "IngestCounters", "SeriesStore", "StoreSettings", "StreamView"]

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_MAX_NAME_LENGTH = 255
# The overflow series' entry in a stream's identity index (no point serialises to it), so that
# expiry sees it as live while its members are.
_OVERFLOW_KEY = b"\x00overflow"
_KINDS = {"histogram": HISTOGRAM, "exponential_histogram": EXPONENTIAL, "summary": SUMMARY}
# Series an overflow series can add up (`CardinalityLimiter.overflow`).
_OVERFLOW_SHAPES: dict[type, Shape] = {
    NumberSeries: NumberShape(NumberSeries),
    HistogramSeries: HistogramShape(HistogramSeries),
}
# What `_series_for` returns for a point whose attributes break the input limits.
_REFUSED: Any = object()
# What `_series_for` returns for a new series refused at the gateway-wide series cap.
_CAPPED: Any = object()
# A histogram stream without exemplars so far is searched for them in one request in this many
# (`_ingest_structured`).
_EXEMPLAR_PROBE = 8
# Encodings of one resource or scope the store indexes (the first, which keys its streams, and
# the latest others). An SDK sends one encoding; each other order of the attributes, or other
# `dropped_attributes_count`, is one more: without a bound a client could grow the index by
# one entry per request while naming the same labels.
_MAX_ALIASES = 4


@dataclass(frozen=True, slots=True)
class StoreSettings:
    #: a series not updated for this long disappears
    expiration_seconds: float = 300.0
    #: most series one metric stream (metric + resource + scope) may hold; more go to the
    #: stream's overflow series (used when `cardinality` is None)
    max_series_per_stream: int = 2000
    #: every cardinality limit (per stream, per metric, per service, label value length)
    cardinality: CardinalityConfig | None = None
    #: resource attributes copied onto every series of the resource
    resource_to_labels: tuple[str, ...] = ()
    target_info: bool = True
    #: keep exemplars for the OpenMetrics exposition (`prometheus.exemplars`)
    exemplars: bool = False


@dataclass(slots=True)
class IngestCounters:
    """What the store did with the points it saw, for self-telemetry."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    #: points of new series refused at `cardinality.max_series_total` (all services): the
    #: gateway-wide cap's own accounting, apart from the per-stream limits'
    capped: int = 0

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


class _Resource:
    __slots__ = ("aliases", "base", "copied", "info_labels", "key", "labels", "streams")

    def __init__(self, base: str, copied: tuple[KeyValue, ...], info_labels: str | None) -> None:
        #: the identity of the resource in stream keys: the first encoding seen of these labels
        #: (the same attributes in another order are the same resource)
        self.key = b""
        #: `job="..",instance=".."`: what every series of the resource starts with
        self.base = base
        #: the attributes `prometheus.resource_to_labels` copies onto every series; rendered
        #: with each series' own attributes, so that a point attribute of the same name merges
        #: with them (values joined with `;`) instead of repeating a label name
        self.copied = copied
        #: `base` plus the copied attributes: the resource's identity by labels
        self.labels = ",".join(p for p in (base, render_pairs(copied, reserved=frozenset())) if p)
        #: labels of `target_info`, or None when there is nothing to say
        self.info_labels = info_labels
        #: its encodings in `SeriesStore._resources` (`key` first), at most `_MAX_ALIASES`
        self.aliases: list[bytes] = []
        #: streams of the resource in the store: at none left (at the end of a request's walk
        #: or at expiry) the store forgets the resource
        self.streams = 0


class _Scope:
    """An instrumentation scope the store has streams of (several encodings may share one)."""

    __slots__ = ("aliases", "key", "labels", "streams")

    def __init__(self, key: bytes, labels: str) -> None:
        #: the identity of the scope in stream keys: the first encoding seen of these labels
        self.key = key
        #: `otel_scope_name="..",...` (`_scope_labels`)
        self.labels = labels
        #: as `_Resource.aliases` and `_Resource.streams`
        self.aliases: list[bytes] = []
        self.streams = 0


def _index(index: dict[bytes, Any], entry: _Resource | _Scope, key: bytes) -> None:
    """Indexes one more encoding of a resource or scope; past `_MAX_ALIASES` the oldest but the
    first (which streams are keyed by) is forgotten."""
    aliases = entry.aliases
    if len(aliases) >= _MAX_ALIASES:
        del index[aliases.pop(1)]
    aliases.append(key)
    index[key] = entry


def _unindex(index: dict[bytes, Any], entry: _Resource | _Scope) -> None:
    for key in entry.aliases:
        if index.get(key) is entry:
            del index[key]
    entry.aliases.clear()


class Family:
    """One Prometheus metric family: name, type, help and the streams that feed it."""

    __slots__ = ("help", "kind", "name", "streams", "unit")

    def __init__(self, name: str, kind: str, help_text: str, unit: str) -> None:
        self.name = name  # as the 0.0.4 text format writes it (`..._total` for counters)
        self.kind = kind  # counter | gauge | histogram | summary
        self.help = help_text
        self.unit = unit  # the unit suffix word, "" for none
        #: the streams that feed it, by their resource and scope labels (`_Stream.slot`): two
        #: streams of one family with the same would write the same series, so a slot names
        #: one stream, and finding it costs one lookup, not a scan of the family
        self.streams: dict[str, _Stream] = {}


class _Stream:
    """One metric of one resource and scope: the series of its attribute sets."""

    __slots__ = (
        "by_labels",
        "calls",
        "cumulative",
        "exemplars",
        "family",
        "monotonic",
        "overflow_labels",
        "prefix",
        "resource",
        "scope",
        "series",
        "slot",
    )

    def __init__(
        self,
        family: Family,
        prefix: str,
        slot: str,
        resource: _Resource,
        scope: _Scope,
        cumulative: bool,
        monotonic: bool,
    ) -> None:
        self.family = family
        #: labels every series of the stream carries (job, instance and scope), rendered once
        #: here and not in each series, to save memory
        self.prefix = prefix
        #: the stream's key in its family: its resource's and scope's labels
        self.slot = slot
        self.resource = resource
        self.scope = scope
        self.cumulative = cumulative
        self.monotonic = monotonic
        #: identity bytes -> series (several keys may alias one series)
        self.series: dict[bytes, Any] = {}
        #: rendered point labels -> series: the canonical index
        self.by_labels: dict[str, Any] = {}
        #: labels of the stream's overflow series, rendered on its first overflow
        self.overflow_labels: str | None = None
        #: rendered point labels -> the series' most recent exemplar (a counter's `Exemplar`,
        #: a classic histogram's one slot per bucket); None until one arrives, so that only
        #: series that received an exemplar pay for one (`exemplars` module)
        self.exemplars: dict[str, Any] | None = None
        #: requests that fed the stream (histograms: when to look for exemplars)
        self.calls = 0


class StreamView(NamedTuple):
    """One live stream as the status page reads it (`SeriesStore.stream_views`)."""

    family: Family
    #: `job="..",instance=".."` and copied resource attributes
    resource_labels: str
    #: rendered point labels -> series (NumberSeries, HistogramSeries, ...): read only
    series: Mapping[str, Series]
    #: distinct series folded into the stream's overflow series
    overflowed_series: int


_SCOPE_OWN = frozenset(("otel_scope_name", "otel_scope_version", "otel_scope_schema_url"))


def _scope_labels(scope: InstrumentationScope, schema_url: str = "") -> str:
    """`otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url` and the scope's
    attributes as `otel_scope_<key>`.
    Attributes that would overwrite name, version or schema URL are dropped, and keys that
    sanitise alike are joined with `;`, as the compatibility spec says (v1.60.0, "Instrumentation
    Scope")."""
    parts = []
    if scope.name:
        parts.append(f'otel_scope_name="{escape_value(scope.name)}"')
    if scope.version:
        parts.append(f'otel_scope_version="{escape_value(scope.version)}"')
    if schema_url:
        parts.append(f'otel_scope_schema_url="{escape_value(schema_url)}"')
    merged: dict[str, list[tuple[str, str]]] = {}
    for kv in scope.attributes:
        key = sanitize_label_name("otel_scope_" + kv.key)
        if key not in _SCOPE_OWN:
            merged.setdefault(key, []).append((kv.key, attribute_string(kv.value)))
    for key, values in sorted(merged.items()):
        text = ";".join(v for _, v in sorted(values))
        parts.append(f'{key}="{escape_value(text)}"')
    return ",".join(parts)


_SERVICE_KEYS = frozenset(("service.name", "service.namespace", "service.instance.id"))


def _resource_labels(resource: Resource, copy_keys: tuple[str, ...], info: bool) -> _Resource:
    attrs = {kv.key: kv.value for kv in resource.attributes}
    name = attribute_string(attrs["service.name"]) if "service.name" in attrs else ""
    namespace = attribute_string(attrs["service.namespace"]) if "service.namespace" in attrs else ""
    job = f"{namespace}/{name}" if namespace and name else name
    instance = (
        attribute_string(attrs["service.instance.id"]) if "service.instance.id" in attrs else ""
    )
    base = []
    if job:
        base.append(f'job="{escape_value(job)}"')
    if instance:
        base.append(f'instance="{escape_value(instance)}"')
    copied = tuple(KeyValue(key=k, value=attrs[k]) for k in copy_keys if k in attrs)
    others = [kv for kv in resource.attributes if kv.key not in _SERVICE_KEYS]
    info_labels = None
    # As the Collector's exporter: a target_info for every resource, even one that says no
    # more than job and instance (a dashboard joining on it finds every service).
    if info and (others or base):
        info_labels = ",".join([*base, render_pairs(others)] if others else base)
    return _Resource(",".join(base), copied, info_labels)


#: names of the exposition's own `target_info` (0.0.4) / `target` info family (OpenMetrics)
_RESERVED_NAMES = ("target", "target_info")


def _claimed_names(name: str, kind: str) -> tuple[str, ...]:
    """Every name a family writes or reserves in either format: its samples' names and its
    OpenMetrics metadata name. Two families sharing one would repeat a series (a gauge `x_count`
    next to a histogram `x`) or a TYPE line (a gauge `x` next to a counter `x_total`, which
    OpenMetrics announces as `x`)."""
    if kind == "counter":
        meta = name.removesuffix("_total")
        return (name, meta, meta + "_created")
    if kind == "gauge":
        return (name,)
    if kind == "histogram":
        return (name, name + "_bucket", name + "_sum", name + "_count", name + "_created")
    return (name, name + "_sum", name + "_count", name + "_created")


def _reason_label(message: str) -> str:
    """`invalid value: NaN ...` -> `invalid_value`, the `reason` label of self-metrics."""
    return message.split(":", 1)[0].replace(" ", "_")


def _point_labels(stream: _Stream, point: Any) -> str:
    """A series' own labels, as they follow the stream's prefix (`labels.point_labels`)."""
    return point_labels(
        stream.family.kind, point.attributes, stream.resource.copied, bool(stream.prefix)
    )


_CAPPED_MESSAGE = (
    "metric {name!r}: points of new series refused: the gateway holds "
    "cardinality.max_series_total series (all services together)"
)


def _join(*parts: str) -> str:
    return ",".join(p for p in parts if p)


class SeriesStore:
    """Holds the latest state of every series; a `Consumer` of the pipeline.

    The clock is injected (`clock()` returns seconds, monotonic) so staleness is testable.
    """

    def __init__(
        self,
        settings: StoreSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        point_check: Callable[[Any], str | None] | None = None,
    ) -> None:
        self.settings = settings or StoreSettings()
        self._clock = clock
        #: input limits on a point's attributes, asked on the first sight of a series
        #: (`InputLimits.point_problem`); None: no limits
        self._point_check = point_check
        self._refusal = ""
        #: points of the metric being ingested dropped at a cardinality limit, and refused at
        #: the gateway-wide cap
        self._limited_now = 0
        self._capped_now = 0
        self.counters = IngestCounters()
        # Without a cardinality section (tests, benchmarks) only the per-stream limit applies.
        self.limiter = CardinalityLimiter(
            self.settings.cardinality
            or CardinalityConfig(
                max_series_per_stream=self.settings.max_series_per_stream,
                max_series_per_service=0,
                max_label_value_length=0,
            ),
            clock=clock,
        )
        # Resources and scopes by encoding, and by labels (one entry for all encodings). Every
        # entry names at least one stream once a request's walk is over, every stream holds a
        # series, and series stop at `cardinality.max_series_total`: so these indexes, the
        # streams and the families stop there too, however many names clients invent.
        self._resources: dict[bytes, _Resource] = {}
        self._resource_keys: dict[tuple[str, str | None], _Resource] = {}
        self._scopes: dict[bytes, _Scope] = {}
        self._scope_keys: dict[str, _Scope] = {}
        #: sample and metadata names a family holds in either format -> the family's name
        self._claims: dict[str, str] = dict.fromkeys(_RESERVED_NAMES, "target_info")
        #: names another store serves (`reserve`): claimed name -> (family name, type)
        self._reserved: dict[str, tuple[str, str]] = {}
        #: job and instance labels of the resource those names belong to
        self._owner = ""
        self._streams: dict[tuple[Any, ...], _Stream] = {}
        self._families: dict[str, Family] = {}
        self._series_count = 0
        self._last_sweep = 0.0

    def reserve(self, families: Iterable[tuple[str, str]], owner: Mapping[str, str]) -> None:
        """Keep the Prometheus names of `families` ((name, type) pairs), which another store
        serves for the resource `owner` (the gateway's own metrics): a metric that maps to one
        of them with another type, or from that very resource (same job and instance), is
        refused with a name conflict. Other resources may write series of the same type (a
        peer gateway's figures, say): the exposition writes them under one HELP/TYPE block.
        A client metric `coderunner.gateway.points.received` once gave a second block (an
        unparsable /metrics) and could overwrite the gateway's own figures."""
        raw = Resource()
        for key, value in owner.items():
            raw.attributes.add(key=key).value.string_value = value
        self._owner = _resource_labels(raw, (), info=False).base
        for name, kind in families:
            for claimed in _claimed_names(name, kind):
                self._reserved[claimed] = (name, kind)

    def stream_of(
        self, resource_key: bytes, scope_key: bytes, metric: metrics_pb2.Metric, kind: str
    ) -> _Stream | None:
        """The stream a metric of a request fed, by the identities of its resource and scope as
        they arrived (`identity.resource_identity`, `identity.scope_identity`): another
        encoding of a known resource or scope finds the same stream, as ingest does."""
        resource = self._resources.get(resource_key)
        scope = self._scopes.get(scope_key)
        if resource is None or scope is None:
            return None
        return self._streams.get((resource.key, scope.key, metric.name, metric.unit, kind))

    @staticmethod
    def series_labels(stream: _Stream, point: Any) -> str:
        """The labels the store gives `point`'s series in `stream` (after the stream's
        prefix): for the forwarder's overflow folding, which must find the same series."""
        return _point_labels(stream, point)

    # ------------------------------------------------------------------ reading

    @property
    def series_count(self) -> int:
        return self._series_count

    def families(self) -> Iterable[Family]:
        """Families in first-seen order, after dropping what has gone stale."""
        self.expire()
        return self._families.values()

    def stream_views(self) -> Iterator[StreamView]:
        """Every live stream, after dropping what has gone stale; consume it before the store
        takes more data (it hands out the store's own dicts)."""
        self.expire()
        for stream in self._streams.values():
            state = self.limiter.overflow_state(stream)
            yield StreamView(
                stream.family,
                stream.resource.labels,
                stream.by_labels,
                len(state.members) if state is not None else 0,
            )

    def target_infos(self) -> list[str]:
        """Label sets of `target_info`, one per live resource that has attributes to say."""
        # Several encodings of one resource share a _Resource: each label set once.
        return list(
            dict.fromkeys(
                r.info_labels for r in self._resources.values() if r.info_labels is not None
            )
        )

    # ------------------------------------------------------------------ staleness

    def expire(self) -> None:
        """Drop series not updated for `expiration_seconds`, then empty streams, and the
        families, resources and scopes left without a stream. Runs at most once a second;
        exposition calls it before rendering."""
        now = self._clock()
        if now - self._last_sweep < 1.0 and self._last_sweep:
            return
        self._last_sweep = now
        cutoff = now - self.settings.expiration_seconds
        for key, stream in list(self._streams.items()):
            # Each index is swept by the entries' own time: a series may have no identity key
            # (past 2x the limit only the label index holds it), and an overflow member is
            # only in the key index.
            for k in [k for k, s in stream.series.items() if s.updated < cutoff]:
                del stream.series[k]
            stale = [labels for labels, s in stream.by_labels.items() if s.updated < cutoff]
            for labels in stale:
                del stream.by_labels[labels]
            kept = stream.exemplars
            if kept is not None:
                for labels in stale:
                    kept.pop(labels, None)
            self._series_count -= len(stale)
            if not stream.by_labels and not stream.series:
                self._drop_stream(key, stream)
                continue
            state = self.limiter.overflow_state(stream)
            if state is not None:
                # A stale overflowed series is forgotten with its key above: if it comes back
                # it counts as new, and it frees its place among the tracked ones.
                members: dict[str, Any] = state.members  # number and histogram members
                for labels in [m for m, s in members.items() if s.updated < cutoff]:
                    del members[labels]
        for resource in dict.fromkeys(r for r in self._resources.values() if not r.streams):
            self._forget_resource(resource)
        for scope in dict.fromkeys(s for s in self._scopes.values() if not s.streams):
            self._forget_scope(scope)

    # ------------------------------------------------------------------ ingest

    def process(self, batch: MetricsBatch) -> None:
        """The store as the pipeline's last processor (`gateway.app`): it decides, in its one
        walk over the points, what every exporter after it sees: refused points leave the
        batch, overflow decisions go into `batch.overflowed` for the forward path. As a
        processor it runs before any exporter by construction, not by a list's order."""
        self.consume(batch)

    def consume(self, batch: MetricsBatch) -> None:
        now = self._clock()
        if self._full():
            # At the cap, stale series make room first (expiry otherwise runs on scrapes).
            self.expire()
        for ri, rm in enumerate(batch.request.resource_metrics):
            rkey = resource_identity(rm.resource)
            resource = self._resources.get(rkey)
            if resource is None:
                if self._full():
                    # A resource the store does not know has no series: every point of it
                    # would be a new series. Refused before anything of it is kept, so that
                    # many services cannot grow the store past the cap.
                    for si, sm in enumerate(rm.scope_metrics):
                        self._cap_scope(batch, sm, (ri, si))
                    continue
                resource = self._new_resource(rkey, rm.resource)
            for si, sm in enumerate(rm.scope_metrics):
                skey = scope_identity(sm)
                scope = self._scopes.get(skey)
                if scope is None:
                    if self._full():
                        self._cap_scope(batch, sm, (ri, si))
                        continue
                    scope = self._new_scope(skey, sm.scope, sm.schema_url)
                for mi, metric in enumerate(sm.metrics):
                    self._consume_metric(batch, metric, resource, scope, now, (ri, si, mi))
                if not scope.streams:
                    # Its metrics gave no series (none, empty, or every point refused): a
                    # client naming a new scope in every request must not grow the index.
                    self._forget_scope(scope)
            if not resource.streams:
                self._forget_resource(resource)

    def _full(self) -> bool:
        """Whether the store holds `cardinality.max_series_total` series (0: no cap)."""
        cap = self.limiter.config.max_series_total
        return bool(cap) and self._series_count >= cap

    def _cap_scope(self, batch: MetricsBatch, sm: Any, at: tuple[int, int]) -> None:
        """Refuses every point of a scope's metrics at the gateway-wide cap."""
        for mi, metric in enumerate(sm.metrics):
            self._cap_metric(batch, metric, (*at, mi))

    def _cap_metric(
        self, batch: MetricsBatch, metric: metrics_pb2.Metric, position: tuple[int, int, int]
    ) -> None:
        kind = metric.WhichOneof("data")
        n = len(getattr(metric, kind).data_points) if kind is not None else 0
        if not n:
            return
        self.counters.capped += n
        batch.reject(n, _CAPPED_MESSAGE.format(name=metric.name))
        # The forward path drops them too (upstream shows what /metrics shows).
        batch.overflowed[position] = Overflowed([], list(range(n)))

    def _new_resource(self, rkey: bytes, raw: Resource) -> _Resource:
        """A resource by an encoding not indexed: encodings with the same labels share one."""
        settings = self.settings
        resource = _resource_labels(raw, settings.resource_to_labels, settings.target_info)
        ident = (resource.labels, resource.info_labels)
        same = self._resource_keys.get(ident)
        if same is None:
            resource.key = rkey
            self._resource_keys[ident] = resource
        else:
            resource = same
        _index(self._resources, resource, rkey)
        return resource

    def _new_scope(self, skey: bytes, raw: InstrumentationScope, schema_url: str) -> _Scope:
        """A scope by an encoding not indexed: encodings with the same labels share one."""
        labels = _scope_labels(raw, schema_url)
        scope = self._scope_keys.get(labels)
        if scope is None:
            scope = self._scope_keys[labels] = _Scope(skey, labels)
        _index(self._scopes, scope, skey)
        return scope

    def _forget_resource(self, resource: _Resource) -> None:
        _unindex(self._resources, resource)
        ident = (resource.labels, resource.info_labels)
        if self._resource_keys.get(ident) is resource:
            del self._resource_keys[ident]

    def _forget_scope(self, scope: _Scope) -> None:
        _unindex(self._scopes, scope)
        if self._scope_keys.get(scope.labels) is scope:
            del self._scope_keys[scope.labels]

    def _consume_metric(
        self,
        batch: MetricsBatch,
        metric: metrics_pb2.Metric,
        resource: _Resource,
        scope: _Scope,
        now: float,
        position: tuple[int, int, int],
    ) -> None:
        kind = metric.WhichOneof("data")
        if kind is None:
            return  # no data: nothing to store, nothing to reject
        data = getattr(metric, kind)
        dps = data.data_points
        if not dps:
            return
        temporality = getattr(data, "aggregation_temporality", _CUMULATIVE)
        monotonic = kind == "sum" and data.is_monotonic
        key = (resource.key, scope.key, metric.name, metric.unit, kind)
        stream = self._streams.get(key)
        if stream is not None and (
            stream.cumulative != (temporality != _DELTA) or stream.monotonic != monotonic
        ):
            # The producer changed the stream's temporality or monotonicity: its series
            # restart rather than appear twice under the same labels.
            self._drop_stream(key, stream)
            stream = None
        if stream is None:
            if self._full():
                self._cap_metric(batch, metric, position)
                return
            problem = self._check_metric(metric, kind, temporality)
            if problem is None:
                stream, problem = self._new_stream(
                    metric, kind, temporality, monotonic, resource, scope
                )
            if stream is None:
                self._reject_all(batch, dps, problem or "invalid metric")
                return
            self._streams[key] = stream
        folded: list[int] = []
        dropped: list[int] = []
        if kind == "sum" or kind == "gauge":
            bad = self._ingest_numbers(stream, dps, now, folded, dropped)
        else:
            bad = self._ingest_structured(stream, dps, now, _KINDS[kind], folded, dropped)
        limited, self._limited_now = self._limited_now, 0
        if self._capped_now:
            batch.reject(self._capped_now, _CAPPED_MESSAGE.format(name=metric.name))
            self._capped_now = 0
        if limited:
            # Dropped, not folded into the overflow series: OTLP says the client must hear of
            # it (partial_success). Folded points are accepted and not reported.
            batch.reject(
                limited,
                f"metric {metric.name!r}: points of new series dropped at the cardinality limit "
                "(overflow cannot take them: exponential histograms, summaries, or more than "
                "cardinality.max_tracked_overflow_series overflowed series)",
            )
        if bad:
            for index, _ in reversed(bad):
                del dps[index]
            for _, reason in bad:
                self.counters.reject(_reason_label(reason))
            batch.reject(len(bad), f"metric {metric.name!r}: {bad[0][1]}")
        if folded or dropped:
            if bad:
                # Indexes after the refused points' removal (the sets are disjoint).
                gone = [index for index, _ in bad]
                folded = [i - bisect_left(gone, i) for i in folded]
                dropped = [i - bisect_left(gone, i) for i in dropped]
            batch.overflowed[position] = Overflowed(folded, dropped)
        self.counters.accepted += len(dps)
        if not stream.by_labels:
            # A new stream that took no series (every point refused, dropped or capped) is not
            # kept: it would hold its family, resource and scope without a series to count
            # against any limit. (A stream the store keeps always holds one.)
            self._drop_stream(key, stream)

    def _drop_stream(self, key: tuple[Any, ...], stream: _Stream) -> None:
        del self._streams[key]
        self._series_count -= len(stream.by_labels)
        # The resource and scope are forgotten by the caller if this was their last stream
        # (not here: a request's walk may still be using them).
        stream.resource.streams -= 1
        stream.scope.streams -= 1
        family = stream.family
        if family.streams.get(stream.slot) is stream:
            del family.streams[stream.slot]
        if not family.streams:
            del self._families[family.name]
            for name in _claimed_names(family.name, family.kind):
                self._claims.pop(name, None)
            # Its counts go with it: clients inventing metric names must not grow them for
            # ever. (The limiter drops the stream's overflow state itself, `_maybe_recount`.)
            counts = self.limiter.counters
            counts.overflowed.pop(family.name, None)
            counts.truncated.pop(family.name, None)

    def _reject_all(self, batch: MetricsBatch, dps: Any, problem: str) -> None:
        n = len(dps)
        self.counters.reject(_reason_label(problem), n)
        batch.reject(n, problem)
        del dps[:]

    @staticmethod
    def _check_metric(metric: metrics_pb2.Metric, kind: str, temporality: int) -> str | None:
        name = metric.name
        if not name:
            return "invalid name: empty metric name"
        if len(name) > _MAX_NAME_LENGTH or not name.isprintable() or " " in name:
            return f"invalid name: {name[:64]!r} (printable, no spaces, at most 255 characters)"
        if kind in ("sum", "histogram", "exponential_histogram") and temporality not in (
            _CUMULATIVE,
            _DELTA,
        ):
            return f"invalid temporality: {name!r} has an unspecified aggregation temporality"
        return None

    def _new_stream(
        self,
        metric: metrics_pb2.Metric,
        kind: str,
        temporality: int,
        monotonic: bool,
        resource: _Resource,
        scope: _Scope,
    ) -> tuple[_Stream | None, str | None]:
        prom_kind = {
            "sum": "counter" if monotonic else "gauge",
            "gauge": "gauge",
            "histogram": "histogram",
            "exponential_histogram": "histogram",
            "summary": "summary",
        }[kind]
        name = metric_name(
            metric.name,
            metric.unit,
            monotonic_counter=prom_kind == "counter",
            gauge=kind == "gauge",
        )
        if not name or name == "total":
            # A counter with no word but `total` has no OpenMetrics family name to announce.
            return None, f"invalid name: nothing of {metric.name[:64]!r} is left for Prometheus"
        claimed = _claimed_names(name, prom_kind)
        for taken in claimed:
            reserved = self._reserved.get(taken)
            if reserved is None:
                continue
            if reserved != (name, prom_kind) or resource.base == self._owner:
                return None, (
                    f"name conflict: {metric.name!r} maps to {name}, whose {taken} is "
                    "reserved for the gateway's own metrics"
                )
        family = self._families.get(name)
        if family is None:
            for taken in claimed:
                owner = self._claims.get(taken)
                if owner is not None:
                    return None, (
                        f"name conflict: {metric.name!r} maps to {name}, whose {taken} is "
                        f"already used by {owner}"
                    )
            # promtool wants help text; without a description (or with only whitespace, which
            # promtool reads as none) the OTel name and unit say most.
            help_text = (
                metric.description
                if metric.description.strip()
                else (f"{metric.name} ({metric.unit})" if metric.unit else metric.name)
            )
            family = Family(name, prom_kind, help_text, unit_suffix(metric.unit))
            self._families[name] = family
            self._claims.update(dict.fromkeys(claimed, name))
        elif family.kind != prom_kind:
            return None, (
                f"type conflict: {metric.name!r} is a {prom_kind} but {name} is already a "
                f"{family.kind}"
            )
        prefix = _join(resource.base, scope.labels)
        slot = _join(resource.labels, scope.labels)
        if slot in family.streams:
            # Another metric of the same resource and scope already owns this name (say
            # `a.b` and `a_b`, or one instrument under two views): their series would be
            # indistinguishable, so the newcomer is refused.
            return None, f"name conflict: {metric.name!r} maps to {name}, already in use"
        stream = _Stream(
            family,
            prefix,
            slot,
            resource,
            scope,
            cumulative=temporality != _DELTA,
            monotonic=monotonic,
        )
        family.streams[slot] = stream
        resource.streams += 1
        scope.streams += 1
        return stream, None

    def _series_for(self, stream: _Stream, key: bytes, point: Any, factory: type) -> Any:
        """First sight of an identity key: find or create the series it names (None: dropped at
        a cardinality limit; `_REFUSED`: the attributes break the input limits, `_refusal`
        says how). Over a cardinality limit the limiter hands out a member of the stream's
        overflow series instead (gateway.processors.cardinality)."""
        if self._point_check is not None:
            problem = self._point_check(point)
            if problem is not None:
                self._refusal = f"invalid attributes: data point with {problem}"
                return _REFUSED
        limiter = self.limiter
        labels = _point_labels(stream, limiter.shorten(stream, point))
        series = stream.by_labels.get(labels)
        if series is None:
            full = self._full()
            if full or limiter.over_limit(stream, len(stream.by_labels)):
                overflow_labels = stream.overflow_labels
                if overflow_labels is None:
                    overflow_labels = stream.overflow_labels = _point_labels(stream, OVERFLOW_POINT)
                # At the gateway-wide cap a stream's overflow series takes the new series if
                # the stream has one already; no new overflow series is made.
                series, new_overflow = limiter.overflow(
                    stream,
                    labels,
                    overflow_labels,
                    shape=_OVERFLOW_SHAPES.get(factory),
                    may_create=not full,
                )
                if new_overflow is not None:
                    stream.by_labels[overflow_labels] = new_overflow
                    stream.series[_OVERFLOW_KEY] = new_overflow
                    self._series_count += 1
                if series is None:
                    if full:
                        self.counters.capped += 1
                        self._capped_now += 1
                        return _CAPPED
                    return None
            else:
                series = factory(labels)
                stream.by_labels[labels] = series
                self._series_count += 1
                limiter.admitted(stream)
        if len(stream.series) < limiter.max_keys(stream):
            stream.series[key] = series
        return series

    def _ingest_numbers(
        self, stream: _Stream, dps: Any, now: float, folded: list[int], dropped: list[int]
    ) -> list[tuple[int, str]]:
        """Number points into their series; returns the refused (index, reason). Appends the
        indexes of points that went to an overflow series to `folded`, of points dropped at a
        limit to `dropped` (`MetricsBatch.overflowed`)."""
        bad: list[tuple[int, str]] = []
        # Once a stream has overflowed, a series may be an overflow member: one class test
        # per point then, none before.
        overflowed = stream.overflow_labels is not None
        observed = 0  # points of overflowed series taken by `observe`
        series_map = stream.series
        get = series_map.get
        cumulative = stream.cumulative
        monotonic = stream.monotonic
        keep_exemplars = monotonic and self.settings.exemplars
        fixed = NUMBER_FIXED_TAGS
        shared_t = 0
        # Points of a monotonic sum with exemplars, (index, key): after the walk the exemplars
        # of the points kept are kept (a point dropped as out of order takes itself off).
        sampled: list[tuple[int, bytes]] | None = None
        i = -1
        for p in dps:
            i += 1
            v = p.as_double or p.as_int
            if monotonic and not v >= 0:
                bad.append((i, "invalid value: NaN or negative value in a monotonic sum"))
                continue
            b = p.SerializeToString()
            n = len(b)
            j = 0
            while j < n and b[j] in fixed:
                j += 9
            key = b[j:]
            if key and (key[0] == EXEMPLARS_TAG or (n > 1 and b[-2] == FLAGS_TAG)):
                has_exemplars = key[0] == EXEMPLARS_TAG
                key, stale = self._number_key_slow(p)
                if stale:
                    if self._mark_stale(stream, key, p):
                        dropped.append(i)  # an overflowed series' end: nothing to forward
                    continue
                if has_exemplars and keep_exemplars:
                    # Noted here, on the slow path, and read after the walk: the points
                    # without exemplars pay nothing for them.
                    if sampled is None:
                        sampled = []
                    sampled.append((i, key))
            s = get(key)
            if s is None:
                s = self._series_for(stream, key, p, NumberSeries)
                if s is None:
                    self.counters.drop("cardinality_limit")
                    self._limited_now += 1
                    dropped.append(i)
                    continue
                if s is _CAPPED:
                    dropped.append(i)
                    continue
                if s is _REFUSED:
                    bad.append((i, self._refusal))
                    continue
                if s.__class__ is not NumberSeries:
                    overflowed = True
                    folded.append(i)
            elif overflowed and s.__class__ is not NumberSeries:
                folded.append(i)
                if cumulative:
                    # An overflowed series of a cumulative stream: one call does what the
                    # three property stores below would (`_OverflowMember.observe`).
                    if s.observe(v, p.time_unix_nano, now):
                        observed += 1
                    else:
                        self.counters.drop("out_of_order")
                    continue
            t = p.time_unix_nano
            # Points of one request mostly share a timestamp: keep one int object for them.
            if t == shared_t:
                t = shared_t
            else:
                shared_t = t
            if cumulative:
                # Prometheus detects counter resets itself, so a cumulative series keeps no
                # start time; it only must not go back in time.
                if t < s.time:
                    self.counters.drop("out_of_order")
                    if sampled is not None and sampled[-1][0] == i:
                        sampled.pop()
                    continue
                s.value = v
            else:
                outcome, s.start = accumulate(s.start, s.time, p.start_time_unix_nano, t)
                if outcome is Outcome.ADDED:
                    s.value += v
                elif outcome is Outcome.STARTED or outcome is Outcome.RESET:
                    s.value = v
                else:
                    self.counters.drop(outcome.value)
                    if sampled is not None and sampled[-1][0] == i:
                        sampled.pop()
                    continue
            s.time = t
            s.updated = now
        if observed:
            self.limiter.count_overflowed(stream, observed)
        if sampled:
            skip = {j for j, _ in bad}
            skip.update(folded, dropped)
            self._keep_exemplars(stream, dps, [(j, k) for j, k in sampled if j not in skip])
        return bad

    def _keep_exemplars(self, stream: _Stream, dps: Any, sampled: list[tuple[int, bytes]]) -> None:
        """Keeps the newest exemplar of each counter series among the points the walk kept
        (`exemplars` module). Points of an overflowed series were left out: the overflow
        series has none."""
        for i, key in sampled:
            p = dps[i]
            s = stream.series.get(key)
            if s is None:
                # A series the identity index does not hold (past twice the stream's limit
                # only the label index does), found as `_series_for` finds it
                labels = _point_labels(stream, self.limiter.shorten(stream, p))
                s = stream.by_labels.get(labels)
            if s is None or s.__class__ is not NumberSeries:
                continue
            kept = stream.exemplars
            old = kept.get(s.labels) if kept is not None else None
            ex = latest(p.exemplars, old.time if old is not None else -1)
            if ex is None:
                continue
            if kept is None:
                kept = stream.exemplars = {}
            kept[s.labels] = ex

    @staticmethod
    def _number_key_slow(p: Any) -> tuple[bytes, bool]:
        """The identity key of a point with exemplars or flags: the same bytes the fast path
        gives for the same attributes, computed on a copy without them."""
        return attributes_key(p), bool(p.flags & NO_RECORDED_VALUE)

    def _mark_stale(self, stream: _Stream, key: bytes, p: Any) -> bool:
        """A point flagged "no recorded value" ends its series now (Prometheus staleness).
        True when the series is an overflowed one (its end is the overflow series' business)."""
        s = stream.series.get(key)
        if s is None:
            s = stream.by_labels.get(_point_labels(stream, p))
        if s is None:
            return False
        if s.__class__ is not NumberSeries:
            return True
        s.updated = -math.inf
        return False

    def _generic_key(self, stream: _Stream, p: Any, factory: type) -> Any:
        key = histogram_key(p)
        s = stream.series.get(key)
        if s is None:
            s = self._series_for(stream, key, p, factory)
        return s

    def _ingest_structured(
        self,
        stream: _Stream,
        dps: Any,
        now: float,
        kind: Kind,
        folded: list[int],
        dropped: list[int],
    ) -> list[tuple[int, str]]:
        """Histograms, exponential histograms and summaries: fewer points than numbers and
        more work each, so their identity key is built from the attributes directly."""
        bad: list[tuple[int, str]] = []
        buckets = False  # whether to look for exemplars: classic histograms only
        if kind is HISTOGRAM and self.settings.exemplars:
            # Reading a point's (empty) exemplars field makes upb build a container object
            # each time (about 1,000 instructions a point under callgrind; 4-7 % of
            # bench/store_cpu.py's service mix): a stream's points are searched in its first
            # request and one in `_EXEMPLAR_PROBE` after, and in every request once one was
            # found (docs/performance.md, "Exemplars").
            stream.calls += 1
            buckets = stream.exemplars is not None or stream.calls % _EXEMPLAR_PROBE == 1
        i = -1
        for p in dps:
            i += 1
            if p.flags & NO_RECORDED_VALUE:
                continue
            problem, state = kind.check(p)
            if problem is not None:
                bad.append((i, problem))
                continue
            s = self._generic_key(stream, p, kind.factory)
            if s is None:
                self.counters.drop("cardinality_limit")
                self._limited_now += 1
                dropped.append(i)
                continue
            if s is _CAPPED:
                dropped.append(i)
                continue
            if s is _REFUSED:
                bad.append((i, self._refusal))
                continue
            if s.__class__ is not kind.factory:
                folded.append(i)
            t = p.time_unix_nano
            if stream.cumulative:
                if t < s.time:
                    self.counters.drop("out_of_order")
                    continue
                s.start = p.start_time_unix_nano
                kind.set(s, p, state)
            else:
                outcome, s.start = accumulate(s.start, s.time, p.start_time_unix_nano, t)
                if outcome is Outcome.ADDED and kind.merge(s, p, state):
                    pass
                elif outcome in (Outcome.STARTED, Outcome.RESET, Outcome.ADDED):
                    # ADDED but not addable (other bounds): the stream restarts from here.
                    s.start = p.start_time_unix_nano
                    kind.set(s, p, state)
                else:
                    self.counters.drop(outcome.value)
                    continue
            s.time = t
            s.updated = now
            if buckets and p.exemplars and s.__class__ is HistogramSeries:
                kept = stream.exemplars
                if kept is None:
                    kept = stream.exemplars = {}
                kept[s.labels] = bucket_exemplars(kept.get(s.labels), s.bounds, p.exemplars)
        return bad
