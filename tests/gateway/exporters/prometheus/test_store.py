"""SeriesStore: values, delta-to-cumulative, validation and staleness, read through the real
exposition with an injected clock."""

from __future__ import annotations

import math

import pytest

from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch
from tests.support.otlp import DELTA, Req
from tests.support.promtext import Samples, parse


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> SeriesStore:
    return SeriesStore(StoreSettings(expiration_seconds=300), clock=clock)


def push(store: SeriesStore, req: Req) -> MetricsBatch:
    batch = MetricsBatch(req.request)
    store.consume(batch)
    return batch


def scrape(store: SeriesStore) -> Samples:
    return parse(render(store).decode())


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
    assert s.value("lat_seconds_bucket", route="/a", le="1.0") == 4
    assert s.value("lat_seconds_bucket", route="/a", le="+Inf") == 7
    assert s.value("lat_seconds_count", route="/a") == 7
    assert s.value("lat_seconds_sum", route="/a") == 10.5


def test_series_not_updated_for_expiration_disappear(store: SeriesStore, clock: Clock) -> None:
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


def test_per_stream_limit_bounds_series(clock: Clock) -> None:
    store = SeriesStore(StoreSettings(max_series_per_stream=3), clock=clock)
    push(store, Req().sum("c", [({"i": str(i)}, 1, 0, 10) for i in range(10)]))
    assert store.series_count <= 4


def test_two_metrics_mapping_to_one_name_do_not_collide(store: SeriesStore) -> None:
    push(store, Req().gauge("a.b", [(A, 1.0, 10)]))
    batch = push(store, Req().gauge("a_b", [(A, 2.0, 10)]))
    assert batch.rejected_points == 1
    assert "name conflict" in batch.error_message
    assert scrape(store).value("a_b", route="/a") == 1
