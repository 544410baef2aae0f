"""Renders a `SeriesStore` as Prometheus text format 0.0.4 or OpenMetrics 1.0.

Label sets are rendered once, when a series is created, and kept as strings; a scrape only
joins them with the current values. That is why rendering costs a fraction of
`prometheus_client.generate_latest`, which formats every label of every sample on every scrape.

Exponential histograms are exposed as classic histograms: each populated bucket becomes an
`le` bucket at its upper boundary (`base ** (index + 1)`, `base = 2 ** 2 ** -scale`), the zero
bucket sits at `le=zero_threshold`, negative buckets below it. Prometheus 2.42 (Debian's) can
only ingest native histograms over its protobuf scrape format, which this exporter does not
speak; over OTLP the exponential histograms are forwarded intact.

OpenMetrics is stricter than 0.0.4 about what a histogram or summary may say, and an OTLP point
may hold what it forbids: `_sum` is written only when it is a number >= 0 and no bucket is
negative (with `_count` beside it, which OpenMetrics requires to come in pairs; the `+Inf`
bucket still carries the count), and negative quantile values are left out. The 0.0.4 text
writes everything. The compatibility spec asks the same ("reported only if the sum is positive
and monotonic", quantile values "all being non-negative").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.exporters.prometheus.exemplars import Exemplar, in_bucket
from gateway.exporters.prometheus.floats import label_float
from gateway.exporters.prometheus.labels import escape_help
from gateway.exporters.prometheus.store import Family, SeriesStore

__all__ = ["OPENMETRICS_CONTENT_TYPE", "TEXT_CONTENT_TYPE", "render", "wants_openmetrics"]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def wants_openmetrics(accept: str | None) -> bool:
    """True when the Accept header asks for OpenMetrics (Prometheus sends it first)."""
    return bool(accept) and "application/openmetrics-text" in (accept or "")


def _special(v: float) -> str:
    if v != v:
        return "NaN"
    return "+Inf" if v > 0 else "-Inf"


def _fmt(v: float) -> str:
    # v - v is 0 for every finite number, NaN for infinities and NaN.
    return repr(v) if v - v == 0 else _special(v)


def _labels(labels: str, extra: str) -> str:
    return f"{{{labels},{extra}}}" if labels else f"{{{extra}}}"


def render(stores: SeriesStore | Sequence[SeriesStore], *, openmetrics: bool = False) -> bytes:
    """One exposition of one or more stores. A family name found in several stores (a
    service's series of a gateway self-metric, beside the gateway's own) is written once: one
    HELP/TYPE block, from the last store that has it, with the series of all; two blocks of one
    name make the exposition unparsable. The stores refuse a family of the same name and
    another type (`SeriesStore.reserve`)."""
    if isinstance(stores, SeriesStore):
        stores = (stores,)
    out: list[str] = []
    infos: list[str] = []
    groups: dict[str, list[Family]] = {}
    for store in stores:
        for family in store.families():
            groups.setdefault(family.name, []).append(family)
        infos.extend(store.target_infos())
    for group in groups.values():
        _render_family(out, group, openmetrics)
    # The gateway's own resource says the same in the data store (observers, health checks)
    # and in the self-metrics store: one target_info per label set, or the exposition would
    # carry a duplicate series.
    infos = list(dict.fromkeys(infos))
    if infos:
        if openmetrics:
            out.append("# HELP target Target metadata\n# TYPE target info\n")
        else:
            out.append("# HELP target_info Target metadata\n# TYPE target_info gauge\n")
        out.extend([f"target_info{{{labels}}} 1\n" for labels in infos])
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out).encode()


def _render_family(out: list[str], families: list[Family], openmetrics: bool) -> None:
    family = families[-1]
    streams = [s for f in families for s in f.streams.values()]
    name = family.name
    kind = family.kind
    meta_name = name
    if openmetrics and kind == "counter":
        meta_name = name.removesuffix("_total")
    if family.help:
        out.append(f"# HELP {meta_name} {escape_help(family.help)}\n")
    out.append(f"# TYPE {meta_name} {kind}\n")
    if openmetrics and family.unit and meta_name.endswith("_" + family.unit):
        out.append(f"# UNIT {meta_name} {family.unit}\n")
    if kind == "counter" or kind == "gauge":
        fmt = _fmt
        for stream in streams:
            head = f"{name}{{{stream.prefix}"
            kept = stream.exemplars if openmetrics else None
            if kept:
                _with_exemplars(out, head, stream.by_labels.values(), kept)
                continue
            out.extend([f"{head}{s.labels}}} {fmt(s.value)}\n" for s in stream.by_labels.values()])
    elif kind == "histogram":
        for stream in streams:
            kept = stream.exemplars if openmetrics else None
            for s in stream.by_labels.values():
                if hasattr(s, "bounds"):
                    slots = kept.get(s.labels) if kept else None
                    _classic(out, name, stream.prefix + s.labels, s, openmetrics, slots)
                else:
                    _exponential(out, name, stream.prefix + s.labels, s, openmetrics)
    else:
        for stream in streams:
            for s in stream.by_labels.values():
                labels = stream.prefix + s.labels
                for q, v in sorted(s.quantiles):
                    if openmetrics and v < 0:
                        continue
                    quantile = label_float(q, openmetrics=openmetrics)
                    out.append(f"{name}{_labels(labels, f'quantile={chr(34)}{quantile}{chr(34)}')}")
                    out.append(f" {_fmt(v)}\n")
                if not openmetrics or s.sum >= 0:
                    out.append(f"{name}_sum{{{labels}}} {_fmt(s.sum)}\n")
                out.append(f"{name}_count{{{labels}}} {s.count}\n")


def _with_exemplars(
    out: list[str], head: str, series: Iterable[Any], kept: dict[str, Exemplar]
) -> None:
    """Counter samples of a stream that has exemplars, each after its sample (OpenMetrics)."""
    for s in series:
        ex = kept.get(s.labels)
        tail = ex.text if ex is not None else ""
        out.append(f"{head}{s.labels}}} {_fmt(s.value)}{tail}\n")


def _sum_and_count(
    out: list[str], name: str, labels: str, s: Any, openmetrics: bool, negative: bool
) -> None:
    if openmetrics and (negative or not s.sum >= 0):
        return  # see the module docstring
    out.append(f"{name}_sum{{{labels}}} {_fmt(s.sum)}\n")
    out.append(f"{name}_count{{{labels}}} {s.count}\n")


def _classic(
    out: list[str],
    name: str,
    labels: str,
    s: Any,
    openmetrics: bool,
    exemplars: list[Exemplar | None] | None = None,
) -> None:
    """`exemplars`: the series' kept exemplars, one slot per bucket (OpenMetrics only)."""
    acc = 0
    bucket = f"{name}_bucket{{{labels}," if labels else f"{name}_bucket{{"
    if exemplars is not None:
        _classic_with_exemplars(out, bucket, s, exemplars)
    else:
        for bound, count in zip(s.bounds, s.counts, strict=False):
            acc += count
            out.append(f'{bucket}le="{label_float(bound, openmetrics=openmetrics)}"}} {acc}\n')
        out.append(f'{bucket}le="+Inf"}} {s.count}\n')
    _sum_and_count(out, name, labels, s, openmetrics, bool(s.bounds) and s.bounds[0] < 0)


def _classic_with_exemplars(
    out: list[str], bucket: str, s: Any, exemplars: list[Exemplar | None]
) -> None:
    bounds = s.bounds
    slots = exemplars if len(exemplars) == len(bounds) + 1 else [None] * (len(bounds) + 1)
    acc = 0
    for i, (bound, count) in enumerate(zip(bounds, s.counts, strict=False)):
        acc += count
        ex = slots[i]
        tail = ex.text if ex is not None and in_bucket(ex, bounds, i) else ""
        out.append(f'{bucket}le="{label_float(bound, openmetrics=True)}"}} {acc}{tail}\n')
    ex = slots[-1]
    tail = ex.text if ex is not None and in_bucket(ex, bounds, len(bounds)) else ""
    out.append(f'{bucket}le="+Inf"}} {s.count}{tail}\n')


def _power(exponent: float) -> float:
    """2 ** exponent, +inf past the largest float (Python raises instead)."""
    try:
        return float(2.0**exponent)
    except OverflowError:
        return math.inf


def _exponential(out: list[str], name: str, labels: str, s: Any, openmetrics: bool) -> None:
    """Only populated buckets are written: an empty bucket adds nothing to the cumulative
    counts, and an exponential histogram can have 160 of them.

    Bucket index i covers (base**i, base**(i+1)] on the positive side and [-base**(i+1),
    -base**i) on the negative side; its `le` is the upper end. At extreme scales and offsets
    those bounds round to 0, to one another or past the largest float, so the bounds are
    gathered, merged where equal and sorted: `le` values must increase, and a bound of +Inf
    is the `+Inf` bucket."""
    exponent = 2.0**-s.scale
    bounds: dict[float, int] = {}
    for i, count in enumerate(s.negative):
        if count:
            upper = -_power((s.neg_offset + i) * exponent) + 0.0  # + 0.0: never -0.0
            bounds[upper] = bounds.get(upper, 0) + count
    if s.zero_count or s.negative:
        zero = float(s.zero_threshold)
        bounds[zero] = bounds.get(zero, 0) + s.zero_count
    for i, count in enumerate(s.positive):
        if count:
            upper = _power((s.pos_offset + i + 1) * exponent)
            bounds[upper] = bounds.get(upper, 0) + count
    bucket = f"{name}_bucket{{{labels}," if labels else f"{name}_bucket{{"
    acc = 0
    negative = False
    for upper in sorted(bounds):
        if upper == math.inf:
            break
        acc += bounds[upper]
        negative = negative or upper < 0
        out.append(f'{bucket}le="{label_float(upper, openmetrics=openmetrics)}"}} {acc}\n')
    out.append(f'{bucket}le="+Inf"}} {s.count}\n')
    _sum_and_count(out, name, labels, s, openmetrics, negative)
