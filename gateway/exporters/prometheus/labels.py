"""Label rendering for the exposition: attribute values as strings, escaping, collisions."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from gateway.naming import sanitize_label_name
from gateway.pipeline.attributes import any_value_to_python, attribute_string

__all__ = [
    "RESERVED_LABELS",
    "any_value_to_python",
    "attribute_string",
    "escape_help",
    "escape_value",
    "point_labels",
    "render_pairs",
]


def escape_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


_RESERVED = frozenset(("job", "instance"))


def render_pairs(attributes: Iterable[KeyValue], *, reserved: frozenset[str] = _RESERVED) -> str:
    """Point attributes as `a="1",b="2"` (no braces), sorted by label name.

    Keys that sanitise to the same label are merged, their values joined with `;` in the order
    of the original keys, as the compatibility spec says. A key that would overwrite a label the
    gateway sets from the resource (`job`, `instance`) is exposed as `exported_<key>`.
    """
    merged: dict[str, list[tuple[str, str]]] = {}
    for kv in attributes:
        name = sanitize_label_name(kv.key)
        if name in reserved or name.startswith("otel_scope_"):
            name = "exported_" + name
        merged.setdefault(name, []).append((kv.key, attribute_string(kv.value)))
    parts = []
    # Sorted by label name: the same attributes in another order give the same text, which
    # is how the store recognises them as one series.
    for name, values in sorted(merged.items()):
        text = values[0][1] if len(values) == 1 else ";".join(v for _, v in sorted(values))
        parts.append(f'{name}="{escape_value(text)}"')
    return ",".join(parts)


#: labels the gateway sets itself, by Prometheus type: an attribute with such a key becomes
#: `exported_<key>` (a histogram's `le` attribute would otherwise repeat the bucket label)
RESERVED_LABELS = {
    "counter": frozenset(("job", "instance")),
    "gauge": frozenset(("job", "instance")),
    "histogram": frozenset(("job", "instance", "le")),
    "summary": frozenset(("job", "instance", "quantile")),
}


def point_labels(
    kind: str, attributes: Iterable[KeyValue], copied: tuple[KeyValue, ...], after: bool
) -> str:
    """A series' own labels: `a="1",b="2"`, with a leading comma when they follow other labels
    (`after`: the stream's job, instance and scope labels are not empty).

    `kind` is the family's Prometheus type (its reserved labels); `copied` are the resource
    attributes `resource_to_labels` copies onto every series. A point attribute whose label
    name is also a copied one's is merged with it, the values joined with `;` sorted by
    original key, as the compatibility spec says for colliding label names (it once gave a
    repeated label: an unparsable /metrics). The one function for a series' labels: the store
    and the forwarder's overflow folding must find the same series.
    """
    attrs = [*attributes, *copied] if copied else attributes
    pairs = render_pairs(attrs, reserved=RESERVED_LABELS[kind])
    return "," + pairs if after and pairs else pairs
