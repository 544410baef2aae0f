"""The state of one series of each kind, and the arithmetic of exponential histograms.

A series object holds its own point labels (rendered once, see `store`), its latest value or
buckets, and the times the store needs for delta-to-cumulative and staleness. Slots, because a
store holds hundreds of thousands of them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ExpHistogramSeries",
    "HistogramSeries",
    "NumberSeries",
    "SummarySeries",
    "merge_exponential",
    "set_exponential",
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


def set_exponential(s: ExpHistogramSeries, p: Any, pos: list[int], neg: list[int]) -> None:
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


def merge_exponential(s: ExpHistogramSeries, p: Any, pos: list[int], neg: list[int]) -> None:
    """Adds a delta point to the state, first bringing both to the smaller scale."""
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
