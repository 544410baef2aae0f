"""Parsing the store's rendered label strings back into pairs, for the status endpoints."""

from __future__ import annotations

import re

__all__ = ["parse_labels", "service_of"]

# `name="value"` pairs as `gateway.exporters.prometheus.labels` renders them: values escape
# backslash, double quote and newline.
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")


def _unescape(value: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_labels(rendered: str) -> dict[str, str]:
    """`,a="1",b="x\\"y"` -> `{"a": "1", "b": 'x"y'}` (a leading comma is allowed)."""
    return {name: _unescape(value) for name, value in _PAIR.findall(rendered)}


def service_of(resource_labels: str) -> str:
    """The `job` of a stream's resource labels (`service.namespace/service.name`), "" if none."""
    return parse_labels(resource_labels).get("job", "")
