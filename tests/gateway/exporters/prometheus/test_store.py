"""SeriesStore: values, delta-to-cumulative, validation and staleness, read through the real
exposition with an injected clock."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from tests.support.common import FakeClock, push, scrape
from tests.support.otlp import CUMULATIVE, DELTA, Req, S


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> SeriesStore:
    return SeriesStore(StoreSettings(expiration_seconds=300), clock=clock)


A = {"route": "/a"}


def test_cumulative_counter_keeps_latest_value(store: SeriesStore) -> None:
    push(store, Req().sum("http.requests", [(A, 5, 0, 10)], unit="{request}"))
    push(store, Req().sum("http.requests", [(A, 8, 0, 20)], unit="{request}"))
    s = scrape(store)
    assert s.value("http_requests_total", route="/a", job="svc", instance="i-1") == 8
    assert s.types["http_requests"] == "counter"


def test_delta_points_accumulate_when_contiguous(store: SeriesStore) -> None:
    for start, end, value in [(0, 10, 5), (10, 20, 3), (20, 30, 2)]:
        push(store, Req().sum("jobs", [(A, value, start, end)], temporality=DELTA))
    assert scrape(store).value("jobs_total", route="/a") == 10


def test_delta_out_of_order_point_is_dropped_and_counted(store: SeriesStore) -> None:
    push(store, Req().sum("jobs", [(A, 5, 0, 10)], temporality=DELTA))
    push(store, Req().sum("jobs", [(A, 3, 10, 20)], temporality=DELTA))
    push(store, Req().sum("jobs", [(A, 1, 15, 18)], temporality=DELTA))  # ends before 20
    assert scrape(store).value("jobs_total", route="/a") == 8
    assert store.counters.dropped == {"out_of_order": 1}


def test_delta_gap_resets_the_stream(store: SeriesStore) -> None:
    push(store, Req().sum("jobs", [(A, 5, 0, 10)], temporality=DELTA))
    push(store, Req().sum("jobs", [(A, 3, 10, 20)], temporality=DELTA))
    push(store, Req().sum("jobs", [(A, 2, 30, 40)], temporality=DELTA))  # gap 20..30
    assert scrape(store).value("jobs_total", route="/a") == 2


def test_delta_point_older_than_stream_start_is_dropped(store: SeriesStore) -> None:
    push(store, Req().sum("jobs", [(A, 5, 100, 110)], temporality=DELTA))
    push(store, Req().sum("jobs", [(A, 7, 50, 120)], temporality=DELTA))
    assert scrape(store).value("jobs_total", route="/a") == 5
    assert store.counters.dropped == {"too_old": 1}


def test_cumulative_out_of_order_point_is_dropped(store: SeriesStore) -> None:
    push(store, Req().sum("c", [(A, 9, 0, 20)]))
    push(store, Req().sum("c", [(A, 4, 0, 10)]))
    assert scrape(store).value("c_total", route="/a") == 9
    assert store.counters.dropped == {"out_of_order": 1}


def test_delta_up_down_counter_accumulates_as_gauge(store: SeriesStore) -> None:
    push(store, Req().sum("active", [({}, 3, 0, 10)], temporality=DELTA, monotonic=False))
    push(store, Req().sum("active", [({}, -1, 10, 20)], temporality=DELTA, monotonic=False))
    s = scrape(store)
    assert s.value("active") == 2
    assert s.types["active"] == "gauge"


def test_delta_histogram_accumulates_buckets(store: SeriesStore) -> None:
    bounds = [0.1, 1.0]
    push(
        store,
        Req().histogram("lat", [(A, bounds, [1, 2, 0], 1.5, 0, 10)], unit="s", temporality=DELTA),
    )
    push(
        store,
        Req().histogram("lat", [(A, bounds, [0, 1, 3], 9.0, 10, 20)], unit="s", temporality=DELTA),
    )
    s = scrape(store)
    assert s.value("lat_seconds_bucket", route="/a", le="0.1") == 1
    assert s.value("lat_seconds_bucket", route="/a", le="1") == 4
    assert s.value("lat_seconds_bucket", route="/a", le="+Inf") == 7
    assert s.value("lat_seconds_count", route="/a") == 7
    assert s.value("lat_seconds_sum", route="/a") == 10.5


def test_series_not_updated_for_expiration_disappear(store: SeriesStore, clock: FakeClock) -> None:
    push(store, Req().sum("c", [({"k": "old"}, 1, 0, 10)]))
    clock.now += 200
    push(store, Req().sum("c", [({"k": "new"}, 1, 0, 20)]))
    clock.now += 150  # "old" is 350 s old, "new" 150 s
    s = scrape(store)
    assert s.all("c_total", k="old") == []
    assert s.value("c_total", k="new") == 1
    assert store.series_count == 1
    clock.now += 200
    assert "c_total" not in scrape(store).names()
    assert store.series_count == 0


def test_nan_and_negative_counter_points_are_rejected_with_a_message(store: SeriesStore) -> None:
    batch = push(
        store,
        Req().sum(
            "c",
            [({"k": "a"}, math.nan, 0, 10), ({"k": "b"}, -1.0, 0, 10), ({"k": "c"}, 2.0, 0, 10)],
        ),
    )
    assert batch.rejected_points == 2
    assert "NaN or negative" in batch.error_message
    # refused points are removed, so the forwarder after the store never sends them
    assert len(batch.request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points) == 1
    assert scrape(store).value("c_total", k="c") == 2


def test_invalid_name_rejects_every_point_of_the_metric(store: SeriesStore) -> None:
    batch = push(store, Req().sum("", [(A, 1, 0, 10), ({}, 2, 0, 10)]).sum("ok", [(A, 1, 0, 10)]))
    assert batch.rejected_points == 2
    assert "invalid name" in batch.error_message
    assert scrape(store).value("ok_total", route="/a") == 1


def test_type_conflict_is_rejected(store: SeriesStore) -> None:
    push(store, Req().gauge("temp", [(A, 1.0, 10)]))
    batch = push(
        store,
        Req(service="other")
        .sum("temp", [(A, 1, 0, 10)], monotonic=False, temporality=DELTA)
        .histogram("temp", [(A, [1.0], [1, 0], 0.5, 0, 10)]),
    )
    assert batch.rejected_points == 1
    assert "type conflict" in batch.error_message


def test_attribute_order_does_not_create_a_second_series(store: SeriesStore) -> None:
    push(store, Req().sum("c", [({"a": "1", "b": "2"}, 1, 0, 10)]))
    push(store, Req().sum("c", [({"b": "2", "a": "1"}, 5, 0, 20)]))
    s = scrape(store)
    assert s.value("c_total", a="1", b="2") == 5
    assert store.series_count == 1


def test_no_recorded_value_flag_ends_the_series(store: SeriesStore) -> None:
    req = Req().sum("c", [(A, 3, 0, 10)])
    push(store, req)
    stale = Req().sum("c", [(A, 0, 0, 20)])
    stale.request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].flags = 1
    push(store, stale)
    assert scrape(store).all("c_total") == []


def test_colliding_attribute_keys_are_joined_with_semicolons(store: SeriesStore) -> None:
    push(store, Req().sum("c", [({"a.b": "1", "a_b": "2"}, 1, 0, 10)]))
    assert scrape(store).value("c_total", a_b="1;2") == 1


def test_resource_attributes_become_target_info_and_job_instance(store: SeriesStore) -> None:
    push(
        store,
        Req(
            service="api", instance="pod-7", **{"service.namespace": "shop", "k8s.pod.name": "p"}
        ).gauge("g", [({}, 1.0, 10)]),
    )
    s = scrape(store)
    assert s.value("g", job="shop/api", instance="pod-7") == 1
    assert s.value("target_info", job="shop/api", instance="pod-7", k8s_pod_name="p") == 1


def test_scope_name_and_version_become_labels(store: SeriesStore) -> None:
    req = Req(scope="lib").gauge("g", [({}, 1.0, 10)])
    req.request.resource_metrics[0].scope_metrics[0].scope.version = "2.0"
    push(store, req)
    assert scrape(store).value("g", otel_scope_name="lib", otel_scope_version="2.0") == 1


def test_label_values_are_escaped(store: SeriesStore) -> None:
    push(store, Req().gauge("g", [({"q": 'say "hi"\\\n'}, 1.0, 10)]))
    assert scrape(store).value("g", q='say "hi"\\\n') == 1


def test_per_stream_limit_bounds_series(clock: FakeClock) -> None:
    store = SeriesStore(StoreSettings(max_series_per_stream=3), clock=clock)
    push(store, Req().sum("c", [({"i": str(i)}, 1, 0, 10) for i in range(10)]))
    assert store.series_count <= 4


def test_two_metrics_mapping_to_one_name_do_not_collide(store: SeriesStore) -> None:
    push(store, Req().gauge("a.b", [(A, 1.0, 10)]))
    batch = push(store, Req().gauge("a_b", [(A, 2.0, 10)]))
    assert batch.rejected_points == 1
    assert "name conflict" in batch.error_message
    assert scrape(store).value("a_b", route="/a") == 1


# ------------------------------------------------------------------ found by test_properties.py


def om(store: SeriesStore) -> list[Any]:
    """The OpenMetrics exposition, through prometheus_client's (strict) parser."""
    return list(openmetrics_families(render(store, openmetrics=True).decode()))


def test_scope_attribute_named_name_does_not_repeat_otel_scope_name(store: SeriesStore) -> None:
    # was: g{otel_scope_name="lib",otel_scope_name=""} (a duplicate label: unparseable)
    req = Req(scope="lib").gauge("g", [({}, 1.0, 10)])
    scope = req.request.resource_metrics[0].scope_metrics[0].scope
    for key, value in [("name", "x"), ("a.b", "1"), ("a_b", "2")]:
        kv = scope.attributes.add()
        kv.key, kv.value.string_value = key, value
    push(store, req)
    ((labels, _),) = scrape(store).all("g")
    assert labels["otel_scope_name"] == "lib"
    assert labels["otel_scope_a_b"] == "1;2"


def test_reordered_resource_and_scope_attributes_are_the_same_stream(store: SeriesStore) -> None:
    # was: the second encoding made new streams with the same labels, refused as
    # "name conflict", and target_info appeared twice
    def req(order: list[tuple[str, str]], value: float, t: int) -> Req:
        r = Req(**dict(order)).gauge("g", [({}, value, t)])
        scope = r.request.resource_metrics[0].scope_metrics[0].scope
        for key, v in order:
            kv = scope.attributes.add()
            kv.key, kv.value.string_value = key, v
        return r

    pairs = [("zone", "a"), ("rack", "b")]
    push(store, req(pairs, 1.0, 10))
    batch = push(store, req(list(reversed(pairs)), 2.0, 20))
    assert batch.rejected_points == 0
    s = scrape(store)
    assert s.value("g") == 2.0
    assert len(s.all("target_info")) == 1


def test_metric_named_target_info_is_refused(store: SeriesStore) -> None:
    push(store, Req(zone="a").gauge("g", [({}, 1.0, 10)]))
    batch = push(store, Req(zone="a").gauge("target_info", [({}, 2.0, 10)]))
    assert batch.rejected_points == 1
    assert "name conflict" in batch.error_message
    assert render(store).decode().count("# TYPE target_info") == 1


def test_families_whose_samples_or_metadata_would_clash_are_refused(store: SeriesStore) -> None:
    push(store, Req().histogram("lat", [(A, [1.0], [1, 0], 0.5, 0, 10)]))
    push(store, Req().gauge("x", [(A, 1.0, 10)]))
    # lat_count would repeat the histogram's series; counter `x` is announced as `x` in
    # OpenMetrics, like the gauge
    batch = push(store, Req().gauge("lat_count", [(A, 5.0, 10)]).sum("x", [(A, 1, 0, 10)]))
    assert batch.rejected_points == 2
    assert "name conflict" in batch.error_message
    assert scrape(store).value("lat_count", route="/a") == 1
    assert [f.name for f in om(store)] == ["lat", "x", "target"]  # target: svc/i-1


def test_exponential_histogram_at_extreme_scale_renders(store: SeriesStore) -> None:
    # was: OverflowError from 2.0 ** 1024 (scale -10, a bucket at index 0), so /metrics failed
    req = Req()
    m = req._sm.metrics.add()
    m.name, m.unit = "e", "s"
    m.exponential_histogram.aggregation_temporality = CUMULATIVE
    p = m.exponential_histogram.data_points.add()
    p.time_unix_nano, p.scale = 10 * S, -10
    p.positive.offset = 0
    p.positive.bucket_counts.extend([2, 3])
    p.negative.offset = -2000  # bounds that round to -0.0, next to the zero bucket at 0.0
    p.negative.bucket_counts.extend([1])
    p.zero_count, p.count, p.sum = 4, 10, 1.0
    push(store, req)
    s = scrape(store)
    assert s.value("e_seconds_bucket", le="+Inf") == 10
    assert [v for _, v in s.all("e_seconds_bucket")] == [5, 10]  # -0.0 and 0.0 merged
    assert om(store)  # OpenMetrics: no _sum/_count pair needed, none half-written


def test_exponential_histogram_count_must_match_buckets(store: SeriesStore) -> None:
    # was: accepted, rendered with +Inf (4) below the le="2.0" bucket (42)
    req = Req()
    m = req._sm.metrics.add()
    m.name = "e"
    m.exponential_histogram.aggregation_temporality = CUMULATIVE
    p = m.exponential_histogram.data_points.add()
    p.time_unix_nano = 10 * S
    p.positive.bucket_counts.extend([42])
    p.count = 4
    batch = push(store, req)
    assert batch.rejected_points == 1
    assert "count differs" in batch.error_message


def test_openmetrics_leaves_out_what_it_forbids(store: SeriesStore) -> None:
    # was: _sum beside negative buckets, negative or NaN _sum, negative quantile values:
    # each rejected by prometheus_client's OpenMetrics parser
    push(store, Req().histogram("neg", [(A, [-1.0, 1.0], [1, 1, 1], -3.0, 0, 10)]))
    push(store, Req().histogram("nan", [(A, [1.0], [1, 1], math.nan, 0, 10)]))
    req = Req()
    m = req._sm.metrics.add()
    m.name = "q"
    p = m.summary.data_points.add()
    p.time_unix_nano, p.count, p.sum = 10 * S, 2, -4.0
    for q, v in [(0.5, -2.0), (0.9, 1.0)]:
        qv = p.quantile_values.add()
        qv.quantile, qv.value = q, v
    push(store, req)
    families = {f.name: f for f in om(store)}
    assert {s.name for s in families["neg"].samples} == {"neg_bucket"}
    assert {s.name for s in families["nan"].samples} == {"nan_bucket"}
    assert [(s.name, s.value) for s in families["q"].samples] == [("q", 1.0), ("q_count", 2)]
    # the 0.0.4 text keeps everything
    s = scrape(store)
    assert s.value("neg_sum", route="/a") == -3.0
    assert s.value("q", quantile="0.5") == -2.0


def test_histogram_attribute_le_is_exported_le(store: SeriesStore) -> None:
    # was: lat_bucket{le="x",le="1.0"} (a duplicate label)
    push(store, Req().histogram("lat", [({"le": "x"}, [1.0], [1, 0], 0.5, 0, 10)]))
    assert scrape(store).value("lat_bucket", exported_le="x", le="1") == 1


def test_summary_with_a_repeated_quantile_is_rejected(store: SeriesStore) -> None:
    req = Req()
    m = req._sm.metrics.add()
    m.name = "q"
    p = m.summary.data_points.add()
    p.time_unix_nano = 10 * S
    for q in (0.5, 0.5):
        qv = p.quantile_values.add()
        qv.quantile, qv.value = q, 1.0
    batch = push(store, req)
    assert batch.rejected_points == 1
    assert "quantile appears twice" in batch.error_message


def test_metric_name_without_letters_or_digits_is_rejected(store: SeriesStore) -> None:
    # was: exposed as `_` (summary samples `__sum`, a reserved name)
    batch = push(store, Req().gauge("...", [(A, 1.0, 10)]).gauge("温度", [(A, 1.0, 10)]))
    assert batch.rejected_points == 2
    assert "invalid name" in batch.error_message


def test_series_beyond_the_key_index_still_expire_and_fresh_ones_stay(clock: FakeClock) -> None:
    """The key index holds at most twice the stream limit: a series first seen after it is
    full lives only in the label index, and the sweep must judge it by its own time."""
    store = SeriesStore(StoreSettings(max_series_per_stream=2, expiration_seconds=60), clock=clock)
    x_orders = [
        {"a": "x", "b": "x", "c": "x"},
        {"b": "x", "a": "x", "c": "x"},
        {"c": "x", "b": "x", "a": "x"},
        {"a": "x", "c": "x", "b": "x"},
    ]
    for n, attrs in enumerate(x_orders):  # four keys of series x fill the key index
        push(store, Req().sum("c", [(attrs, 1, 0, 10 + n)]))
    y = {"a": "y", "b": "y", "c": "y"}
    push(store, Req().sum("c", [(y, 1, 0, 20)]))  # y: label index only
    clock.now += 50
    push(store, Req().sum("c", [(y, 2, 0, 30)]))
    clock.now += 20  # x is 70 s old (stale), y 20 s (fresh)
    s = scrape(store)
    assert s.all("c_total", a="x") == []
    assert s.value("c_total", a="y") == 2
    push(store, Req().sum("c", [(x_orders[0], 5, 0, 40)]))
    clock.now += 50  # y is 70 s old, x 50 s
    s = scrape(store)
    assert s.all("c_total", a="y") == []
    assert s.value("c_total", a="x") == 5
    assert store.series_count == 1


def test_scope_schema_url_becomes_a_label_and_part_of_the_identity(store: SeriesStore) -> None:
    """The compatibility spec's otel_scope_schema_url, as the Collector's exporter writes it;
    two schema URLs of one scope are two series, not one overwriting the other."""
    for url, value in (("https://opentelemetry.io/schemas/1.26.0", 1.0), ("", 2.0)):
        req = Req(scope="lib").gauge("g", [({}, value, 10)])
        req.request.resource_metrics[0].scope_metrics[0].schema_url = url
        push(store, req)
    s = scrape(store)
    url = "https://opentelemetry.io/schemas/1.26.0"
    assert s.value("g", otel_scope_name="lib", otel_scope_schema_url=url) == 1
    assert [v for labels, v in s.all("g") if "otel_scope_schema_url" not in labels] == [2]


def test_one_target_info_per_resource_across_stores(clock: FakeClock) -> None:
    """The gateway renders its data store and its self-metrics store together; its own
    resource appears in both and must give one target_info series, not two."""
    stores = [SeriesStore(StoreSettings(expiration_seconds=300), clock=clock) for _ in range(2)]
    for i, one in enumerate(stores):
        push(one, Req(service="gw", version="1").gauge(f"g{i}", [({}, 1.0, 10)]))
    for openmetrics in (False, True):
        text = render(stores, openmetrics=openmetrics).decode()
        assert text.count("target_info{") == 1, text
