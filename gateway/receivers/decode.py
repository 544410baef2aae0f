"""Turns an OTLP/HTTP body into an `ExportMetricsServiceRequest`, or a `PermanentError` that
says what is wrong with it."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from gateway.errors import PermanentError
from gateway.receivers.wire import ShapeLimits, check_decoded, check_shape

__all__ = ["JSON", "PROTOBUF", "decode_body", "inflate"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """Decompress `gzip` (or `deflate`) without ever holding more than `max_bytes + 1` bytes of
    output, so a gzip bomb is refused after inflating one chunk past the limit."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise PermanentError(
            f"unsupported Content-Encoding {encoding!r}: use gzip", http_status=415
        )
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise PermanentError(f"body is not valid {encoding}: {exc}") from None
    if len(out) > max_bytes or d.unconsumed_tail:
        raise PermanentError(
            f"decompressed body exceeds the limit of {max_bytes} bytes", http_status=413
        )
    if not d.eof:
        raise PermanentError(f"body is truncated {encoding} data")
    return out


def _fix_ids(node: Any) -> None:
    """OTLP JSON writes trace and span ids as hex; protobuf JSON expects base64."""
    if isinstance(node, dict):
        for key in ("traceId", "spanId", "trace_id", "span_id"):
            value = node.get(key)
            if isinstance(value, str) and value:
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise PermanentError(f"{key} {value!r} is not hex") from None
        for child in node.values():
            _fix_ids(child)
    elif isinstance(node, list):
        for child in node:
            _fix_ids(child)


def _json_shape(document: dict[str, Any], limits: ShapeLimits) -> None:
    """The wire check's limits on a JSON document, before `ParseDict` (which builds a message
    per container, slowly, in Python). Lists carry their length: no scan needed."""
    resources = scopes = metrics = points = 0
    for rm in _items(document, "resourceMetrics", "resource_metrics"):
        for sm in _items(rm, "scopeMetrics", "scope_metrics"):
            ms = _items(sm, "metrics", "metrics")
            metrics += len(ms)
            for m in ms:
                for kind in _DATA_KINDS:
                    data = m.get(kind) if isinstance(m, dict) else None
                    if isinstance(data, dict):
                        points += len(_items(data, "dataPoints", "data_points"))
            scopes += 1
        resources += 1
    for count, limit, what, key in (
        (resources, limits.resources, "resources", "max_resources_per_request"),
        (scopes, limits.scopes, "scopes", "max_scopes_per_request"),
        (metrics, limits.metrics, "metrics", "max_metrics_per_request"),
        (points, limits.points, "data points", "max_points_per_request"),
    ):
        if limit and count > limit:
            raise PermanentError(
                f"request carries {count} {what}, more than the limit of {limit} "
                f"(limits.{key}); split it"
            )


_DATA_KINDS = (
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "exponential_histogram",
    "summary",
)


def _items(node: Any, camel: str, snake: str) -> list[Any]:
    if not isinstance(node, dict):
        return []
    value = node.get(camel, node.get(snake))
    return value if isinstance(value, list) else []


def decode_body(
    body: bytes, content_type: str, shape: ShapeLimits | None = None, max_decoded: int = 0
) -> ExportMetricsServiceRequest:
    """`shape`: the per-request container limits; `max_decoded`: the most memory parsing a
    protobuf body may take (0: no limit); both checked before the body is parsed."""
    request = ExportMetricsServiceRequest()
    if content_type == PROTOBUF:
        if shape is not None:
            check_shape(body, shape)
        check_decoded(body, max_decoded, shape)
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise PermanentError(f"body is not a valid OTLP protobuf request: {exc}") from None
        return request
    if content_type == JSON:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PermanentError(f"body is not valid JSON: {exc}") from None
        except RecursionError:
            # json (and protobuf's json_format below) recurse per nesting level
            raise PermanentError("body is JSON nested too deeply") from None
        if not isinstance(document, dict):
            raise PermanentError("OTLP JSON body must be an object")
        if shape is not None:
            _json_shape(document, shape)
        try:
            _fix_ids(document)
            json_format.ParseDict(document, request, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise PermanentError(f"body is not a valid OTLP JSON request: {exc}") from None
        except RecursionError:
            raise PermanentError("body is JSON nested too deeply") from None
        return request
    raise PermanentError(
        f"unsupported Content-Type {content_type!r}: use {PROTOBUF} or {JSON}", http_status=415
    )
