"""Exemplars of the OpenMetrics exposition: the most recent one of each counter series and of
each bucket of a classic (explicit-bucket) histogram, rendered once when it arrives.

An OTLP exemplar (a sampled measurement: value, time, trace and span ids, the measurement's
attributes the point's own attributes left out) becomes the OpenMetrics suffix written after
its sample:

    requests_total{route="/a"} 15 # {trace_id="5b8e..",span_id="0515.."} 1.0 1700000000.000000001

As the Collector's prometheusexporter (contrib v0.165.1, `convertExemplars`): `trace_id` and
`span_id` in lowercase hex, left out when absent or all zeros; value as a float; the exemplar's
own timestamp. Unlike it the gateway also writes the filtered attributes, as far as
OpenMetrics' limit of 128 characters for an exemplar's label names and values together allows
(the ids take 63 of them): attributes are taken in label-name order and one that does not fit
is left out, never the ids. (The Collector writes the ids only, so it never meets the limit.)
An attribute whose value would need escaping (a backslash, double quote or newline) is left out
too: OpenMetrics allows the escapes, but Prometheus 2.42 keeps them in an exemplar's stored
label values (a scraped `u\\"7` comes back from /api/v1/query_exemplars as `u\\"7`, not
`u"7`), and prometheus_client 0.26's parser rejects the whole exposition at an escaped quote in
an exemplar.

Which exemplar. A counter keeps the newest by time of its points' exemplars; a histogram bucket
the newest whose value falls in it (`le` is the smallest bound >= the value, as client_golang
places a const histogram's exemplars). A newer point without exemplars keeps the older one:
it is still the most recent exemplar of the series. (The Collector shows only the latest
point's exemplars; Prometheus ignores an exemplar it already stored, so keeping one costs a
scraper nothing.) An exemplar older than the one kept is ignored: Prometheus would refuse it
as out of order.

Left out: an exemplar with a NaN value (it names no bucket) or with a trace id that is not 16
bytes or a span id that is not 8 (OTLP's sizes; a longer one would break the label limit).
The point itself is kept either way.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, NamedTuple

from gateway.naming import sanitize_label_name
from gateway.pipeline.attributes import attribute_string

__all__ = ["MAX_LABEL_CHARS", "Exemplar", "bucket_exemplars", "exemplar_of", "in_bucket", "latest"]

#: OpenMetrics 1.0: "The combined length of the label names and values of an Exemplar's
#: LabelSet MUST NOT exceed 128 UTF-8 characters."
MAX_LABEL_CHARS = 128
_IDS = frozenset(("trace_id", "span_id"))


class Exemplar(NamedTuple):
    #: the exemplar's time_unix_nano (0: not given)
    time: int
    value: float
    #: what follows the sample on its line: ` # {labels} value [timestamp]`
    text: str


def _number(v: float) -> str:
    # v - v is 0 for every finite number, NaN for the infinities (NaN never gets here).
    return repr(v) if v - v == 0 else ("+Inf" if v > 0 else "-Inf")


def _labels(e: Any) -> str | None:
    """`trace_id="..",span_id="..",attr=".."` within the limit; None when an id is malformed."""
    parts: list[str] = []
    used = 0
    for name, raw, size in (("trace_id", e.trace_id, 16), ("span_id", e.span_id, 8)):
        if not raw.strip(b"\0"):
            continue  # absent (or all zeros: no trace)
        if len(raw) != size:
            return None
        parts.append(f'{name}="{raw.hex()}"')
        used += len(name) + 2 * size
    merged: dict[str, list[tuple[str, str]]] = {}
    for kv in e.filtered_attributes:
        name = sanitize_label_name(kv.key)
        if name in _IDS:
            name = "exported_" + name
        merged.setdefault(name, []).append((kv.key, attribute_string(kv.value)))
    for name, values in sorted(merged.items()):
        # Keys that sanitise alike are joined with `;`, as for a series' labels.
        text = values[0][1] if len(values) == 1 else ";".join(v for _, v in sorted(values))
        size = len(name) + len(text)
        if used + size > MAX_LABEL_CHARS or "\\" in text or '"' in text or "\n" in text:
            continue
        used += size
        parts.append(f'{name}="{text}"')
    return ",".join(parts)


def exemplar_of(e: Any) -> Exemplar | None:
    """One OTLP `Exemplar` as the exposition writes it; None when it is left out (see the
    module docstring)."""
    value = _value(e)
    if value != value:
        return None
    labels = _labels(e)
    if labels is None:
        return None
    t = e.time_unix_nano
    # Seconds with every nanosecond digit: a float of the nanoseconds would round them.
    stamp = f" {t // 1_000_000_000}.{t % 1_000_000_000:09d}" if t else ""
    return Exemplar(t, value, f" # {{{labels}}} {_number(value)}{stamp}")


def _value(e: Any) -> float:
    return float(e.as_int) if e.WhichOneof("value") == "as_int" else float(e.as_double)


def latest(exemplars: Sequence[Any], since: int = -1) -> Exemplar | None:
    """The newest of a point's exemplars that the exposition can write (the last of equals),
    None when there is none at `since` or later. Chosen by time before it is rendered, so a
    point with many exemplars costs one rendering, not one each."""
    if len(exemplars) == 1:  # the usual case (one per point, or one per bucket)
        e = exemplars[0]
        return exemplar_of(e) if e.time_unix_nano >= since else None
    by_time = sorted((e.time_unix_nano, k) for k, e in enumerate(exemplars))
    for t, k in reversed(by_time):
        if t < since:
            return None
        ex = exemplar_of(exemplars[k])
        if ex is not None:
            return ex
    return None


def bucket_exemplars(
    kept: list[Exemplar | None] | None, bounds: Sequence[float], exemplars: Sequence[Any]
) -> list[Exemplar | None]:
    """`kept` (one slot per bucket, `+Inf` last) updated with a point's exemplars: the newest
    whose value falls in a bucket replaces an older one there (rendered only then). Bounds of
    another count start the slots afresh."""
    n = len(bounds) + 1
    slots: list[Exemplar | None] = kept if kept is not None and len(kept) == n else [None] * n
    by_bucket: dict[int, list[Any]] = {}
    for e in exemplars:
        value = _value(e)
        if value == value:  # NaN names no bucket
            by_bucket.setdefault(bisect_left(bounds, value), []).append(e)
    for i, candidates in by_bucket.items():
        old = slots[i]
        ex = latest(candidates, old.time if old is not None else -1)
        if ex is not None:
            slots[i] = ex
    return slots


def in_bucket(ex: Exemplar, bounds: Sequence[float], i: int) -> bool:
    """Whether `ex` belongs to bucket `i` under `bounds`: a series whose bounds changed (to
    as many) keeps its slots, and an exemplar is written only where its value still falls."""
    return bisect_left(bounds, ex.value) == i
