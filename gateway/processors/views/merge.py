"""The output points of a view, written as protobuf bytes: each group of points that became the
same series is added up into one point (counts, sums, buckets; earliest start, latest time).

A group is `[outcome, decoded, decoded, ...]` (see `ViewState.group` and `wire.Decoded`). A group
of one point whose fields were read in one piece is copied as it is; others are unpacked from
their bytes, and read field by field only when their layout is unusual.

Worked example (two cumulative histogram points that differ only in a dropped attribute):

    {scheme=http}   start 1 s, time 10 s, count 2, sum 0.5, buckets [1, 1, 0], min 0.1, max 0.4
    {scheme=https}  start 3 s, time 10 s, count 1, sum 2.0, buckets [0, 0, 1], min 2.0, max 2.0

become one point: start 1 s, time 10 s, count 3, sum 2.5, buckets [1, 1, 1], min 0.1, max 2.0.
Points with other bucket bounds cannot be added: they are left out and counted.

Exemplars of histogram points are kept: the output point carries every exemplar of the points
added into it (equal bounds, so each still falls in its bucket), so that a catalogue histogram
still links its buckets to traces. Points with exemplars take the field-by-field way
(`wire.decode_histograms`), so the others pay nothing for this.
"""

from __future__ import annotations

import struct
from typing import Any

from gateway.pipeline.identity import HIST_EXEMPLARS_TAG
from gateway.processors.views.attributes import Outcome
from gateway.processors.views.counters import ViewCounters
from gateway.processors.views.wire import field, point

__all__ = ["derived_from_histograms", "histograms", "numbers"]

_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_D = struct.Struct("<d")
_HIST_HEAD = struct.Struct("<xQxQxQxd")  # start, time, count, sum with their tags: 36 bytes
_HIST_FIELDS = struct.Struct("<BQBQBQBd")  # the same, written with the tags
_NUMBER_HEAD = struct.Struct("<xQxQ")  # start, time with their tags: 18 bytes
_MIN_MAX = struct.Struct("<xdxd")
_COUNTS: dict[int, struct.Struct] = {}
# A group's span before its first point: any time is below the start and above the end.
_NO_START = 1 << 64
_NO_END = -1


def _number_point(attrs: bytes, start: int, end: int, value: bytes) -> bytes:
    """A NumberDataPoint: attributes, start, time and `value` (as_double or as_int, tagged)."""
    return point(attrs + b"\x11" + _Q.pack(start) + b"\x19" + _Q.pack(end) + value)


def numbers(groups: list[list[Any]], *, scale: bool) -> bytes:
    """Sum/Gauge `data_points` (field 1) as protobuf bytes. A group of one point whose fields
    were read in one piece keeps them as they are; others are added up (and scaled)."""
    parts = []
    for g in groups:
        e: Outcome = g[0]
        if len(g) == 2 and not scale and g[1][2] is not None:
            parts.append(point(e.number_attrs + g[1][2]))
            continue
        start, end = _NO_START, _NO_END
        total: float = 0
        is_int = True
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
            start = s if s < start else start
            end = t if t > end else end
        if end == _NO_END:  # every point was flagged "no recorded value"
            continue
        if scale:
            value = b"\x21" + _D.pack(total * e.rate)
        elif is_int:
            value = b"\x31" + _q.pack(int(total))
        else:
            value = b"\x21" + _D.pack(total)
        parts.append(_number_point(e.number_attrs, start, end, value))
    return b"".join(parts)


def derived_from_histograms(groups: list[list[Any]], count: bool) -> bytes:
    """A counter point per group: the histograms' count, or their sum times the rate."""
    parts = []
    for g in groups:
        e: Outcome = g[0]
        rate = e.rate
        if len(g) == 2 and count and rate == 1.0:
            head = g[1][2]
            if head is not None and len(head) >= 27 and head[18] == 0x21 and head[0] == 0x11:
                # start and time as they are; the count's fixed64 is the as_int's sfixed64
                parts.append(point(e.number_attrs + head[:18] + b"\x31" + head[19:27]))
                continue
        start, end = _NO_START, _NO_END
        counted = 0
        total = 0.0
        for p, _, head, _ in g[1:]:
            if head is not None and len(head) >= 36 and head[0] == 0x11 and head[27] == 0x29:
                s, t, c, sm = _HIST_HEAD.unpack_from(head)
            else:
                if p.flags & 1:
                    continue
                s, t, c, sm = p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum
            counted += c
            total += sm
            start = s if s < start else start
            end = t if t > end else end
        if end == _NO_END:  # every point was flagged "no recorded value"
            continue
        if count and rate == 1.0:
            value = b"\x31" + _q.pack(counted)
        elif count:
            value = b"\x21" + _D.pack(counted * rate)
        else:
            value = b"\x21" + _D.pack(total * rate)
        parts.append(_number_point(e.number_attrs, start, end, value))
    return b"".join(parts)


def histograms(groups: list[list[Any]], counters: ViewCounters) -> bytes:
    """Histogram `data_points`: a group of one point keeps its serialized fields; others are
    added bucket by bucket (equal bounds only)."""
    parts = []
    for g in groups:
        e: Outcome = g[0]
        if len(g) == 2 and g[1][2] is not None:
            _, _, head, tail = g[1]
            parts.append(point(e.hist_attrs + head + tail))
            continue
        merged = _merge_fast(g, counters)
        parts.append(point(e.hist_attrs + merged) if merged else _merge_slow(g, counters))
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
    e: Outcome = g[0]
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
    exemplars = list(first.exemplars)
    for p in members[1:]:
        if list(p.explicit_bounds) != bounds or len(p.bucket_counts) != len(counts):
            # Other bounds, or a point without (or with malformed) buckets: cannot be added up.
            counters.drop("view_bounds_mismatch")
            continue
        counts = [a + b for a, b in zip(counts, p.bucket_counts, strict=True)]
        count += p.count
        total += p.sum
        start = min(start, p.start_time_unix_nano)
        end = max(end, p.time_unix_nano)
        lo = min(lo, p.min) if lo is not None and p.HasField("min") else None
        hi = max(hi, p.max) if hi is not None and p.HasField("max") else None
        exemplars.extend(p.exemplars)
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
        body.append(field(0x32, struct.pack(f"<{len(counts)}Q", *counts)))
    if bounds:
        body.append(field(0x3A, struct.pack(f"<{len(bounds)}d", *bounds)))
    if lo is not None:
        body.append(b"\x59" + _D.pack(lo))
    if hi is not None:
        body.append(b"\x61" + _D.pack(hi))
    body.extend([field(HIST_EXEMPLARS_TAG, x.SerializeToString()) for x in exemplars])
    return point(b"".join(body))
