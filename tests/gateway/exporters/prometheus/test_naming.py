"""OpenTelemetry -> Prometheus names, per the compatibility specification."""

from __future__ import annotations

import pytest

from gateway.exporters.prometheus.naming import metric_name, sanitize_label_name, unit_suffix


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
        ("__reserved", "_reserved"),
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
