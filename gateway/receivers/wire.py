"""`check_shape`: counts the containers of a protobuf OTLP metrics request on the wire, before
it is parsed, and refuses a request with too many of them.

Why before parsing: protobuf's parser turns each nested message into an object of its own, so a
body of empty containers costs far more memory than its size (a 20 MiB body of ten million
empty `ResourceMetrics`, the two bytes `0a 00` repeated, took 726 MiB and 1.3 s to parse, then
33 s to walk on the event loop). Counting them first keeps that work bounded by the limits.

Why by hand: no protobuf runtime exposes "count the entries of a repeated field without building
them". The scan reads only tags and lengths and skips over everything else; it stops as soon as a
limit is passed, so its cost is bounded by the limits, not by the body. Most requests never
reach it: every resource and every data point starts with the byte 0x0a (field 1,
length-delimited) and every scope and metric with 0x12 (field 2), so when a body holds fewer of
those bytes than the limits, no limit can be passed and the scan is skipped (`bytes.count` runs
at memory speed).

Wire layout (opentelemetry-proto, metrics v1):

    ExportMetricsServiceRequest  1: ResourceMetrics (repeated)
    ResourceMetrics              2: ScopeMetrics (repeated)
    ScopeMetrics                 2: Metric (repeated)
    Metric                       5 gauge, 7 sum, 9 histogram, 10 exponential_histogram,
                                 11 summary; in each, 1: data point (repeated)

A singular message field sent twice is merged by the parser, so every occurrence is counted.
A body the scan cannot read (truncated, bad varint) is left to the parser, which refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gateway.errors import PermanentError

__all__ = ["Shape", "ShapeLimits", "check_shape"]

_LEN = 2
_DATA_FIELDS = frozenset((5, 7, 9, 10, 11))


@dataclass(frozen=True, slots=True)
class ShapeLimits:
    """Most containers one request may hold, over the whole request (0: no limit)."""

    resources: int
    scopes: int
    metrics: int
    points: int


@dataclass(slots=True)
class Shape:
    """What a scan counted (up to the first limit passed)."""

    resources: int = 0
    scopes: int = 0
    metrics: int = 0
    points: int = 0


class _Unreadable(Exception):
    """The body is not valid protobuf: the parser will say so."""


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if i >= end or shift > 63:
            raise _Unreadable
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field in buf[start:end]; other
    fields are skipped. A generator, so that a scan past a limit stops there."""
    i = start
    while i < end:
        tag, i = _varint(buf, i, end)
        wire = tag & 7
        if wire == _LEN:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise _Unreadable
            yield tag >> 3, i, i + n
            i += n
        elif wire == 0:
            _, i = _varint(buf, i, end)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:  # groups (3, 4) are not OTLP; 6 and 7 do not exist
            raise _Unreadable
    if i > end:
        raise _Unreadable


def _over(what: str, limit: int, key: str) -> PermanentError:
    return PermanentError(
        f"request carries more than {limit} {what}, the limit (limits.{key}); split it"
    )


def check_shape(body: bytes, limits: ShapeLimits) -> Shape | None:
    """Raise `PermanentError` (HTTP 400, gRPC INVALID_ARGUMENT) if the serialized request
    `body` holds more resources, scopes, metrics or data points than `limits` allow. Returns
    what it counted, or None when the quick byte count showed that no limit can be reached.

    Example: with `resources=2`, the body `0a 00 0a 00 0a 00` (three empty ResourceMetrics)
    is refused after the third tag, without parsing anything.
    """
    big = 1 << 62
    lim_r = limits.resources or big
    lim_s = limits.scopes or big
    lim_m = limits.metrics or big
    lim_p = limits.points or big
    ones = body.count(b"\x0a")
    count_points = ones > lim_p
    if not count_points and ones <= lim_r and body.count(b"\x12") <= min(lim_s, lim_m):
        return None
    shape = Shape()
    try:
        for field, rs, re_ in _fields(body, 0, len(body)):
            if field != 1:
                continue
            shape.resources += 1
            if shape.resources > lim_r:
                raise _over("resources", lim_r, "max_resources_per_request")
            for field2, ss, se in _fields(body, rs, re_):
                if field2 != 2:
                    continue
                shape.scopes += 1
                if shape.scopes > lim_s:
                    raise _over("scopes", lim_s, "max_scopes_per_request")
                for field3, ms, me in _fields(body, ss, se):
                    if field3 != 2:
                        continue
                    shape.metrics += 1
                    if shape.metrics > lim_m:
                        raise _over("metrics", lim_m, "max_metrics_per_request")
                    if not count_points:
                        continue
                    for field4, ds, de in _fields(body, ms, me):
                        if field4 not in _DATA_FIELDS:
                            continue
                        for field5, _, _ in _fields(body, ds, de):
                            if field5 == 1:
                                shape.points += 1
                                if shape.points > lim_p:
                                    raise _over("data points", lim_p, "max_points_per_request")
    except _Unreadable:
        pass
    return shape
