"""OTLP attribute values as text: the one rule (the compatibility spec's) every stage uses,
the views to match values and the Prometheus exporter to write labels."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["any_value_to_python", "attribute_string"]


def any_value_to_python(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def attribute_string(value: AnyValue) -> str:
    """An attribute value as Prometheus sees it: strings as they are, booleans `true`/`false`,
    numbers in their shortest form, arrays and maps as JSON (the compatibility spec's rule)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        d = value.double_value
        return repr(d) if math.isfinite(d) else ("NaN" if d != d else ("+Inf" if d > 0 else "-Inf"))
    if kind is None:
        return ""
    return json.dumps(any_value_to_python(value), separators=(",", ":"), sort_keys=True)
