"""The state of one series of each kind, and the arithmetic of exponential histograms.

A series object holds its own point labels (rendered once, see `store`), its latest value or
buckets, and the times the store needs for delta-to-cumulative and staleness. Slots, because a
store holds hundreds of thousands of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXPONENTIAL",
    "HISTOGRAM",
    "SUMMARY",
    "ExpHistogramSeries",
    "HistogramSeries",
    "Kind",
    "NumberSeries",
    "Series",
    "SummarySeries",
]


class NumberSeries:
    __slots__ = ("labels", "start", "time", "updated", "value")

    def __init__(self, labels: str) -> None:
        self.labels = labels
        self.value: float = 0.0
        self.start = 0
        self.time = 0
        self.updated = 0.0


class HistogramSeries:
    __slots__ = ("bounds", "count", "counts", "labels", "start", "sum", "time", "updated")

    def __init__(self, labels: str) -> None:
        self.labels = labels
        self.bounds: list[float] = []
        self.counts: list[int] = []
        self.count = 0
        self.sum = 0.0
        self.start = 0
        self.time = 0
        self.updated = 0.0


class ExpHistogramSeries:
    """Exponential histogram state; exposed as classic buckets (see exposition)."""

    __slots__ = (
        "count",
        "labels",
        "neg_offset",
        "negative",
        "pos_offset",
        "positive",
        "scale",
        "start",
        "sum",
        "time",
        "updated",
        "zero_count",
        "zero_threshold",
    )

    def __init__(self, labels: str) -> None:
        self.labels = labels
        self.scale = 0
        self.zero_count = 0
        self.zero_threshold = 0.0
        self.pos_offset = 0
        self.positive: list[int] = []
        self.neg_offset = 0
        self.negative: list[int] = []
        self.count = 0
        self.sum = 0.0
        self.start = 0
        self.time = 0
        self.updated = 0.0


class SummarySeries:
    __slots__ = ("count", "labels", "quantiles", "start", "sum", "time", "updated")

    def __init__(self, labels: str) -> None:
        self.labels = labels
        self.quantiles: list[tuple[float, float]] = []
        self.count = 0
        self.sum = 0.0
        self.start = 0
        self.time = 0
        self.updated = 0.0


#: what a stream's label index holds (an overflowed series' member is in its key index only)
Series = NumberSeries | HistogramSeries | ExpHistogramSeries | SummarySeries


def set_exponential(s: ExpHistogramSeries, p: Any, state: tuple[list[int], list[int]]) -> None:
    pos, neg = state
    s.scale, s.zero_count, s.zero_threshold = p.scale, p.zero_count, p.zero_threshold
    s.pos_offset, s.positive = p.positive.offset, pos
    s.neg_offset, s.negative = p.negative.offset, neg
    s.count, s.sum = p.count, p.sum


def _downscale(offset: int, counts: list[int], by: int) -> tuple[int, list[int]]:
    """Buckets at scale k -> scale k - by: index i becomes i >> by."""
    if by == 0 or not counts:
        return offset, counts
    new_offset = offset >> by
    out: list[int] = [0] * (((offset + len(counts) - 1) >> by) - new_offset + 1)
    for i, c in enumerate(counts):
        out[((offset + i) >> by) - new_offset] += c
    return new_offset, out


def _add_buckets(a_off: int, a: list[int], b_off: int, b: list[int]) -> tuple[int, list[int]]:
    if not a:
        return b_off, list(b)
    if not b:
        return a_off, a
    lo = min(a_off, b_off)
    hi = max(a_off + len(a), b_off + len(b))
    out = [0] * (hi - lo)
    for i, c in enumerate(a):
        out[a_off - lo + i] += c
    for i, c in enumerate(b):
        out[b_off - lo + i] += c
    return lo, out


def merge_exponential(s: ExpHistogramSeries, p: Any, state: tuple[list[int], list[int]]) -> bool:
    """Adds a delta point to the state, first bringing both to the smaller scale."""
    pos, neg = state
    scale = min(s.scale, p.scale)
    s_pos = _downscale(s.pos_offset, s.positive, s.scale - scale)
    s_neg = _downscale(s.neg_offset, s.negative, s.scale - scale)
    p_pos = _downscale(p.positive.offset, pos, p.scale - scale)
    p_neg = _downscale(p.negative.offset, neg, p.scale - scale)
    s.pos_offset, s.positive = _add_buckets(*s_pos, *p_pos)
    s.neg_offset, s.negative = _add_buckets(*s_neg, *p_neg)
    s.scale = scale
    s.zero_count += p.zero_count
    s.zero_threshold = max(s.zero_threshold, p.zero_threshold)
    s.count += p.count
    s.sum += p.sum
    return True


# ---------------------------------------------------------------------------- kinds
#
# What the store needs to know of each structured kind: how to check a point (a message, or
# the decoded state to keep), how to take a cumulative point, and how to add a delta point
# (False: it cannot be added, the series restarts from it).


@dataclass(frozen=True, slots=True)
class Kind:
    factory: type
    check: Callable[[Any], tuple[str | None, Any]]
    set: Callable[[Any, Any, Any], None]
    merge: Callable[[Any, Any, Any], bool]


def _check_histogram(p: Any) -> tuple[str | None, Any]:
    bounds = list(p.explicit_bounds)
    counts = list(p.bucket_counts)
    if counts and len(counts) != len(bounds) + 1:
        return "invalid histogram: bucket_counts needs len(explicit_bounds)+1", None
    if any(b >= a for a, b in zip(bounds[1:], bounds, strict=False)) or any(
        not math.isfinite(x) for x in bounds
    ):
        return "invalid histogram: explicit_bounds must be finite and increasing", None
    if counts and sum(counts) != p.count:
        return "invalid histogram: count differs from the sum of bucket_counts", None
    return None, (bounds, counts)


def _set_histogram(s: HistogramSeries, p: Any, state: tuple[list[float], list[int]]) -> None:
    s.bounds, s.counts = state
    s.count, s.sum = p.count, p.sum


def _merge_histogram(s: HistogramSeries, p: Any, state: tuple[list[float], list[int]]) -> bool:
    bounds, counts = state
    if s.bounds != bounds:
        return False
    s.counts = [a + b for a, b in zip(s.counts, counts, strict=True)]
    s.count += p.count
    s.sum += p.sum
    return True


def _check_exponential(p: Any) -> tuple[str | None, Any]:
    if not -10 <= p.scale <= 20:
        return "invalid exponential histogram: scale outside -10..20", None
    pos, neg = list(p.positive.bucket_counts), list(p.negative.bucket_counts)
    if p.count != p.zero_count + sum(pos) + sum(neg):
        return "invalid exponential histogram: count differs from the buckets' sum", None
    return None, (pos, neg)


def _check_summary(p: Any) -> tuple[str | None, Any]:
    quantiles = [(q.quantile, q.value) for q in p.quantile_values]
    if any(not 0.0 <= q <= 1.0 for q, _ in quantiles):
        return "invalid summary: quantile outside 0..1", None
    if len({q for q, _ in quantiles}) != len(quantiles):
        return "invalid summary: a quantile appears twice", None
    return None, quantiles


def _set_summary(s: SummarySeries, p: Any, quantiles: list[tuple[float, float]]) -> None:
    s.quantiles, s.count, s.sum = quantiles, p.count, p.sum


def _never(s: Any, p: Any, state: Any) -> bool:
    return False  # OTLP summaries have no temporality: every point is the whole state


HISTOGRAM = Kind(HistogramSeries, _check_histogram, _set_histogram, _merge_histogram)
EXPONENTIAL = Kind(ExpHistogramSeries, _check_exponential, set_exponential, merge_exponential)
SUMMARY = Kind(SummarySeries, _check_summary, _set_summary, _never)
