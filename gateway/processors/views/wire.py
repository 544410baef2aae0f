"""Points as protobuf bytes: read each one once for all the views on its metric, write outputs.

Why by hand: the views' cost is dominated by reading and building points, and the protobuf
library has no way to take a point's attributes as one comparable value or to write a point
from pieces. Serializing a point and splitting its bytes (`gateway.pipeline.identity`) gives both:
the attribute bytes are equal exactly when the attributes are, so they key the views' caches,
and the fixed-size fields in front of them (times, values, counts) are copied or unpacked with
`struct` instead of read field by field. Any unusual layout (a field left at its default,
exemplars, flags) falls back to the sure, slow way.

Worked example: a NumberDataPoint {start=1, time=2, as_int=5, attributes=[a="b"]} serializes as

    11 <8 bytes start> 19 <8 bytes time> 31 <8 bytes value> 3a 08 <KeyValue a="b">

so its head is the first 27 bytes and its key is the rest.
"""

from __future__ import annotations

from typing import Any

from gateway.pipeline.identity import (
    EXEMPLARS_TAG,
    FLAGS_TAG,
    HIST_ATTR_TAG,
    HIST_EXEMPLARS_TAG,
    HIST_FIXED_TAGS,
    NUMBER_ATTR_TAG,
    NUMBER_FIXED_TAGS,
    attributes_key,
)

__all__ = [
    "HIST_ATTR_TAG",
    "NUMBER_ATTR_TAG",
    "Decoded",
    "decode_histograms",
    "decode_numbers",
    "field",
    "point",
]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return bytes((tag,)) + _varint(len(payload)) + payload


_SMALL_VARINTS = [_varint(n) for n in range(4096)]


def point(body: bytes) -> bytes:
    """One element of a `data_points` field (field 1, length-delimited)."""
    n = len(body)
    return b"\x0a" + (_SMALL_VARINTS[n] if n < 4096 else _varint(n)) + body


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
Decoded = tuple[Any, bytes, bytes | None, bytes]


def decode_numbers(dps: Any) -> list[Decoded]:
    """The store's trick: serialize, and the fixed-size fields in front are the value; what
    follows is the attributes. Exemplars (in front of the attributes) and flags (behind)
    take the slow path."""
    out: list[Decoded] = []
    fixed = NUMBER_FIXED_TAGS
    for p in dps:
        b: bytes = p.SerializeToString()
        n = len(b)
        j = 0
        while j < n and b[j] in fixed:
            j += 9
        key = b[j:]
        if key and (key[0] == EXEMPLARS_TAG or (n > 1 and b[-2] == FLAGS_TAG)):
            out.append((p, attributes_key(p), None, b""))
        else:
            out.append((p, key, b[:j], b""))
    return out


def decode_histograms(dps: Any) -> list[Decoded]:
    """Serialize; the fields in front of the attributes (start, time, count, sum, packed bucket
    counts and bounds) are the head, the attributes the key, min/max/flags behind them the
    tail. The usual layout (every field set, short packed fields) is read without a loop."""
    out: list[Decoded] = []
    fixed = HIST_FIXED_TAGS
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
        if j < n and b[j] == HIST_EXEMPLARS_TAG:
            out.append((p, attributes_key(p), None, b""))  # exemplars: the slow, sure way
            continue
        k = j
        while k < n and b[k] == HIST_ATTR_TAG:
            length = b[k + 1]
            if length < 0x80:
                k += 2 + length
            else:
                length, k = _read_varint(b, k + 1)
                k += length
        out.append((p, b[j:k], b[:j], b[k:]))
    return out
