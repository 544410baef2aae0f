"""OpenTelemetry -> Prometheus names, per the compatibility specification."""

from __future__ import annotations

import pytest

from gateway.naming import metric_name, sanitize_label_name, unit_suffix


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("http.server.request.duration", "s", "histogram", "http_server_request_duration_seconds"),
        ("http.server.requests", "{request}", "counter", "http_server_requests_total"),
        ("process.memory.usage", "By", "gauge", "process_memory_usage_bytes"),
        ("system.memory.utilization", "1", "gauge", "system_memory_utilization_ratio"),
        ("net.io", "By/s", "gauge", "net_io_bytes_per_second"),
        ("requests.total", "", "counter", "requests_total"),
        ("size.total", "By", "counter", "size_bytes_total"),
        ("already_seconds", "s", "gauge", "already_seconds"),
        ("2xx.rate", "", "gauge", "_2xx_rate"),
        ("a..b--c", "", "gauge", "a_b_c"),
        ("temp", "Cel", "gauge", "temp_celsius"),
        ("hits", "1", "counter", "hits_total"),
    ],
)
def test_metric_names(name: str, unit: str, kind: str, expected: str) -> None:
    assert (
        metric_name(name, unit, monotonic_counter=kind == "counter", gauge=kind == "gauge")
        == expected
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("http.route", "http_route"),
        ("9lives", "key_9lives"),
        ("__reserved", "key__reserved"),
        ("a..b", "a__b"),
        ("a-b c", "a_b_c"),
        ("", "key_"),
    ],
)
def test_label_names(key: str, expected: str) -> None:
    assert sanitize_label_name(key) == expected


def test_unit_annotations_are_not_units() -> None:
    assert unit_suffix("{packet}") == ""
    assert unit_suffix("ms") == "milliseconds"
    assert unit_suffix("/s") == "per_second"


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        # leading/trailing `_` never give `__` next to a suffix (found by test_properties)
        ("_x_", "s", "histogram", "x_seconds"),
        ("__x__", "", "counter", "x_total"),
        # the unit is added unless the name has its word anywhere (the Collector's rule)
        ("xseconds", "s", "gauge", "xseconds_seconds"),
        ("lat_seconds_total", "s", "counter", "lat_seconds_total"),
        ("lat_seconds", "s", "counter", "lat_seconds_total"),
        ("bytes.per.thing", "By/{thing}", "gauge", "bytes_per_thing"),
        # every `total` word moves to the end; every `ratio` of a unit-1 gauge too
        ("total", "", "counter", "total"),
        ("total_requests", "", "counter", "requests_total"),
        ("bytes_total.by", "By", "counter", "bytes_by_total"),
        ("ratio.gauge", "1", "gauge", "gauge_ratio"),
        # a non-monotonic Sum is a Prometheus gauge, but only the Gauge type gets `_ratio`
        ("ratio.sum", "1", "updown", "ratio_sum"),
        # a per-unit that sanitises to nothing adds nothing
        ("x", "By/%", "gauge", "x_bytes"),
        # dimensionless and annotation-only parts of a unit add nothing
        ("r", "1/s", "gauge", "r_per_second"),
        ("p", "{packet}/s", "counter", "p_per_second_total"),
        ("q", "{a}/{b}", "gauge", "q"),
        ("q", "s/", "gauge", "q_seconds"),
        ("q", "/", "gauge", "q"),
        ("hits", "1", "histogram", "hits"),
        ("d", "TiBy", "gauge", "d_tibibytes"),
        ("d", "kBy", "gauge", "d_kBy"),
        # nothing left at all: the store refuses it; a unit alone is a name (as the Collector)
        ("...", "", "gauge", ""),
        ("温度", "Cel", "gauge", "celsius"),
    ],
)
def test_spec_edge_cases(name: str, unit: str, kind: str, expected: str) -> None:
    assert (
        metric_name(name, unit, monotonic_counter=kind == "counter", gauge=kind == "gauge")
        == expected
    )


def test_label_names_keep_runs_of_underscores_as_the_collector() -> None:
    # The Collector's exporter keeps runs (otlptranslator PreserveMultipleUnderscores).
    assert sanitize_label_name("a..b") == "a__b"
    assert sanitize_label_name("key______") == "key______"
    # What it refuses (and drops the metric for), the gateway keeps under a `key` prefix.
    assert sanitize_label_name("ключ") == "key____"
    assert sanitize_label_name("_") == "key_"
