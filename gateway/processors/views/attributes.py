"""A view's attribute rules, compiled: from one incoming attribute set to the output's.

The rules are keep or drop, rename, value maps, the point selector (`select.attributes`) and
the rate a derived counter takes from an attribute. They depend only on the incoming attribute
set, so `ViewProcessor` runs them once per distinct set and caches the `Outcome` by the set's
bytes; the outcome carries the output attributes already serialized for both kinds of point.

Worked example (the default `api.requests` view): keep method, route and status, rename them
to method, endpoint and status, map status with `status_class` and route with default
"unknown". The incoming set

    {http.request.method=GET, url.scheme=http, http.response.status_code=404}

becomes {method=GET, endpoint=unknown, status=4xx}: url.scheme is not kept, the missing route
takes the default, 404 its class.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from gateway.processors.views.config import ValueMapping, ViewConfig
from gateway.processors.views.wire import HIST_ATTR_TAG, NUMBER_ATTR_TAG, field

__all__ = ["NO_RATE", "AttributePlan", "Outcome"]

NO_RATE = -1.0  # an outcome's rate when the rate table has none for the point


class Outcome:
    """The outcome of one view for one incoming attribute set."""

    __slots__ = ("hist_attrs", "key", "number_attrs", "rate")

    def __init__(self, kvs: Sequence[bytes], rate: float) -> None:
        self.key = b"".join(kvs)  # groups points that become the same series
        self.number_attrs = b"".join(field(NUMBER_ATTR_TAG, kv) for kv in kvs)
        self.hist_attrs = b"".join(field(HIST_ATTR_TAG, kv) for kv in kvs)
        self.rate = rate


class AttributePlan:
    """The attribute rules of one view, with its point selector compiled."""

    def __init__(self, config: ViewConfig) -> None:
        self.attributes = config.attributes
        self.rate = config.derive.rate if config.derive is not None else None
        #: (key, pattern) that a point's attributes must match for the view to take it
        self.point_filter = [
            (k, re.compile(fnmatch.translate(v))) for k, v in config.select.attributes.items()
        ]

    def outcome(self, incoming: dict[str, str]) -> Outcome | None:
        """The output for a point with these attributes; None when the selector leaves it out."""
        for key, pattern in self.point_filter:
            value = incoming.get(key)
            if value is None or not pattern.match(value):
                return None
        rate = 1.0
        table = self.rate
        if table is not None:
            found = table.rates.get(incoming.get(table.attribute, ""))
            if found is None:
                # No rate: the point is left out of this view (and counted), not guessed.
                found = NO_RATE if table.default is None else table.default
            rate = found
        attrs = self.attributes
        if attrs.keep is not None:
            keys: Iterable[str] = attrs.keep
        else:
            drop = attrs.drop
            keys = [k for k in incoming if k not in drop]
        kvs = []
        for key in keys:
            value = incoming.get(key)
            mapping = attrs.values.get(key)
            if mapping is not None:
                value = _map_value(mapping, value)
            if value is None:
                continue
            kvs.append(_kv_bytes(attrs.rename.get(key, key), value))
        return Outcome(kvs, rate)


def _map_value(mapping: ValueMapping, value: str | None) -> str | None:
    if value is None or value == "":
        return mapping.default
    if mapping.function == "status_class":
        value = _status_class(value)
    elif mapping.function == "lower":
        value = value.lower()
    elif mapping.function == "upper":
        value = value.upper()
    mapped = mapping.map.get(value)
    if mapped is not None:
        return mapped
    return mapping.other if mapping.other is not None else value


def _status_class(value: str) -> str:
    if len(value) == 3 and value.isdigit() and "1" <= value[0] <= "5":
        return value[0] + "xx"
    return value


def _kv_bytes(key: str, value: str) -> bytes:
    kv = KeyValue(key=key)
    kv.value.string_value = value
    return kv.SerializeToString()
