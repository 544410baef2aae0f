"""OpenTelemetry -> Prometheus names, per the OpenTelemetry specification "Prometheus and
OpenMetrics Compatibility" (metric name sanitising, unit suffixes, `_total`, label keys).

Worked example: a monotonic Sum named `http.server.requests` with unit `{request}` becomes
`http_server_requests_total` (the `{...}` annotation is no unit, `_total` marks the counter);
a Histogram `http.server.request.duration` with unit `s` becomes
`http_server_request_duration_seconds` with `_bucket`, `_sum` and `_count` samples; a Gauge
with unit `1` becomes `..._ratio`.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = [
    "is_valid_label_name",
    "is_valid_metric_name",
    "metric_name",
    "sanitize_label_name",
    "unit_suffix",
]

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_MULTI_UNDERSCORE = re.compile(r"__+")
_VALID_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_VALID_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# UCUM units used by OpenTelemetry -> the Prometheus base-unit words.
_UNIT_WORDS: dict[str, str] = {
    # time
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    # bytes
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    # SI
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    # misc
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
}

# The denominator of "x/y" units is singular.
_PER_UNIT_WORDS: dict[str, str] = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}

_ANNOTATION = re.compile(r"\{[^}]*\}")


def unit_suffix(unit: str) -> str:
    """The suffix a unit adds to a metric name, without the leading underscore ("" for none).

    >>> unit_suffix("s"), unit_suffix("By/s"), unit_suffix("{request}"), unit_suffix("1")
    ('seconds', 'bytes_per_second', '', '')
    """
    unit = _ANNOTATION.sub("", unit).strip()
    if not unit or unit == "1":
        return ""
    if "/" in unit:
        num, _, den = unit.partition("/")
        num_word = _UNIT_WORDS.get(num, num) if num else ""
        den_word = _PER_UNIT_WORDS.get(den, den)
        word = f"{num_word}_per_{den_word}" if num_word else f"per_{den_word}"
    else:
        word = _UNIT_WORDS.get(unit, unit)
    return _clean(_INVALID_METRIC_CHARS.sub("_", word)).strip("_")


def _clean(name: str) -> str:
    return _MULTI_UNDERSCORE.sub("_", name)


@lru_cache(maxsize=8192)
def metric_name(name: str, unit: str, *, monotonic_counter: bool, gauge: bool = False) -> str:
    """The Prometheus family name for an OpenTelemetry metric (without `_bucket`-style sample
    suffixes; with `_total` for monotonic counters, as the 0.0.4 text format writes it)."""
    base = _clean(_INVALID_METRIC_CHARS.sub("_", name))
    if base and base[0].isdigit():
        base = "_" + base
    words = base.split("_")
    suffix = unit_suffix(unit)
    if suffix and not base.endswith(suffix):
        base = f"{base}_{suffix}"
    if gauge and unit == "1" and not base.endswith("_ratio"):
        base = f"{base}_ratio"
    if monotonic_counter:
        if words and words[-1] == "total":
            # `_total` belongs at the very end: move it after the unit suffix.
            stem = base.removesuffix("_total") if base.endswith("_total") else base
            stem = "_".join(w for w in stem.split("_") if w != "total") or stem
            base = stem
        base = f"{base}_total"
    return base


@lru_cache(maxsize=8192)
def sanitize_label_name(key: str) -> str:
    """An attribute key as a Prometheus label name: invalid characters become `_`, a leading
    digit gets a `key_` prefix, and a leading `__` (reserved by Prometheus) is kept only as `_`."""
    name = _INVALID_LABEL_CHARS.sub("_", key)
    if not name:
        return "key_"
    if name[0].isdigit():
        name = "key_" + name
    if name.startswith("__"):
        name = "_" + name.lstrip("_") if name.strip("_") else "key" + name
    return name


def is_valid_metric_name(name: str) -> bool:
    return bool(_VALID_METRIC.match(name))


def is_valid_label_name(name: str) -> bool:
    return bool(_VALID_LABEL.match(name)) and not name.startswith("__")
