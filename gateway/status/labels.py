"""Parsing the store's rendered label strings back into pairs, for the status endpoints."""

from __future__ import annotations

import re

__all__ = ["label_pairs", "parse_labels", "service_of", "unescape"]

# `name="value"` pairs as `gateway.exporters.prometheus.labels` renders them: values escape
# backslash, double quote and newline.
# (The value pattern is the unrolled `[^"\\]*(?:\\.[^"\\]*)*`: several times faster than
# an alternation per character.)
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*(?:\\.[^"\\]*)*)"')
_UNESCAPE = re.compile(r"\\(.)")


def unescape(value: str) -> str:
    """A label value as rendered (escaped) -> as sent."""
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def label_pairs(rendered: str) -> list[tuple[str, str]]:
    """(name, escaped value) pairs, in order: the fast path for counting, where escaped and
    unescaped values are equally distinct."""
    pairs: list[tuple[str, str]] = _PAIR.findall(rendered)
    return pairs


def parse_labels(rendered: str) -> dict[str, str]:
    """`,a="1",b="x\\"y"` -> `{"a": "1", "b": 'x"y'}` (a leading comma is allowed)."""
    return {name: unescape(value) for name, value in _PAIR.findall(rendered)}


def service_of(resource_labels: str) -> str:
    """The `job` of a stream's resource labels (`service.namespace/service.name`), "" if none."""
    return parse_labels(resource_labels).get("job", "")
