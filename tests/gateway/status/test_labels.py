from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.exporters.prometheus.labels import escape_value
from gateway.status.labels import parse_labels, service_of


def test_parses_rendered_point_labels() -> None:
    assert parse_labels(',a="1",b="x y"') == {"a": "1", "b": "x y"}
    assert parse_labels("") == {}


@given(st.text(max_size=30))
def test_round_trips_what_the_exporter_escapes(value: str) -> None:
    assert parse_labels(f'k="{escape_value(value)}",z="1"') == {"k": value, "z": "1"}


def test_service_is_the_job_label() -> None:
    assert service_of('job="shop/checkout",instance="i-1"') == "shop/checkout"
    assert service_of('instance="i-1"') == ""
