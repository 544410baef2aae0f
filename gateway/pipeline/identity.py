"""Point identity: which series a data point belongs to, as bytes, and the wire constants that
the identity is cut from. One module, used by the series store, the cardinality limiter and its
overflow folder, and the views; the store's hot loop inlines `number_key` and a property test
(tests/gateway/pipeline/test_identity.py) pins the two together.

Why bytes. Decoding every point's attributes is the most expensive thing the gateway could do
per point. The protobuf runtime writes fields in field-number order, so a serialised
NumberDataPoint is its fixed-size fields (start time 2, time 3, as_double 4, as_int 6: a tag
byte and 8 bytes each) followed by its attributes (7); cutting the fixed fields off leaves bytes
that are equal exactly when the attributes are (in the same order). Exemplars (5) sit in front
of the attributes and flags (8) behind them: points that carry them take the slow, sure way,
a copy with only the attributes.

Worked example: a NumberDataPoint {start=1, time=2, as_int=5, attributes=[a="b"]} serialises as

    11 <8 bytes start> 19 <8 bytes time> 31 <8 bytes value> 3a 08 <KeyValue a="b">

so its head is the first 27 bytes and its key the rest, `3a 08 ...`. A copy holding only the
attributes serialises to the same `3a 08 ...`, which is why the slow path agrees with the fast.

Attributes that arrive in another order give another key; the store catches that with a second
index by rendered labels (the exporter's concern, not identity's).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.metrics.v1 import metrics_pb2

__all__ = [
    "EXEMPLARS_TAG",
    "FLAGS_TAG",
    "HIST_ATTR_TAG",
    "HIST_EXEMPLARS_TAG",
    "HIST_FIXED_TAGS",
    "NO_RECORDED_VALUE",
    "NUMBER_ATTR_TAG",
    "NUMBER_FIXED_TAGS",
    "attributes_key",
    "histogram_key",
    "number_key",
    "resource_identity",
    "scope_identity",
]

#: wire tags of NumberDataPoint's fixed-size fields: start_time (2), time (3), as_double (4),
#: as_int (6); each takes 1 tag byte + 8 bytes
NUMBER_FIXED_TAGS = frozenset((0x11, 0x19, 0x21, 0x31))
#: NumberDataPoint.exemplars (5), in front of the attributes
EXEMPLARS_TAG = 0x2A
#: NumberDataPoint.flags (8), a varint behind the attributes
FLAGS_TAG = 0x40
#: NumberDataPoint.attributes (7)
NUMBER_ATTR_TAG = 0x3A
#: HistogramDataPoint's fixed-size fields: start_time (2), time (3), count (4), sum (5)
HIST_FIXED_TAGS = frozenset((0x11, 0x19, 0x21, 0x29))
#: HistogramDataPoint.attributes (9)
HIST_ATTR_TAG = 0x4A
#: HistogramDataPoint.exemplars (8)
HIST_EXEMPLARS_TAG = 0x42
#: DataPointFlags.FLAG_NO_RECORDED_VALUE: the series ended (Prometheus staleness)
NO_RECORDED_VALUE = 1


def attributes_key(p: Any) -> bytes:
    """The identity of any point's attributes: a NumberDataPoint holding only them, serialised
    (the number key's slow path; equal to the fast path's bytes for the same attributes)."""
    q = metrics_pb2.NumberDataPoint()
    q.attributes.extend(p.attributes)
    out: bytes = q.SerializeToString()
    return out


def number_key(p: Any) -> bytes:
    """The identity of a NumberDataPoint's series: its serialised attributes (see the module
    docstring). `SeriesStore._ingest_numbers` inlines this loop."""
    b: bytes = p.SerializeToString()
    n = len(b)
    j = 0
    while j < n and b[j] in NUMBER_FIXED_TAGS:
        j += 9
    key = b[j:]
    if key and (key[0] == EXEMPLARS_TAG or (n > 1 and b[-2] == FLAGS_TAG)):
        return attributes_key(p)
    return key


def histogram_key(p: Any) -> bytes:
    """The identity of a histogram's, exponential histogram's or summary's series: its
    attributes one by one. These points carry more fields around the attributes than numbers
    do and come fewer to a request, so the key is built from the attributes directly."""
    return b"".join([kv.SerializeToString() for kv in p.attributes])


def resource_identity(resource: Any) -> bytes:
    """The identity of a ResourceMetrics' resource (one encoding of it: the store aliases other
    encodings with the same labels to the first)."""
    out: bytes = resource.SerializeToString()
    return out


def scope_identity(sm: metrics_pb2.ScopeMetrics) -> bytes:
    """The identity of a ScopeMetrics' scope: the scope's encoding, and its schema URL, which
    OTLP keeps beside the scope (and the compatibility spec turns into a label of its own)."""
    key: bytes = sm.scope.SerializeToString()
    return key + b"\x00" + sm.schema_url.encode() if sm.schema_url else key
