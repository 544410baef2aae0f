"""OpenTelemetry -> Prometheus names, per the OpenTelemetry specification "Prometheus and
OpenMetrics Compatibility" ("OTLP Metric points to Prometheus": metric name sanitising, unit
suffixes, `_total`, label keys), with every choice the specification leaves open made as the
OpenTelemetry Collector's prometheus exporter makes it at the pinned release (contrib v0.165.1,
which names through prometheus/otlptranslator v1.0.0). A Collector in front of Prometheus must
give the same names as the gateway (DESIGN.md, "one set of names"), and
tests/integration/test_collector_path.py runs edge cases through both.

Worked example: a monotonic Sum named `http.server.requests` with unit `{request}` becomes
`http_server_requests_total` (the `{...}` annotation is no unit, `_total` marks the counter);
a Histogram `http.server.request.duration` with unit `s` becomes
`http_server_request_duration_seconds` with `_bucket`, `_sum` and `_count` samples; a Gauge
with unit `1` becomes `..._ratio`.

The rules, as the Collector applies them:

* The name is split into words at every character outside `[a-zA-Z0-9:]` (so runs of `_` and
  leading or trailing `_` disappear); the words are joined with `_`, and a leading digit gets
  a `_` in front. A name that leaves nothing at all (no word, unit or `total`) is refused.
* The unit's words are added unless the name already has them as a word anywhere: `By/{thing}`
  adds nothing to `bytes.per.thing` (`bytes` is a word of it). A unit part in braces is no
  unit; a per-unit that sanitises to nothing (`By/%`) adds nothing. Unknown units are used as
  written (`kBy` stays `kBy`; the Collector's table spells TiBy "tibibytes").
* Counters: every `total` word is removed and `total` appended. Gauges (the OTLP Gauge type
  only, not a non-monotonic Sum) with unit `1`: every `ratio` word is removed and `ratio`
  appended.
* Label names: every character outside `[a-zA-Z0-9]` becomes `_` (runs are kept: `a..b` is
  `a__b`), a leading digit gets `key_`. The Collector refuses a metric whose label would be
  reserved (`__x`) or only underscores (`ключ` -> `____`) and drops it; the gateway keeps the
  metric and puts `key` in front of such a label (`key__x`, `key____`): data is not lost for a
  label name.
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
    # As the Collector's table has them (its "tibibytes" spelling included; UCUM's "kBy" is
    # not in it and stays "kBy"): the names must be the Collector's.
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

_NAME_WORD_SPLIT = re.compile(r"[^a-zA-Z0-9:]+")


def _unit_parts(unit: str) -> tuple[str, str]:
    """(main, per) unit words before clean-up, as otlptranslator's buildUnitSuffixes."""
    main_otel, slash, per_otel = unit.partition("/")
    main_otel = main_otel.strip()
    main = ""
    if main_otel and "{" not in main_otel and "}" not in main_otel:
        main = _UNIT_WORDS.get(main_otel, main_otel)
    per = ""
    if slash and per_otel:
        per_otel = per_otel.strip()
        if per_otel and "{" not in per_otel and "}" not in per_otel:
            per = _PER_UNIT_WORDS.get(per_otel, per_otel)
        if per:
            per = "per_" + per
    return main, per


def _clean_unit(word: str) -> str:
    return _MULTI_UNDERSCORE.sub("_", _INVALID_METRIC_CHARS.sub("_", word)).removeprefix("_")


def _unit_words(unit: str, name_words: list[str]) -> list[str]:
    main, per = (_clean_unit(w) for w in _unit_parts(unit))
    if main in name_words:
        main = ""
    if per == "per_":
        per = ""
    else:
        per = per.removesuffix("_")
        if per in name_words:
            per = ""
    if per:
        main = main.removesuffix("_")
    return [w for w in (main, per) if w]


def unit_suffix(unit: str) -> str:
    """The suffix a unit adds to a name that does not have its words yet, without the leading
    underscore ("" for none).

    >>> unit_suffix("s"), unit_suffix("By/s"), unit_suffix("{packet}/s"), unit_suffix("1")
    ('seconds', 'bytes_per_second', 'per_second', '')
    """
    return "_".join(_unit_words(unit, []))


@lru_cache(maxsize=8192)
def metric_name(name: str, unit: str, *, monotonic_counter: bool, gauge: bool = False) -> str:
    """The Prometheus family name for an OpenTelemetry metric (without `_bucket`-style sample
    suffixes; with `_total` for monotonic counters, as the 0.0.4 text format writes it).
    `gauge` is the OTLP Gauge type. An empty string when nothing is left, not even a unit or
    type word (the store refuses the metric)."""
    words = [w for w in _NAME_WORD_SPLIT.split(name) if w]
    words += _unit_words(unit, words)
    if monotonic_counter:
        words = [w for w in words if w != "total"] + ["total"]
    if gauge and unit == "1":
        words = [w for w in words if w != "ratio"] + ["ratio"]
    out = "_".join(words)
    if out and out[0].isdigit():
        out = "_" + out
    return out


@lru_cache(maxsize=8192)
def sanitize_label_name(key: str) -> str:
    """An attribute key as a Prometheus label name: each character outside `[a-zA-Z0-9]`
    becomes `_` (runs kept, as the Collector keeps them), a leading digit gets a `key_` prefix;
    a name the Collector would refuse (reserved `__` prefix, only underscores, empty) gets a
    `key` prefix instead of being dropped."""
    name = _INVALID_LABEL_CHARS.sub("_", key)
    if not name:
        return "key_"
    if name[0].isdigit():
        return "key_" + name
    if name.startswith("__") or not name.strip("_"):
        return "key" + name if name.startswith("_") else "key_" + name
    return name


def is_valid_metric_name(name: str) -> bool:
    return bool(_VALID_METRIC.match(name))


def is_valid_label_name(name: str) -> bool:
    return bool(_VALID_LABEL.match(name)) and not name.startswith("__")
