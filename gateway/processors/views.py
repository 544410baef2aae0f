"""Views: turn what services emit (OpenTelemetry semantic-convention names) into the catalogue.

A view selects instruments (name glob, kind, scope, resource attributes), and makes one output
metric from each: renamed (to a catalogue entry, whose name, unit and help it takes, or to an
explicit name and unit), with attributes kept, dropped, renamed and their values mapped, points
that become equal summed ("aggregated away"), and optionally a derived value (a histogram's
count or sum, times a rate chosen by an attribute). As with the OpenTelemetry SDK's views, an
instrument that any view selects is replaced by the views' outputs; the others pass unchanged
(and so do the points a view's attribute selector leaves out).
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
    #: point attributes that must match (globs); the metric's other points stay as they were
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


_NO_RATE = -1.0  # an entry's rate when the rate table has none for the point
_CACHE_LIMIT = 50_000  # attribute sets remembered per view; beyond it the cache starts over
_FIXED_TAGS = frozenset((0x11, 0x19, 0x21, 0x31))  # NumberDataPoint fixed fields (store.py)
_EXEMPLARS_TAG = 0x2A
_FLAGS_TAG = 0x40
_HIST_FIXED_TAGS = frozenset((0x11, 0x19, 0x21, 0x29))  # start, time, count, sum
_NUMBER_ATTR_TAG = 0x3A  # NumberDataPoint.attributes = 7
_HIST_ATTR_TAG = 0x4A  # HistogramDataPoint.attributes = 9
_HIST_EXEMPLARS_TAG = 0x42  # HistogramDataPoint.exemplars = 8
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


# A point read once for all the views on its metric: the point, its attribute key (bytes that
# are equal exactly when the attributes are), the serialized fields in front of the attributes
# (`head`: times and values, or None when the point must be read field by field), and for
# histograms the fields behind them (`tail`: min, max, flags).
_Decoded = tuple[Any, bytes, bytes | None, bytes]


def _slow_key(p: Any) -> bytes:
    q = metrics_pb2.NumberDataPoint()
    q.attributes.extend(p.attributes)
    out: bytes = q.SerializeToString()
    return out


def _decode_numbers(dps: Any) -> list[_Decoded]:
    """The store's trick: serialize, and the fixed-size fields in front are the value; what
    follows is the attributes. Exemplars (in front of the attributes) and flags (behind)
    take the slow path."""
    out: list[_Decoded] = []
    fixed = _FIXED_TAGS
    for p in dps:
        b: bytes = p.SerializeToString()
        n = len(b)
        j = 0
        while j < n and b[j] in fixed:
            j += 9
        key = b[j:]
        if key and (key[0] == _EXEMPLARS_TAG or (n > 1 and b[-2] == _FLAGS_TAG)):
            out.append((p, _slow_key(p), None, b""))
        else:
            out.append((p, key, b[:j], b""))
    return out


def _decode_histograms(dps: Any) -> list[_Decoded]:
    """Serialize; the fields in front of the attributes (start, time, count, sum, packed bucket
    counts and bounds) are the head, the attributes the key, min/max/flags behind them the
    tail. The usual layout (every field set, short packed fields) is read without a loop."""
    out: list[_Decoded] = []
    fixed = _HIST_FIXED_TAGS
    for p in dps:
        b: bytes = p.SerializeToString()
        n = len(b)
        if (
            n > 38
            and b[0] == 0x11
            and b[9] == 0x19
            and b[18] == 0x21
            and b[27] == 0x29
            and b[36] == 0x32
            and b[37] < 0x80
        ):
            j = 38 + b[37]
            if j + 1 < n and b[j] == 0x3A and b[j + 1] < 0x80:
                j += 2 + b[j + 1]
        else:
            j = 0
            while j < n:
                tag = b[j]
                if tag in fixed:
                    j += 9
                elif tag == 0x32 or tag == 0x3A:
                    length, j = _read_varint(b, j + 1)
                    j += length
                else:
                    break
        if j < n and b[j] == _HIST_EXEMPLARS_TAG:
            out.append((p, _slow_key(p), None, b""))  # exemplars: the slow, sure way
            continue
        k = j
        while k < n and b[k] == _HIST_ATTR_TAG:
            length = b[k + 1]
            if length < 0x80:
                k += 2 + length
            else:
                length, k = _read_varint(b, k + 1)
                k += length
        out.append((p, b[j:k], b[:j], b[k:]))
    return out


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
        #: attribute key -> outcome, one cache per kind of point (number or histogram: their
        #: keys are different encodings)
        self.caches: dict[bool, dict[bytes, _Entry | None]] = {False: {}, True: {}}
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

    def entry(self, cache: dict[bytes, _Entry | None], key: bytes, p: Any) -> _Entry | None:
        """The output attributes (and rate) for a point whose attribute bytes are `key`."""
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
                # No rate: the point is left out of this view (and counted), not guessed.
                found = _NO_RATE if table.default is None else table.default
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
                        if len(plans) >= _CACHE_LIMIT:
                            plans.clear()  # bounded: resources come and go (instance ids)
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
            dps = getattr(m, kind).data_points
            decoded = _decode_histograms(dps) if kind == "histogram" else _decode_numbers(dps)
            for view in plan:
                out = self._build(view, m, kind, decoded)
                if out is not None:
                    (built_scopeless if view.config.drop_scope else built_keep).append(out)
            if not _keep_unselected(plan, kind, dps, decoded):
                remove.append(index)
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

    def _build(
        self, view: _View, m: metrics_pb2.Metric, kind: str, decoded: list[_Decoded]
    ) -> metrics_pb2.Metric | None:
        data = getattr(m, kind)
        temporality = getattr(data, "aggregation_temporality", _CUMULATIVE)
        groups = _group(view, view.caches[kind == "histogram"], decoded, self.counters)
        if not groups:
            return None
        out = metrics_pb2.Metric(
            name=view.name if view.name is not None else m.name,
            unit=view.unit if view.unit is not None else m.unit,
            description=view.description if view.description is not None else m.description,
        )
        derive = view.derive
        if derive is not None:
            out.sum.is_monotonic = True
            out.sum.aggregation_temporality = temporality
            if kind == "histogram":
                payload = _derived_from_histograms(groups, derive.value == "count")
            else:
                payload = _numbers(groups, scale=derive.rate is not None)
            out.sum.MergeFromString(payload)
        elif kind == "sum" or kind == "gauge":
            target = getattr(out, kind)
            if kind == "sum":
                target.is_monotonic = data.is_monotonic
                target.aggregation_temporality = temporality
            target.MergeFromString(_numbers(groups, scale=False))
        else:
            out.histogram.aggregation_temporality = temporality
            out.histogram.MergeFromString(_histograms(groups, self.counters))
        return out


def _keep_unselected(plan: tuple[_View, ...], kind: str, dps: Any, decoded: list[_Decoded]) -> bool:
    """Views that select points by attribute take only those: the others stay in the source
    metric, unchanged. True when some remain (the source then stays, with just them)."""
    if not any(view.point_filter for view in plan):
        return False
    histogram = kind == "histogram"
    selected = [
        i
        for i, d in enumerate(decoded)
        if any(view.caches[histogram].get(d[1]) is not None for view in plan)
    ]
    if len(selected) == len(decoded):
        return False
    for i in reversed(selected):
        del dps[i]
    return True


def _group(
    view: _View, cache: dict[bytes, _Entry | None], decoded: list[_Decoded], counters: ViewCounters
) -> list[list[Any]]:
    """Points by output attribute set: [entry, (point, head, tail), ...] per group."""
    groups: dict[bytes, list[Any]] = {}
    entry_for = view.entry
    for d in decoded:
        key = d[1]
        e = cache[key] if key in cache else entry_for(cache, key, d[0])
        if e is None:
            continue
        if e.rate == _NO_RATE:
            counters.drop("view_no_rate")
            continue
        g = groups.get(e.key)
        if g is None:
            groups[e.key] = [e, d]
        else:
            g.append(d)
    return list(groups.values())


_HIST_HEAD = struct.Struct("<xQxQxQxd")  # start, time, count, sum with their tags: 36 bytes
_HIST_FIELDS = struct.Struct("<BQBQBQBd")  # the same, written with the tags
_NUMBER_HEAD = struct.Struct("<xQxQ")  # start, time with their tags: 18 bytes
_MIN_MAX = struct.Struct("<xdxd")
_COUNTS: dict[int, struct.Struct] = {}
_SMALL_VARINTS = [_varint(n) for n in range(4096)]


def _point(body: bytes) -> bytes:
    """One element of a `data_points` field (field 1, length-delimited)."""
    n = len(body)
    return b"\x0a" + (_SMALL_VARINTS[n] if n < 4096 else _varint(n)) + body


def _numbers(groups: list[list[Any]], *, scale: bool) -> bytes:
    """Sum/Gauge `data_points` (field 1) as protobuf bytes. A group of one point whose fields
    were read in one piece keeps them as they are; others are added up (and scaled)."""
    parts = []
    for g in groups:
        e: _Entry = g[0]
        if len(g) == 2 and not scale and g[1][2] is not None:
            parts.append(_point(e.number_attrs + g[1][2]))
            continue
        start = end = 0
        total: float = 0
        is_int = True
        any_point = False
        for p, _, head, _ in g[1:]:
            if head is not None and len(head) == 27:
                s, t = _NUMBER_HEAD.unpack_from(head)
                if head[18] == 0x31:
                    v: float = _q.unpack_from(head, 19)[0]
                else:
                    v = _D.unpack_from(head, 19)[0]
                    is_int = False
            else:
                if p.flags & 1:
                    continue
                s, t = p.start_time_unix_nano, p.time_unix_nano
                v = p.as_double or p.as_int
                is_int = is_int and type(v) is int
            total += v
            if not any_point:
                start, end, any_point = s, t, True
            else:
                start = s if s < start else start
                end = t if t > end else end
        if not any_point:
            continue
        if scale:
            value = b"\x21" + _D.pack(total * e.rate)
        elif is_int:
            value = b"\x31" + _q.pack(int(total))
        else:
            value = b"\x21" + _D.pack(total)
        parts.append(
            _point(e.number_attrs + b"\x11" + _Q.pack(start) + b"\x19" + _Q.pack(end) + value)
        )
    return b"".join(parts)


def _derived_from_histograms(groups: list[list[Any]], count: bool) -> bytes:
    """A counter point per group: the histograms' count, or their sum times the rate."""
    parts = []
    for g in groups:
        e: _Entry = g[0]
        rate = e.rate
        if len(g) == 2 and count and rate == 1.0:
            head = g[1][2]
            if head is not None and len(head) >= 27 and head[18] == 0x21 and head[0] == 0x11:
                # start and time as they are; the count's fixed64 is the as_int's sfixed64
                parts.append(_point(e.number_attrs + head[:18] + b"\x31" + head[19:27]))
                continue
        start = end = 0
        counted = 0
        total = 0.0
        any_point = False
        for p, _, head, _ in g[1:]:
            if head is not None and len(head) >= 36 and head[0] == 0x11 and head[27] == 0x29:
                s, t, c, sm = _HIST_HEAD.unpack_from(head)
            else:
                if p.flags & 1:
                    continue
                s, t, c, sm = p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum
            counted += c
            total += sm
            if not any_point:
                start, end, any_point = s, t, True
            else:
                start = s if s < start else start
                end = t if t > end else end
        if not any_point:
            continue
        if count and rate == 1.0:
            value = b"\x31" + _q.pack(counted)
        elif count:
            value = b"\x21" + _D.pack(counted * rate)
        else:
            value = b"\x21" + _D.pack(total * rate)
        parts.append(
            _point(e.number_attrs + b"\x11" + _Q.pack(start) + b"\x19" + _Q.pack(end) + value)
        )
    return b"".join(parts)


def _histograms(groups: list[list[Any]], counters: ViewCounters) -> bytes:
    """Histogram `data_points`: a group of one point keeps its serialized fields; others are
    added bucket by bucket (equal bounds only)."""
    parts = []
    for g in groups:
        e: _Entry = g[0]
        if len(g) == 2 and g[1][2] is not None:
            _, _, head, tail = g[1]
            parts.append(_point(e.hist_attrs + head + tail))
            continue
        merged = _merge_fast(g, counters)
        parts.append(_point(e.hist_attrs + merged) if merged else _merge_slow(g, counters))
    return b"".join(parts)


def _merge_fast(g: list[Any], counters: ViewCounters) -> bytes | None:
    """Adds up the group's points from their bytes; None when one has an unusual layout
    (a field left at its default, exemplars, flags): then they are read field by field."""
    columns = []
    tails = []
    bounds = b""
    counts_struct = None
    start = end = count = 0
    total = 0.0
    for _, _, head, tail in g[1:]:
        if head is None or (tail and tail[0] != 0x59 and tail[0] != 0x61):
            return None
        if len(head) < 38 or head[0] != 0x11 or head[9] != 0x19 or head[18] != 0x21:
            return None
        if head[27] != 0x29 or head[36] != 0x32 or head[37] >= 0x80:
            return None
        length = head[37]
        s, t, c, sm = _HIST_HEAD.unpack_from(head)
        if counts_struct is None:
            counts_struct = _COUNTS.get(length)
            if counts_struct is None:
                counts_struct = _COUNTS[length] = struct.Struct(f"<{length // 8}Q")
            bounds = head[38 + length :]
            start, end = s, t
        elif head[38 + length :] != bounds or length != counts_struct.size:
            # Buckets with other bounds cannot be added up: the point is left out.
            counters.drop("view_bounds_mismatch")
            continue
        columns.append(counts_struct.unpack_from(head, 38))
        tails.append(tail)
        count += c
        total += sm
        start = s if s < start else start
        end = t if t > end else end
    if counts_struct is None:
        return None
    out = (
        _HIST_FIELDS.pack(0x11, start, 0x19, end, 0x21, count, 0x29, total)
        + b"\x32"
        + bytes((counts_struct.size,))
        + counts_struct.pack(*map(sum, zip(*columns, strict=True)))
        + bounds
    )
    if all(len(tail) == 18 for tail in tails):  # every point has min and max
        lows, highs = zip(*[_MIN_MAX.unpack(tail) for tail in tails], strict=True)
        out += b"\x59" + _D.pack(min(lows)) + b"\x61" + _D.pack(max(highs))
    return out


def _merge_slow(g: list[Any], counters: ViewCounters) -> bytes:
    e: _Entry = g[0]
    members = [d[0] for d in g[1:] if not d[0].flags & 1]
    if not members:
        return b""
    first = members[0]
    bounds = list(first.explicit_bounds)
    counts = list(first.bucket_counts)
    count, total = first.count, first.sum
    start, end = first.start_time_unix_nano, first.time_unix_nano
    lo = first.min if first.HasField("min") else None
    hi = first.max if first.HasField("max") else None
    for p in members[1:]:
        if list(p.explicit_bounds) != bounds:
            counters.drop("view_bounds_mismatch")
            continue
        counts = [a + b for a, b in zip(counts, p.bucket_counts, strict=True)]
        count += p.count
        total += p.sum
        start = min(start, p.start_time_unix_nano)
        end = max(end, p.time_unix_nano)
        lo = min(lo, p.min) if lo is not None and p.HasField("min") else None
        hi = max(hi, p.max) if hi is not None and p.HasField("max") else None
    body = [
        e.hist_attrs,
        b"\x11",
        _Q.pack(start),
        b"\x19",
        _Q.pack(end),
        b"\x21",
        _Q.pack(count),
        b"\x29",
        _D.pack(total),
    ]
    if counts:
        body.append(_field(0x32, struct.pack(f"<{len(counts)}Q", *counts)))
    if bounds:
        body.append(_field(0x3A, struct.pack(f"<{len(bounds)}d", *bounds)))
    if lo is not None:
        body.append(b"\x59" + _D.pack(lo))
    if hi is not None:
        body.append(b"\x61" + _D.pack(hi))
    return _point(b"".join(body))
