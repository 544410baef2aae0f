"""Renders a `SeriesStore` as Prometheus text format 0.0.4 or OpenMetrics 1.0.

Label sets are rendered once, when a series is created, and kept as strings; a scrape only
joins them with the current values. That is why rendering costs a fraction of
`prometheus_client.generate_latest`, which formats every label of every sample on every scrape.

Exponential histograms are exposed as classic histograms: each populated bucket becomes an
`le` bucket at its upper boundary (`base ** (index + 1)`, `base = 2 ** 2 ** -scale`), the zero
bucket sits at `le=zero_threshold`, negative buckets below it. Prometheus 2.42 (Debian's) can
only ingest native histograms over its protobuf scrape format, which this exporter does not
speak; over OTLP the exponential histograms are forwarded intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    """One exposition of one or more stores (whose family names must not overlap)."""
    if isinstance(stores, SeriesStore):
        stores = (stores,)
    out: list[str] = []
    infos: list[str] = []
    for store in stores:
        for family in store.families():
            _render_family(out, family, openmetrics)
        infos.extend(store.target_infos())
    if infos:
        if openmetrics:
            out.append("# HELP target Target metadata\n# TYPE target info\n")
        else:
            out.append("# HELP target_info Target metadata\n# TYPE target_info gauge\n")
        out.extend([f"target_info{{{labels}}} 1\n" for labels in infos])
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out).encode()


def _render_family(out: list[str], family: Family, openmetrics: bool) -> None:
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
        for stream in family.streams:
            head = f"{name}{{{stream.prefix}"
            out.extend([f"{head}{s.labels}}} {fmt(s.value)}\n" for s in stream.by_labels.values()])
    elif kind == "histogram":
        for stream in family.streams:
            for s in stream.by_labels.values():
                if hasattr(s, "bounds"):
                    _classic(out, name, stream.prefix + s.labels, s)
                else:
                    _exponential(out, name, stream.prefix + s.labels, s, openmetrics)
    else:
        for stream in family.streams:
            for s in stream.by_labels.values():
                labels = stream.prefix + s.labels
                for q, v in s.quantiles:
                    out.append(f"{name}{_labels(labels, f'quantile={chr(34)}{q!r}{chr(34)}')}")
                    out.append(f" {_fmt(v)}\n")
                out.append(f"{name}_sum{{{labels}}} {_fmt(s.sum)}\n")
                out.append(f"{name}_count{{{labels}}} {s.count}\n")


def _classic(out: list[str], name: str, labels: str, s: Any) -> None:
    acc = 0
    bucket = f"{name}_bucket{{{labels}," if labels else f"{name}_bucket{{"
    for bound, count in zip(s.bounds, s.counts, strict=False):
        acc += count
        out.append(f'{bucket}le="{_fmt(bound)}"}} {acc}\n')
    out.append(f'{bucket}le="+Inf"}} {s.count}\n')
    out.append(f"{name}_sum{{{labels}}} {_fmt(s.sum)}\n")
    out.append(f"{name}_count{{{labels}}} {s.count}\n")


def _exponential(out: list[str], name: str, labels: str, s: Any, openmetrics: bool) -> None:
    """Only populated buckets are written: an empty bucket adds nothing to the cumulative
    counts, and an exponential histogram can have 160 of them."""
    bucket = f"{name}_bucket{{{labels}," if labels else f"{name}_bucket{{"
    acc = 0
    exponent = 2.0**-s.scale
    negative_seen = False
    # Negative buckets, most negative first: index i covers [-base**(i+1), -base**i).
    for i in range(len(s.negative) - 1, -1, -1):
        if s.negative[i]:
            acc += s.negative[i]
            negative_seen = True
            upper = -(2.0 ** ((s.neg_offset + i) * exponent))
            out.append(f'{bucket}le="{_fmt(upper)}"}} {acc}\n')
    if s.zero_count or negative_seen:
        acc += s.zero_count
        out.append(f'{bucket}le="{_fmt(float(s.zero_threshold))}"}} {acc}\n')
    for i, count in enumerate(s.positive):
        if count:
            acc += count
            upper = 2.0 ** ((s.pos_offset + i + 1) * exponent)
            out.append(f'{bucket}le="{_fmt(upper)}"}} {acc}\n')
    out.append(f'{bucket}le="+Inf"}} {s.count}\n')
    if not (openmetrics and negative_seen):
        # OpenMetrics forbids _sum on a histogram with negative buckets.
        out.append(f"{name}_sum{{{labels}}} {_fmt(s.sum)}\n")
    out.append(f"{name}_count{{{labels}}} {s.count}\n")
