"""OpenTelemetry -> Prometheus names, per the OpenTelemetry specification "Prometheus and
OpenMetrics Compatibility" (v1.60.0, "OTLP Metric points to Prometheus": metric name
sanitising, unit suffixes, `_total`, label keys).

Worked example: a monotonic Sum named `http.server.requests` with unit `{request}` becomes
`http_server_requests_total` (the `{...}` annotation is no unit, `_total` marks the counter);
a Histogram `http.server.request.duration` with unit `s` becomes
`http_server_request_duration_seconds` with `_bucket`, `_sum` and `_count` samples; a Gauge
with unit `1` becomes `..._ratio`.

Where the specification leaves a choice, the names follow the OpenTelemetry Collector's
translator (prometheus/otlptranslator), because a Collector in front of Prometheus must give
the same names as the gateway (docs: DESIGN.md, "one set of names"):

* Gauges with unit `1` get `_ratio`. v1.56.0 of the specification dropped the `1` -> `ratio`
  rule, the Collector still applies it to gauges (and only to gauges), and the catalogue's
  `*_utilization_ratio` names rely on it. Other types with unit `1` get no unit suffix.
* Leading and trailing `_` of the sanitised name are dropped (the Collector splits the name
  into words), so `_x_` with unit `s` is `x_seconds`, never `_x__seconds`; a name with no
  letter or digit left is refused.
* "Already ends with the unit" is a whole-word test: `xseconds` with unit `s` is
  `xseconds_seconds`, `lat_seconds_total` (a counter, unit `s`) stays as it is.
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
    # The specification's table spells TiBy "tebibytes" and kilobytes "kBy" (UCUM); the
    # Collector's "tibibytes" typo and its "KBy" are not copied / kept as an alias.
    "TiBy": "tebibytes",
    "kBy": "kilobytes",
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
    # dimensionless: no word (a gauge gets `_ratio`, see `metric_name`)
    "1": "",
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

    >>> unit_suffix("s"), unit_suffix("By/s"), unit_suffix("{packet}/s"), unit_suffix("1")
    ('seconds', 'bytes_per_second', 'per_second', '')
    """
    unit = _ANNOTATION.sub("", unit).strip()
    num, slash, den = unit.partition("/")
    num, den = num.strip(), den.strip()
    num_word = _UNIT_WORDS.get(num, num)
    den_word = _PER_UNIT_WORDS.get(den, den)
    if slash and den_word:
        word = f"{num_word}_per_{den_word}" if num_word else f"per_{den_word}"
    else:
        word = num_word
    return _clean(_INVALID_METRIC_CHARS.sub("_", word)).strip("_")


def _clean(name: str) -> str:
    return _MULTI_UNDERSCORE.sub("_", name)


def _ends_with_word(name: str, word: str) -> bool:
    return name == word or name.endswith("_" + word)


@lru_cache(maxsize=8192)
def metric_name(name: str, unit: str, *, monotonic_counter: bool, gauge: bool = False) -> str:
    """The Prometheus family name for an OpenTelemetry metric (without `_bucket`-style sample
    suffixes; with `_total` for monotonic counters, as the 0.0.4 text format writes it).
    An empty string when nothing of the name is left (the store refuses the metric).

    The unit suffix comes before the type's: a counter `size.total` in `By` is
    `size_bytes_total`, and a name that already ends with the unit (before `_total`) gets no
    second one."""
    base = _clean(_INVALID_METRIC_CHARS.sub("_", name)).strip("_")
    if not base:
        return ""
    if base[0].isdigit():
        base = "_" + base
    stem = base
    if monotonic_counter and stem.endswith("_total"):
        stem = stem.removesuffix("_total")
    suffix = unit_suffix(unit)
    if suffix and not _ends_with_word(stem, suffix):
        stem = f"{stem}_{suffix}"
    if gauge and unit.strip() == "1" and not _ends_with_word(stem, "ratio"):
        stem = f"{stem}_ratio"
    if monotonic_counter:
        stem = f"{stem}_total"
    return stem


@lru_cache(maxsize=8192)
def sanitize_label_name(key: str) -> str:
    """An attribute key as a Prometheus label name: invalid characters become `_`, runs of `_`
    one `_` (so never the reserved leading `__`), a leading digit gets a `key_` prefix."""
    name = _clean(_INVALID_LABEL_CHARS.sub("_", key))
    if not name:
        return "key_"
    if name[0].isdigit():
        name = "key_" + name
    return name


def is_valid_metric_name(name: str) -> bool:
    return bool(_VALID_METRIC.match(name))


def is_valid_label_name(name: str) -> bool:
    return bool(_VALID_LABEL.match(name)) and not name.startswith("__")
