"""`check_shape`: counts the containers of a protobuf OTLP metrics request on the wire, before
it is parsed, and refuses a request with too many of them. `check_decoded` (at the end) bounds
the memory the parse may take from the same bytes.

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
A body the scan cannot read (truncated, bad varint) is left to the parser, which refuses it at
the same place; a group, which the parser would skip and go on, is refused here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from gateway.errors import PermanentError

__all__ = [
    "WORST_PER_BYTE",
    "Shape",
    "ShapeLimits",
    "check_decoded",
    "check_shape",
    "decoded_bound",
]

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
        elif wire == 3:
            # OTLP has no groups, but protobuf's parser keeps one as an unknown field and
            # parses what follows it: leaving the body to it would let a leading empty group
            # (`13 14`) carry any number of containers past the scan. Skipping it instead
            # would walk its content in Python, so it is refused.
            raise PermanentError("body holds a protobuf group (wire type 3), which OTLP never uses")
        else:  # an end of group without its start, or wire types 6 and 7: not protobuf
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


# ---------------------------------------------------------------------------------------------
# What parsing will cost

_CHUNK = 1 << 20
#: bytes the parser may take per body byte: strings and unknown fields are copied
_PER_BYTE = 2
#: margin over the model of a message's size (`_struct_bytes`): bench/parse_memory.py measured
#: upb taking 0.97-1.10x the model (a KeyValue 62 bytes, an Exemplar 93, an AnyValue 53, each
#: with its slot, the array's growth and the arena's blocks)
_MARGIN = 1.25


def _struct_bytes(message: Descriptor) -> int:
    """A model of upb's in-memory size of one `message`: a 16-byte header, a string view
    (16) per singular string or bytes field, 8 bytes for any other field (a number, a
    pointer to a sub-message or an array); a oneof holds its largest member."""
    size = 16
    oneofs: dict[str, int] = {}
    for f in message.fields:
        text = f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)
        width = 16 if text and not f.is_repeated else 8
        if f.containing_oneof is not None:
            name = f.containing_oneof.name
            oneofs[name] = max(oneofs.get(name, 0), width)
        else:
            size += width
    return size + sum(oneofs.values())


#: the containers whose number `check_shape` bounds (it runs first): data points and metrics
_COUNTED = {"data_points": "points", "metrics": "metrics"}


def _tag_costs() -> tuple[dict[int, int], dict[int, tuple[str, int]]]:
    """First tag byte -> the most memory a length-delimited field with that byte can take in
    any message of the OTLP metrics schema: a message (its size, plus 16 for its slot in a
    repeated field and that array's growth), or an element of a repeated string (32). Single
    strings and packed arrays cost their bytes (`_PER_BYTE`). Field numbers are below 16 in
    every message here, so each tag starts with one byte `field << 3 | 2`.

    Data points and metrics are left out of the first map and returned in the second, as
    tag -> (their `ShapeLimits` field, their largest cost): there are at most that many of
    them, so only that many of their tag bytes are charged their (larger) cost."""
    costs: dict[int, int] = {}
    counted: dict[int, tuple[str, int]] = {}
    seen: set[str] = set()
    todo = [ExportMetricsServiceRequest.DESCRIPTOR]
    while todo:
        message = todo.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        for f in message.fields:
            slot = 16 if f.is_repeated else 0
            if f.message_type is not None:
                todo.append(f.message_type)
                cost = _struct_bytes(f.message_type) + slot
            elif f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
                cost = 2 * slot
            else:
                continue
            if f.number >= 16:  # a two-byte tag: this scan would not see it
                raise AssertionError(f"{message.full_name}.{f.name}: field number >= 16")
            tag = (f.number << 3) | _LEN
            cost = int(cost * _MARGIN)
            if f.name in _COUNTED and f.is_repeated:
                what = _COUNTED[f.name]
                counted[tag] = (what, max(counted.get(tag, (what, 0))[1], cost))
            else:
                costs[tag] = max(costs.get(tag, 0), cost)
    return {tag: cost for tag, cost in costs.items() if cost}, counted


_TAG_COSTS, _COUNTED_COSTS = _tag_costs()
_NOT_TAGS = bytes(b for b in range(256) if b not in _TAG_COSTS and b not in _COUNTED_COSTS)
_MAX_TAG_COST = max(*_TAG_COSTS.values(), *(cost for _, cost in _COUNTED_COSTS.values()))
#: the most one body byte can cost: every second byte a tag (an empty message is two bytes)
WORST_PER_BYTE = _PER_BYTE + (_MAX_TAG_COST + 1) // 2


def decoded_bound(body: bytes, shape: ShapeLimits | None = None) -> int:
    """An upper bound on the bytes of memory protobuf's parser (upb) takes to parse `body` as
    an `ExportMetricsServiceRequest`, apart from `body` itself. `shape`: the container limits
    `check_shape` has enforced on `body` (its points and metrics limits cap how many tags are
    charged as data points and metrics); None: none.

    Why: a nested message costs the parser far more than its size on the wire. An empty
    KeyValue is two bytes (`3a 00`) and ~62 bytes in memory, an empty Exemplar (`2a 00`)
    ~93, so a 20 MiB body of them took 620-930 MiB (bench/parse_memory.py). No protobuf
    runtime says what a parse will cost before doing it, and a scan of the wire in Python
    costs more than the parse, so this counts, at memory speed (`bytes.translate` deletes
    every other byte, `bytes.count` counts), the bytes that could start a length-delimited
    field whose number is a message (or a repeated string) somewhere in the schema, and
    charges each the largest such thing that field number can be, plus `_PER_BYTE` a byte.

    Example: 1,000 empty attributes in a point, `3a 00` x 1,000, hold 1,000 bytes 0x3a
    (field 7: at most a KeyValue, 64 bytes modelled, 80 with the margin): 1,000 x 80 +
    2,000 x 2 = 84,000 bytes. Realistic bodies are bounded at a few times what they take,
    because a string's bytes are counted when they look like tags.

    Not covered: packed varints (an exponential histogram's `bucket_counts`, one byte a
    count on the wire, 8 in memory and array growth) take ~18x their bytes, which this
    does not see: at most ~366 MiB at the default 20 MiB body limit.
    """
    return _bound(body, 0, shape)


def _bound(body: bytes, limit: int, shape: ShapeLimits | None) -> int:
    """`decoded_bound`, or a larger bound that is still under `limit` (without counting each
    kind of tag: a realistic body usually fits under the limit at the largest cost each)."""
    tags = b"".join(
        body[start : start + _CHUNK].translate(None, _NOT_TAGS)
        for start in range(0, len(body), _CHUNK)
    )
    total = _PER_BYTE * len(body)
    rough = total + _MAX_TAG_COST * len(tags)
    if rough <= limit:
        return rough
    counts = {tag: tags.count(tag) for tag in _TAG_COSTS.keys() | _COUNTED_COSTS.keys()}
    for tag, cost in _TAG_COSTS.items():
        total += cost * counts[tag]
    for tag, (what, cost) in _COUNTED_COSTS.items():
        # each of these bytes is charged above as any other field it may start; up to the
        # limit's number of them, also what a point or metric costs more
        n = counts[tag]
        most = getattr(shape, what) if shape is not None else 0
        total += (cost - _TAG_COSTS.get(tag, 0)) * (min(n, most) if most else n)
    return total


def check_decoded(body: bytes, limit: int, shape: ShapeLimits | None = None) -> None:
    """Raise `PermanentError` (HTTP 413, gRPC RESOURCE_EXHAUSTED) if parsing `body` could
    take more than `limit` bytes of memory (`decoded_bound`, with `shape` the container
    limits `check_shape` has already enforced on it); 0: no limit. A body smaller
    than `limit / WORST_PER_BYTE` cannot, and is not scanned; one whose tags all fit under
    `limit` at the largest cost is not counted tag by tag."""
    if not limit or len(body) * WORST_PER_BYTE <= limit:
        return
    bound = _bound(body, limit, shape)
    if bound > limit:
        raise PermanentError(
            f"body of {len(body)} bytes could take up to {bound} bytes of memory to decode, "
            f"more than the limit of {limit} (limits.max_decoded_bytes): it holds many "
            "small nested messages (attributes, exemplars, array values); split it",
            http_status=413,
        )
