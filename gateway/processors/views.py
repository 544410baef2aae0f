"""Views: turn what services emit (OpenTelemetry semantic-convention names) into the catalogue.

A view selects instruments (name glob, kind, scope, resource attributes), and makes one output
metric from each: renamed (to a catalogue entry, whose name, unit and help it takes, or to an
explicit name and unit), with attributes kept, dropped, renamed and their values mapped, points
that become equal summed ("aggregated away"), and optionally a derived value (a histogram's
count or sum, times a rate chosen by an attribute). As with the OpenTelemetry SDK's views, an
instrument that any view selects is replaced by the views' outputs; the others pass unchanged.
Views run before the exporters' fan-out, so the OTLP forwarder sends the catalogue's names too.

Worked example (the default `api.requests` view). The service sends the histogram
`http.server.request.duration` with these cumulative points:

    {method=GET, scheme=http, route=/users/{id}, status=200}  count 7
    {method=GET, scheme=http, route=/users/{id}, status=204}  count 2
    {method=GET, scheme=http, (no route),        status=404}  count 1

The view keeps method, route and status (url.scheme is aggregated away), renames them to
`method`, `endpoint`, `status`, maps the status code to its class and a missing route to
`unknown`, and derives a counter from the count:

    coderunner.api.requests {method=GET, endpoint=/users/{id}, status=2xx}  9
    coderunner.api.requests {method=GET, endpoint=unknown,     status=4xx}  1

Summing points of one request is exact for cumulative input (a sum of cumulative counts is the
cumulative count of the sum) as long as a producer sends all its series in each export, which
the OpenTelemetry SDKs do; for delta input it is exact always.

Why aggregation stops at one request (no summing across `service.instance.id`): doing that for
cumulative input needs every instance's last value per series, kept in the gateway, and it is
wrong as soon as two gateway replicas each see some of the instances. `sum without (instance)`
in PromQL (or a recording rule) does it exactly; the views keep `job`/`instance` from the
resource.

Speed: decisions per metric identity (resource, scope, name, kind) are cached; per point, the
attribute rewriting is cached by the point's serialized attribute bytes (the store's trick), and
output points are written as protobuf bytes in one parse per metric.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.catalogue import DEFAULT_NAMESPACE, Kind, by_name
from gateway.exporters.prometheus.labels import attribute_string
from gateway.pipeline.batch import MetricsBatch

__all__ = [
    "AttributesConfig",
    "DeriveConfig",
    "RateTable",
    "RenameConfig",
    "Selector",
    "ValueMapping",
    "ViewConfig",
    "ViewCounters",
    "ViewProcessor",
]

log = logging.getLogger("gateway.views")

_DataKind = Literal["sum", "gauge", "histogram", "exponential_histogram", "summary"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------------- config


class ValueMapping(_Frozen):
    """How one attribute's values change. Order: `function`, then `map`, then `other`."""

    #: a built-in function of the value: `status_class` turns 200..599 into "2xx".."5xx"
    #: (anything else is left alone), `lower` and `upper` change case
    function: Literal["status_class", "lower", "upper"] | None = None
    #: exact replacements: {"GET": "get"}
    map: dict[str, str] = Field(default_factory=dict)
    #: the value for anything `map` does not list (None: keep it)
    other: str | None = None
    #: the value when the attribute is missing or empty (None: leave it out)
    default: str | None = None


class AttributesConfig(_Frozen):
    """Which attributes the output keeps, under which names, with which values."""

    #: incoming keys to keep, in this order; None keeps every key not in `drop`. Points that
    #: differ only in the other keys are summed (the keys are aggregated away)
    keep: tuple[str, ...] | None = None
    #: incoming keys to leave out (aggregated away) when `keep` is None
    drop: tuple[str, ...] = ()
    #: incoming key -> output key
    rename: dict[str, str] = Field(default_factory=dict)
    #: incoming key -> how its values change
    values: dict[str, ValueMapping] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> AttributesConfig:
        if self.keep is not None and self.drop:
            raise ValueError("give keep or drop, not both")
        outputs = [self.rename.get(k, k) for k in (self.keep or ())]
        if len(set(outputs)) != len(outputs):
            raise ValueError("two kept attributes are renamed to the same key")
        return self

    @property
    def is_identity(self) -> bool:
        return self.keep is None and not self.drop and not self.rename and not self.values


class Selector(_Frozen):
    """Which metrics a view applies to; every given condition must hold."""

    #: instrument name, a glob ("http.server.*"); "{namespace}" stands for the catalogue's
    #: namespace (prometheus.namespace)
    instrument: str
    #: only metrics of this OTLP data kind
    kind: _DataKind | None = None
    #: instrumentation scope name, a glob
    scope: str | None = None
    #: resource attributes that must be present with a matching value (globs)
    resource: dict[str, str] = Field(default_factory=dict)
    #: point attributes that must match (globs); other points of the metric are left out
    attributes: dict[str, str] = Field(default_factory=dict)


class RenameConfig(_Frozen):
    """An explicit output name, for metrics outside the catalogue."""

    #: the OpenTelemetry name; the Prometheus name follows from it and the unit
    name: str = Field(min_length=1)
    #: None keeps the incoming unit
    unit: str | None = None
    #: None keeps the incoming description
    description: str | None = None


class RateTable(_Frozen):
    """A multiplier chosen by an attribute's value: plan -> US dollars per second."""

    #: the incoming attribute whose value picks the rate
    attribute: str
    #: value -> rate (>= 0)
    rates: dict[str, float]
    #: the rate for values the table does not list; None leaves such points out
    default: float | None = Field(None, ge=0)

    @field_validator("rates")
    @classmethod
    def _non_negative(cls, rates: dict[str, float]) -> dict[str, float]:
        for key, rate in rates.items():
            if not rate >= 0:
                raise ValueError(f"rate for {key!r} must be >= 0, got {rate}")
        return rates


class DeriveConfig(_Frozen):
    """Make a counter out of another metric's points."""

    #: the value taken: a histogram's `count` or `sum`, or a Sum's `value`
    value: Literal["count", "sum", "value"]
    #: multiply by a rate chosen by an attribute (a cost from a duration)
    rate: RateTable | None = None


class ViewConfig(_Frozen):
    """One view. Settings only; `ViewProcessor` owns the running state."""

    #: a name for logs and errors
    name: str = ""
    #: which metrics the view applies to
    select: Selector
    #: the catalogue entry the output becomes (name under the namespace, unit, help, kind)
    to: str | None = None
    #: or an explicit output name; with neither, the name stays
    rename: RenameConfig | None = None
    #: derive a counter from the selected metric instead of transforming it
    derive: DeriveConfig | None = None
    #: attributes of the output
    attributes: AttributesConfig = AttributesConfig()
    #: drop the instrumentation scope, so the series carry no otel_scope_* labels
    drop_scope: bool = True

    @field_validator("to")
    @classmethod
    def _in_catalogue(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                by_name(value)
            except KeyError:
                raise ValueError(f"{value!r} is not in the metric catalogue") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ViewConfig:
        if self.to is not None and self.rename is not None:
            raise ValueError("give `to` (a catalogue entry) or `rename`, not both")
        if self.to is not None:
            kind = by_name(self.to).kind
            if self.derive is not None and kind is not Kind.COUNTER:
                raise ValueError(
                    f"derive makes a counter, but catalogue {self.to} is a {kind.value}"
                )
            selected = self.select.kind
            if self.derive is None and selected is not None and kind not in _COMPATIBLE[selected]:
                raise ValueError(f"a {selected} cannot become catalogue {self.to} ({kind.value})")
        if self.derive is not None:
            need = "sum" if self.derive.value == "value" else "histogram"
            if self.select.kind not in (None, need):
                raise ValueError(f"derive.value {self.derive.value} needs a {need}")
        return self


_COMPATIBLE: dict[str, tuple[Kind, ...]] = {
    "sum": (Kind.COUNTER, Kind.UPDOWN),
    "gauge": (Kind.GAUGE,),
    "histogram": (Kind.HISTOGRAM,),
    "exponential_histogram": (Kind.HISTOGRAM,),
    "summary": (),
}


# ---------------------------------------------------------------------------------- state


class ViewCounters:
    """What the views left out, by reason, for self-telemetry."""

    def __init__(self) -> None:
        self.dropped: dict[str, int] = {}

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


_CACHE_LIMIT = 50_000  # attribute sets remembered per view; beyond it the cache starts over
_FIXED_TAGS = frozenset((0x11, 0x19, 0x21, 0x31))  # NumberDataPoint fixed fields (store.py)
_EXEMPLARS_TAG = 0x2A
_FLAGS_TAG = 0x40
_HIST_FIXED_TAGS = frozenset((0x11, 0x19, 0x21, 0x29))  # start, time, count, sum
_NUMBER_ATTR_TAG = 0x3A  # NumberDataPoint.attributes = 7
_HIST_ATTR_TAG = 0x4A  # HistogramDataPoint.attributes = 9
_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_D = struct.Struct("<d")
_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, i
        shift += 7


def _number_key(p: Any) -> bytes:
    """The serialized attributes of a NumberDataPoint (plus nothing else), fast."""
    b: bytes = p.SerializeToString()
    n = len(b)
    j = 0
    while j < n and b[j] in _FIXED_TAGS:
        j += 9
    key = b[j:]
    if key and (key[0] == _EXEMPLARS_TAG or (n > 1 and b[-2] == _FLAGS_TAG)):
        q = metrics_pb2.NumberDataPoint()
        q.attributes.extend(p.attributes)
        out: bytes = q.SerializeToString()
        return out
    return key


def _histogram_key(p: Any) -> bytes:
    """The serialized attributes of a HistogramDataPoint: skip the fixed and packed fields in
    front (start, time, count, sum, bucket counts, bounds), cut min/max/flags behind."""
    b: bytes = p.SerializeToString()
    n = len(b)
    j = 0
    while j < n:
        tag = b[j]
        if tag in _HIST_FIXED_TAGS:
            j += 9
        elif tag == 0x32 or tag == 0x3A:
            length, j = _read_varint(b, j + 1)
            j += length
        else:
            break
    if j < n and b[j] != _HIST_ATTR_TAG:
        q = metrics_pb2.NumberDataPoint()  # exemplars in front: take the slow, sure way
        q.attributes.extend(p.attributes)
        out: bytes = q.SerializeToString()
        return out
    end = n
    if p.HasField("max"):
        end -= 9
    if p.HasField("min"):
        end -= 9
    if p.flags:
        end -= 1 + len(_varint(p.flags))
    # The key is only looked up in a view's cache, whose entries depend on the attributes
    # alone, so histogram keys (tag 0x4A) and number keys (0x3A) may share one cache.
    return b[j:end]


def _kv_bytes(key: str, value: str) -> bytes:
    kv = KeyValue(key=key)
    kv.value.string_value = value
    return kv.SerializeToString()


def _status_class(value: str) -> str:
    if len(value) == 3 and value.isdigit() and "1" <= value[0] <= "5":
        return value[0] + "xx"
    return value


class _Entry:
    """The outcome of one view for one incoming attribute set."""

    __slots__ = ("hist_attrs", "key", "number_attrs", "rate")

    def __init__(self, kvs: Sequence[bytes], rate: float) -> None:
        self.key = b"".join(kvs)  # groups points that become the same series
        self.number_attrs = b"".join(_field(_NUMBER_ATTR_TAG, kv) for kv in kvs)
        self.hist_attrs = b"".join(_field(_HIST_ATTR_TAG, kv) for kv in kvs)
        self.rate = rate


class _View:
    """A view compiled for one namespace, with its attribute cache."""

    def __init__(self, config: ViewConfig, namespace: str) -> None:
        self.config = config
        self.label = config.name or config.to or config.select.instrument
        sel = config.select
        self.instrument = re.compile(
            fnmatch.translate(sel.instrument.replace("{namespace}", namespace))
        )
        self.scope = re.compile(fnmatch.translate(sel.scope)) if sel.scope is not None else None
        self.resource = [(k, re.compile(fnmatch.translate(v))) for k, v in sel.resource.items()]
        self.point_filter = [
            (k, re.compile(fnmatch.translate(v))) for k, v in sel.attributes.items()
        ]
        self.name: str | None = None
        self.unit: str | None = None
        self.description: str | None = None
        self.catalogue_kinds: tuple[Kind, ...] | None = None
        if config.to is not None:
            entry = by_name(config.to)
            self.name, self.unit, self.description = (
                entry.otel_name(namespace),
                entry.unit,
                entry.help,
            )
            self.catalogue_kinds = (entry.kind,)
        elif config.rename is not None:
            self.name = config.rename.name
            self.unit = config.rename.unit
            self.description = config.rename.description
        self.derive = config.derive
        attrs = config.attributes
        #: the view only renames: the metric is changed in place, no point is touched
        self.in_place = attrs.is_identity and not self.point_filter and self.derive is None
        self.cache: dict[bytes, _Entry | None] = {}
        self.warned: set[str] = set()

    def matches(self, name: str, kind: str, scope: str, resource: Mapping[str, str]) -> bool:
        sel = self.config.select
        if sel.kind is not None and sel.kind != kind:
            return False
        if not self.instrument.match(name):
            return False
        if self.scope is not None and not self.scope.match(scope):
            return False
        for key, pattern in self.resource:
            value = resource.get(key)
            if value is None or not pattern.match(value):
                return False
        return True

    def entry(self, key: bytes, p: Any) -> _Entry | None:
        """The output attributes (and rate) for a point whose attribute bytes are `key`."""
        cache = self.cache
        if key in cache:
            return cache[key]
        incoming = {kv.key: attribute_string(kv.value) for kv in p.attributes}
        result = self._compute(incoming)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = result
        return result

    def _compute(self, incoming: dict[str, str]) -> _Entry | None:
        for key, pattern in self.point_filter:
            value = incoming.get(key)
            if value is None or not pattern.match(value):
                return None
        rate = 1.0
        if self.derive is not None and self.derive.rate is not None:
            table = self.derive.rate
            found = table.rates.get(incoming.get(table.attribute, ""))
            if found is None:
                if table.default is None:
                    return None
                found = table.default
            rate = found
        attrs = self.config.attributes
        if attrs.keep is not None:
            keys: Iterable[str] = attrs.keep
        else:
            drop = attrs.drop
            keys = [k for k in incoming if k not in drop]
        kvs = []
        for key in keys:
            value = incoming.get(key)
            mapping = attrs.values.get(key)
            if mapping is not None:
                value = _map_value(mapping, value)
            if value is None:
                continue
            kvs.append(_kv_bytes(attrs.rename.get(key, key), value))
        return _Entry(kvs, rate)


def _map_value(mapping: ValueMapping, value: str | None) -> str | None:
    if value is None or value == "":
        return mapping.default
    if mapping.function == "status_class":
        value = _status_class(value)
    elif mapping.function == "lower":
        value = value.lower()
    elif mapping.function == "upper":
        value = value.upper()
    mapped = mapping.map.get(value)
    if mapped is not None:
        return mapped
    return mapping.other if mapping.other is not None else value


class _NumberGroup:
    __slots__ = ("entry", "is_int", "start", "time", "value")

    def __init__(self, entry: _Entry, start: int, time: int, value: float, is_int: bool) -> None:
        self.entry = entry
        self.start = start
        self.time = time
        self.value = value
        self.is_int = is_int


class _HistGroup:
    __slots__ = ("bounds", "count", "counts", "entry", "max", "min", "start", "sum", "time")

    def __init__(self, entry: _Entry, p: Any) -> None:
        self.entry = entry
        self.start = p.start_time_unix_nano
        self.time = p.time_unix_nano
        self.count = p.count
        self.sum = p.sum
        self.bounds = list(p.explicit_bounds)
        self.counts = list(p.bucket_counts)
        self.min: float | None = p.min if p.HasField("min") else None
        self.max: float | None = p.max if p.HasField("max") else None


class ViewProcessor:
    """Applies the views to each batch, in place; a pipeline `Processor`."""

    def __init__(self, views: Sequence[ViewConfig], *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._views = [_View(v, namespace) for v in views]
        self._uses_resource = any(v.resource for v in self._views)
        #: (resource bytes or b"", scope name, metric name, kind) -> views that apply
        self._plans: dict[tuple[bytes, str, str, str], tuple[_View, ...]] = {}
        self._resources: dict[bytes, dict[str, str]] = {}
        self.counters = ViewCounters()

    def process(self, batch: MetricsBatch) -> None:
        if not self._views:
            return
        plans = self._plans
        for rm in batch.request.resource_metrics:
            rkey = rm.resource.SerializeToString() if self._uses_resource else b""
            moved: list[metrics_pb2.Metric] = []
            for sm in rm.scope_metrics:
                scope = sm.scope.name
                metrics = sm.metrics
                todo: list[tuple[int, metrics_pb2.Metric, str, tuple[_View, ...]]] = []
                i = -1
                for m in metrics:
                    i += 1
                    kind = m.WhichOneof("data")
                    if kind is None:
                        continue
                    pkey = (rkey, scope, m.name, kind)
                    plan = plans.get(pkey)
                    if plan is None:
                        plan = plans[pkey] = self._plan(rm, rkey, scope, m.name, kind)
                    if plan:
                        todo.append((i, m, kind, plan))
                if todo:
                    self._apply(batch, sm, todo, moved)
            if moved:
                out = rm.scope_metrics.add()
                out.metrics.extend(moved)

    def _plan(self, rm: Any, rkey: bytes, scope: str, name: str, kind: str) -> tuple[_View, ...]:
        resource: dict[str, str] = {}
        if self._uses_resource:
            resource = self._resources.get(rkey) or {
                kv.key: attribute_string(kv.value) for kv in rm.resource.attributes
            }
            if len(self._resources) < _CACHE_LIMIT:
                self._resources[rkey] = resource
        out = []
        for view in self._views:
            if not view.matches(name, kind, scope, resource):
                continue
            if not self._supported(view, name, kind):
                continue
            out.append(view)
        return tuple(out)

    @staticmethod
    def _supported(view: _View, name: str, kind: str) -> bool:
        """A view that cannot apply to this metric is skipped (logged once), so the metric
        passes unchanged rather than being lost."""
        problem = None
        if view.derive is not None:
            need = "sum" if view.derive.value == "value" else "histogram"
            if kind != need:
                problem = f"derive.value {view.derive.value} needs a {need}, {name} is a {kind}"
        elif view.catalogue_kinds is not None and not set(view.catalogue_kinds) & set(
            _COMPATIBLE[kind]
        ):
            problem = f"{name} is a {kind}, catalogue {view.config.to} is not"
        elif not view.in_place and kind in ("exponential_histogram", "summary"):
            problem = f"{name}: attributes of a {kind} cannot be changed by a view"
        if problem is not None:
            if name not in view.warned:
                view.warned.add(name)
                log.warning("view %s skipped: %s", view.label, problem)
            return False
        return True

    def _apply(
        self,
        batch: MetricsBatch,
        sm: Any,
        todo: list[tuple[int, metrics_pb2.Metric, str, tuple[_View, ...]]],
        moved: list[metrics_pb2.Metric],
    ) -> None:
        """Replace the selected metrics of one scope by the views' outputs. Outputs that drop
        the scope stay here (with the scope cleared) when nothing in the scope keeps it, and
        otherwise move to a scope-less ScopeMetrics of the resource (`moved`)."""
        metrics = sm.metrics
        total = len(metrics)
        remove: list[int] = []
        in_place_scopeless: list[int] = []
        built_scopeless: list[metrics_pb2.Metric] = []
        built_keep: list[metrics_pb2.Metric] = []
        for index, m, kind, plan in todo:
            if len(plan) == 1 and plan[0].in_place:
                self._rename_in_place(plan[0], m)
                if plan[0].config.drop_scope:
                    in_place_scopeless.append(index)
                continue
            remove.append(index)
            for view in plan:
                out = self._build(view, m, kind)
                if out is not None:
                    (built_scopeless if view.config.drop_scope else built_keep).append(out)
        keeps_scope = total - len(remove) - len(in_place_scopeless) > 0 or built_keep
        if not keeps_scope:
            for index in reversed(remove):
                del metrics[index]
            metrics.extend(built_scopeless)
            sm.ClearField("scope")
            return
        moved.extend(self._copy(metrics[i]) for i in in_place_scopeless)
        moved.extend(built_scopeless)
        for index in sorted(remove + in_place_scopeless, reverse=True):
            del metrics[index]
        metrics.extend(built_keep)

    @staticmethod
    def _copy(m: metrics_pb2.Metric) -> metrics_pb2.Metric:
        c = metrics_pb2.Metric()
        c.CopyFrom(m)
        return c

    @staticmethod
    def _rename_in_place(view: _View, m: metrics_pb2.Metric) -> None:
        if view.name is not None:
            m.name = view.name
        if view.unit is not None:
            m.unit = view.unit
        if view.description is not None:
            m.description = view.description

    def _build(self, view: _View, m: metrics_pb2.Metric, kind: str) -> metrics_pb2.Metric | None:
        out = metrics_pb2.Metric(
            name=view.name if view.name is not None else m.name,
            unit=view.unit if view.unit is not None else m.unit,
            description=view.description if view.description is not None else m.description,
        )
        data = getattr(m, kind)
        temporality = getattr(data, "aggregation_temporality", _CUMULATIVE)
        derive = view.derive
        if derive is not None:
            if kind == "histogram":
                groups = self._derive_from_histogram(view, data.data_points, derive.value)
            else:
                groups = self._numbers(view, data.data_points)
                if derive.rate is not None:
                    for g in groups:
                        g.value *= g.entry.rate
                        g.is_int = False
            out.sum.is_monotonic = True
            out.sum.aggregation_temporality = temporality
            out.sum.MergeFromString(_number_points(groups))
        elif kind == "sum" or kind == "gauge":
            groups = self._numbers(view, data.data_points)
            target = getattr(out, kind)
            if kind == "sum":
                target.is_monotonic = data.is_monotonic
                target.aggregation_temporality = temporality
                if not groups:
                    return None
            target.MergeFromString(_number_points(groups))
        else:  # histogram
            hist = self._histograms(view, data.data_points)
            out.histogram.aggregation_temporality = temporality
            out.histogram.MergeFromString(_histogram_points(hist))
        kind_out = out.WhichOneof("data")
        if kind_out is None or not getattr(out, kind_out).data_points:
            return None
        return out

    def _numbers(self, view: _View, dps: Any) -> list[_NumberGroup]:
        groups: dict[bytes, _NumberGroup] = {}
        entry_for = view.entry
        for p in dps:
            e = entry_for(_number_key(p), p)
            if e is None:
                continue
            if p.flags & 1:  # no recorded value: nothing to add
                continue
            v = p.as_double or p.as_int
            g = groups.get(e.key)
            if g is None:
                groups[e.key] = _NumberGroup(
                    e, p.start_time_unix_nano, p.time_unix_nano, v, type(v) is int
                )
            else:
                g.value += v
                g.is_int = g.is_int and type(v) is int
                g.start = min(g.start, p.start_time_unix_nano)
                g.time = max(g.time, p.time_unix_nano)
        return list(groups.values())

    def _derive_from_histogram(self, view: _View, dps: Any, what: str) -> list[_NumberGroup]:
        groups: dict[bytes, _NumberGroup] = {}
        entry_for = view.entry
        count = what == "count"
        for p in dps:
            e = entry_for(_histogram_key(p), p)
            if e is None or p.flags & 1:
                continue
            if count:
                v: float = p.count
                is_int = e.rate == 1.0
                if not is_int:
                    v = v * e.rate
            else:
                v = p.sum * e.rate
                is_int = False
            g = groups.get(e.key)
            if g is None:
                groups[e.key] = _NumberGroup(e, p.start_time_unix_nano, p.time_unix_nano, v, is_int)
            else:
                g.value += v
                g.start = min(g.start, p.start_time_unix_nano)
                g.time = max(g.time, p.time_unix_nano)
        return list(groups.values())

    def _histograms(self, view: _View, dps: Any) -> list[_HistGroup]:
        groups: dict[bytes, _HistGroup] = {}
        entry_for = view.entry
        for p in dps:
            e = entry_for(_histogram_key(p), p)
            if e is None or p.flags & 1:
                continue
            g = groups.get(e.key)
            if g is None:
                groups[e.key] = _HistGroup(e, p)
                continue
            bounds = list(p.explicit_bounds)
            if bounds != g.bounds:
                # Buckets with other bounds cannot be added up: the point is left out.
                self.counters.drop("view_bounds_mismatch")
                continue
            g.counts = [a + b for a, b in zip(g.counts, p.bucket_counts, strict=True)]
            g.count += p.count
            g.sum += p.sum
            g.start = min(g.start, p.start_time_unix_nano)
            g.time = max(g.time, p.time_unix_nano)
            g.min = min(g.min, p.min) if g.min is not None and p.HasField("min") else None
            g.max = max(g.max, p.max) if g.max is not None and p.HasField("max") else None
        return list(groups.values())


def _number_points(groups: Iterable[_NumberGroup]) -> bytes:
    """Sum/Gauge `data_points` (field 1) as protobuf bytes."""
    parts = []
    for g in groups:
        body = (
            g.entry.number_attrs
            + b"\x11"
            + _Q.pack(g.start)
            + b"\x19"
            + _Q.pack(g.time)
            + (b"\x31" + _q.pack(int(g.value)) if g.is_int else b"\x21" + _D.pack(g.value))
        )
        parts.append(_field(0x0A, body))
    return b"".join(parts)


def _histogram_points(groups: Iterable[_HistGroup]) -> bytes:
    parts = []
    for g in groups:
        body = [
            g.entry.hist_attrs,
            b"\x11",
            _Q.pack(g.start),
            b"\x19",
            _Q.pack(g.time),
            b"\x21",
            _Q.pack(g.count),
            b"\x29",
            _D.pack(g.sum),
        ]
        if g.counts:
            body.append(_field(0x32, struct.pack(f"<{len(g.counts)}Q", *g.counts)))
        if g.bounds:
            body.append(_field(0x3A, struct.pack(f"<{len(g.bounds)}d", *g.bounds)))
        if g.min is not None:
            body.append(b"\x59" + _D.pack(g.min))
        if g.max is not None:
            body.append(b"\x61" + _D.pack(g.max))
        parts.append(_field(0x0A, b"".join(body)))
    return b"".join(parts)
