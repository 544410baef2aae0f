"""Malformed OTLP payloads: a fixed corpus of known-nasty cases, and hypothesis strategies that
make more (mutated protobuf, arbitrary JSON, structurally valid OTLP with hostile values).

A payload is `(content_type, content_encoding, body)`; `PROTOBUF` bodies are also sent over
gRPC (uncompressed).
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from dataclasses import dataclass

from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.support.otlp import Req

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True)
class Payload:
    content_type: str
    body: bytes
    encoding: str = ""
    note: str = ""


def valid_request() -> ExportMetricsServiceRequest:
    return (
        Req(service="fuzz")
        .sum("fuzz.c", [({"a": "1"}, 1, 0, 1), ({"a": "2"}, 2.5, 0, 1)])
        .gauge("fuzz.g", [({"b": True}, 0.5, 1)])
        .histogram("fuzz.h", [({}, [1.0, 2.0], [1, 2, 3], 7.0, 0, 1)])
        .request
    )


VALID = valid_request().SerializeToString()
VALID_JSON = json.dumps(
    {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "fuzz"}}]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "fuzz.j",
                                "gauge": {
                                    "dataPoints": [{"asDouble": 1.5, "timeUnixNano": "1000"}]
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
).encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_anyvalue(depth: int) -> bytes:
    """An attribute value nested `depth` levels deep in kvlists."""
    value = _field(1, b"x")  # AnyValue.string_value
    for _ in range(depth):
        kv = _field(1, b"k") + _field(2, value)  # KeyValue{key, value}
        value = _field(6, _field(1, kv))  # AnyValue.kvlist_value{values}
    return value


def _hostile_requests() -> list[tuple[str, ExportMetricsServiceRequest]]:
    out: list[tuple[str, ExportMetricsServiceRequest]] = []

    def new(note: str) -> metrics_pb2.Metric:
        r = ExportMetricsServiceRequest()
        m = r.resource_metrics.add().scope_metrics.add().metrics.add()
        m.name = "fuzz.m"
        out.append((note, r))
        return m

    for note, value in (("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf)):
        m = new(f"sum {note}")
        m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        m.sum.is_monotonic = True
        m.sum.data_points.add(as_double=value, time_unix_nano=1)
    m = new("histogram with more buckets than bounds")
    m.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.histogram.data_points.add(explicit_bounds=[1.0], bucket_counts=[1, 2, 3, 4], count=10)
    m = new("histogram with unsorted bounds and nan")
    m.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.histogram.data_points.add(explicit_bounds=[3.0, math.nan, 1.0], bucket_counts=[1, 1, 1, 1])
    m = new("histogram count overflow")
    m.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.histogram.data_points.add(
        explicit_bounds=[1.0], bucket_counts=[2**64 - 1, 2**64 - 1], count=1, sum=-1.0
    )
    m = new("exponential histogram, extreme scale and offset")
    m.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    p = m.exponential_histogram.data_points.add(scale=-(2**31), zero_count=2**63, count=1)
    p.positive.offset = 2**31 - 1
    p.positive.bucket_counts.extend([2**64 - 1] * 50)
    p.negative.offset = -(2**31)
    p.negative.bucket_counts.extend([1] * 3)
    m = new("exponential histogram, scale 20")
    m.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    m.exponential_histogram.data_points.add(scale=20, count=5).positive.bucket_counts.extend(
        [1] * 5
    )
    m = new("summary with quantile out of range")
    m.summary.data_points.add(count=1, sum=math.nan).quantile_values.add(quantile=7, value=1)
    m = new("unspecified temporality")
    m.sum.data_points.add(as_int=1)
    m = new("delta going back in time")
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    m.sum.data_points.add(as_int=1, start_time_unix_nano=2**63, time_unix_nano=1)
    for name in ("", " ", "a b", "\x00", "é" * 300, "__name__", "9lives", "{}", "a\nb"):
        m = new(f"name {name[:10]!r}")
        m.name = name
        m.gauge.data_points.add(as_double=1.0)
    m = new("no data oneof")
    m = new("attribute key empty and duplicate")
    p = m.gauge.data_points.add(as_double=1)
    p.attributes.add(key="").value.string_value = "x"
    p.attributes.add(key="k").value.string_value = "1"
    p.attributes.add(key="k").value.int_value = 2
    m = new("type conflict part 1")
    m.gauge.data_points.add(as_double=1)
    m = new("type conflict part 2")
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.sum.data_points.add(as_double=1)
    m = new("flags no recorded value on a new series")
    m.gauge.data_points.add(flags=1)
    m = new("resource attribute that is an array of kvlists")
    r = out[-1][1]
    kv = r.resource_metrics[0].resource.attributes.add(key="service.name")
    kv.value.array_value.values.add().kvlist_value.values.add(key="x")
    m.gauge.data_points.add(as_double=1)
    return out


def fixed_corpus() -> list[Payload]:
    """The known-nasty cases, each once."""
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB of zeros
    nested_json = b'{"resourceMetrics": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    deep_obj = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    cases = [
        Payload(PROTOBUF, b"", note="empty protobuf (valid: an empty request)"),
        Payload(PROTOBUF, b"\xff" * 64, note="garbage"),
        Payload(PROTOBUF, VALID[: len(VALID) // 2], note="truncated"),
        Payload(PROTOBUF, VALID + b"\x0a", note="trailing tag without length"),
        Payload(PROTOBUF, b"\x0a\xff\xff\xff\xff\x0f", note="length larger than the body"),
        Payload(PROTOBUF, b"\x08\x01", note="wrong wire type for field 1"),
        Payload(PROTOBUF, b"\x0f", note="end-group without start"),
        Payload(PROTOBUF, b"\x0b" * 200, note="nested start-groups"),
        Payload(PROTOBUF, _varint(1 << 3 | 2) + b"\x80" * 11, note="overlong varint"),
        Payload(
            PROTOBUF,
            _field(1, _field(1, _field(1, _nested_anyvalue(200)))),
            note="resource attribute nested 200 deep",
        ),
        Payload(PROTOBUF, gzip.compress(VALID)[:-8], "gzip", "gzip without trailer"),
        Payload(PROTOBUF, b"\x1f\x8b\x08\x00garbage", "gzip", "gzip header then garbage"),
        Payload(PROTOBUF, VALID, "gzip", "not gzip at all"),
        Payload(PROTOBUF, bomb, "gzip", "gzip bomb"),
        Payload(PROTOBUF, zlib.compress(VALID), "br", "unsupported encoding"),
        Payload(PROTOBUF, gzip.compress(gzip.compress(VALID)), "gzip", "double gzip"),
        Payload(PROTOBUF, zlib.compress(b"\xff" * 100), "deflate", "deflate of garbage"),
        Payload(JSON, b"", note="empty JSON"),
        Payload(JSON, b"{", note="truncated JSON"),
        Payload(JSON, b"[]", note="array, not object"),
        Payload(JSON, b"null", note="null"),
        Payload(JSON, b'"\xff\xfe"', note="invalid UTF-8"),
        Payload(JSON, nested_json, note="100k nested arrays"),
        Payload(JSON, deep_obj, note="50k nested objects"),
        Payload(JSON, b'{"resourceMetrics": 5}', note="wrong type"),
        Payload(JSON, b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": 1}]}]}]}'),
        Payload(
            JSON,
            b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":'
            b'{"dataPoints":[{"asDouble":"NaN","timeUnixNano":"-5"}]}}]}]}]}',
            note="negative timestamp string",
        ),
        Payload(
            JSON,
            b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":'
            b'{"dataPoints":[{"asInt":"99999999999999999999999"}]}}]}]}]}',
            note="int64 overflow",
        ),
        Payload(JSON, b'{"resourceMetrics":[{"scopeMetrics":[{"scope":{"name":' + b"1e999}}]}]}"),
        Payload(
            JSON,
            b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","sum":'
            b'{"dataPoints":[{"exemplars":[{"traceId":"zz","spanId":"xyz"}]}]}}]}]}]}',
            note="bad hex ids",
        ),
        Payload(JSON, json.dumps({"resourceMetrics": [{}] * 5000}).encode(), note="5k empty"),
        Payload(JSON, VALID_JSON, "gzip", "JSON claimed gzip"),
        Payload("text/plain", b"hello", note="unsupported content type"),
        Payload("application/x-protobuf; charset=\xff", VALID, note="odd parameter"),
        Payload("", VALID, note="no content type"),
    ]
    for note, request in _hostile_requests():
        cases.append(Payload(PROTOBUF, request.SerializeToString(), note=note))
    return cases


# ---------------------------------------------------------------- hypothesis strategies


@st.composite
def mutated_protobuf(draw: st.DrawFn) -> Payload:
    """A valid request with bytes flipped, inserted, deleted or the body cut short."""
    body = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "varint"]))
        pos = draw(st.integers(0, max(0, len(body) - 1)))
        if op == "flip" and body:
            body[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            body[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and body:
            del body[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del body[pos:]
        elif op == "varint":
            body[pos:pos] = _varint(draw(st.integers(0, 2**64 - 1)))
    return Payload(PROTOBUF, bytes(body), note="mutated")


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["NaN", "Infinity", "-5", "1e400", "0x10", "AAAA"]),
)
_otlp_keys = st.sampled_from(
    [
        "resourceMetrics",
        "scopeMetrics",
        "metrics",
        "name",
        "gauge",
        "sum",
        "histogram",
        "exponentialHistogram",
        "summary",
        "dataPoints",
        "asDouble",
        "asInt",
        "timeUnixNano",
        "startTimeUnixNano",
        "attributes",
        "key",
        "value",
        "stringValue",
        "kvlistValue",
        "arrayValue",
        "values",
        "bucketCounts",
        "explicitBounds",
        "aggregationTemporality",
        "isMonotonic",
        "resource",
        "scope",
        "exemplars",
        "traceId",
        "spanId",
        "flags",
    ]
)
_json_doc = st.recursive(
    _json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(_otlp_keys, st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=40,
)


@st.composite
def otlp_shaped_json(draw: st.DrawFn) -> Payload:
    """JSON whose keys are mostly OTLP's, with values of any type."""
    doc = {"resourceMetrics": draw(_json_doc)}
    return Payload(JSON, json.dumps(doc).encode(), note="otlp-shaped json")


@st.composite
def hostile_otlp(draw: st.DrawFn) -> Payload:
    """A structurally valid protobuf request with hostile values."""
    r = ExportMetricsServiceRequest()
    rm = r.resource_metrics.add()
    for _ in range(draw(st.integers(0, 3))):
        kv = rm.resource.attributes.add(key=draw(st.text(max_size=10)))
        kv.value.string_value = draw(st.text(max_size=50))
    m = rm.scope_metrics.add().metrics.add()
    m.name = draw(st.one_of(st.text(max_size=30), st.sampled_from(["fuzz.x", "fuzz.y"])))
    m.unit = draw(st.text(max_size=10))
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary"]))
    floats = st.floats(allow_nan=True, allow_infinity=True)
    u64 = st.integers(0, 2**64 - 1)
    t64 = st.integers(0, 2**64 - 1)
    temporality = draw(st.integers(0, 2))
    for _ in range(draw(st.integers(0, 5))):
        if kind in ("gauge", "sum"):
            data = getattr(m, kind)
            if kind == "sum":
                data.aggregation_temporality = temporality
                data.is_monotonic = draw(st.booleans())
            p = data.data_points.add(time_unix_nano=draw(t64), start_time_unix_nano=draw(t64))
            if draw(st.booleans()):
                p.as_double = draw(floats)
            else:
                p.as_int = draw(st.integers(-(2**63), 2**63 - 1))
            p.flags = draw(st.integers(0, 2**32 - 1))
        elif kind == "histogram":
            m.histogram.aggregation_temporality = temporality
            m.histogram.data_points.add(
                time_unix_nano=draw(t64),
                count=draw(u64),
                sum=draw(floats),
                bucket_counts=draw(st.lists(u64, max_size=6)),
                explicit_bounds=draw(st.lists(floats, max_size=6)),
            )
        elif kind == "exponential_histogram":
            m.exponential_histogram.aggregation_temporality = temporality
            p = m.exponential_histogram.data_points.add(
                time_unix_nano=draw(t64),
                scale=draw(st.integers(-(2**31), 2**31 - 1)),
                count=draw(u64),
                zero_count=draw(u64),
                sum=draw(floats),
            )
            p.positive.offset = draw(st.integers(-(2**31), 2**31 - 1))
            p.positive.bucket_counts.extend(draw(st.lists(u64, max_size=6)))
            p.negative.offset = draw(st.integers(-(2**31), 2**31 - 1))
            p.negative.bucket_counts.extend(draw(st.lists(u64, max_size=6)))
        else:
            p = m.summary.data_points.add(
                time_unix_nano=draw(t64), count=draw(u64), sum=draw(floats)
            )
            for _ in range(draw(st.integers(0, 3))):
                p.quantile_values.add(quantile=draw(floats), value=draw(floats))
    return Payload(PROTOBUF, r.SerializeToString(), note=f"hostile {kind}")


@st.composite
def compressed(draw: st.DrawFn) -> Payload:
    """Any of the above, gzip'd; sometimes damaged after compression."""
    inner = draw(st.one_of(mutated_protobuf(), otlp_shaped_json(), hostile_otlp()))
    body = bytearray(gzip.compress(inner.body, compresslevel=1))
    if draw(st.booleans()) and len(body) > 12:
        pos = draw(st.integers(10, len(body) - 1))
        body[pos] ^= 0xFF
    return Payload(inner.content_type, bytes(body), "gzip", "gzip " + inner.note)


bad_payloads = st.one_of(mutated_protobuf(), otlp_shaped_json(), hostile_otlp(), compressed())
