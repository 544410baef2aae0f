"""Cardinality limits in the series store: overflow series, exact values, label truncation,
per-metric and per-service limits. Read through the real exposition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.processors.cardinality import CardinalityConfig, OverflowFolder
from tests.support.common import FakeClock, Sink, push, scrape
from tests.support.otlp import CUMULATIVE, DELTA, Req
from tests.support.promtext import Samples

OVERFLOW = {"otel_metric_overflow": "true"}


def make_store(clock: FakeClock | None = None, **limits: object) -> SeriesStore:
    config = CardinalityConfig.model_validate(limits)
    return SeriesStore(StoreSettings(cardinality=config), clock=clock or FakeClock())


def total(samples: Samples, name: str) -> float:
    return sum(v for _, v in samples.all(name))


def test_worked_example_of_the_module_docstring() -> None:
    store = make_store(max_series_per_stream=1)
    steps = [("a", 5, 10), ("b", 3, 20), ("c", 2, 30), ("b", 10, 40), ("b", 4, 50)]
    expected_overflow = [None, 3, 5, 12, 16]
    for (series, value, t), want in zip(steps, expected_overflow, strict=True):
        push(store, Req().sum("c", [({"k": series}, value, 0, t)]))
        s = scrape(store)
        assert s.value("c_total", k="a") == 5
        if want is not None:
            assert s.value("c_total", **OVERFLOW) == want
    assert len(scrape(store).all("c_total")) == 2
    assert store.limiter.counters.overflowed == {"c_total": 4}


def test_delta_input_adds_each_point_to_the_overflow_series() -> None:
    store = make_store(max_series_per_stream=2)
    for i in range(5):
        push(store, Req().sum("jobs", [({"k": str(i)}, 4, 0, 10)], temporality=DELTA))
    push(store, Req().sum("jobs", [({"k": "4"}, 6, 10, 20)], temporality=DELTA))
    s = scrape(store)
    assert s.value("jobs_total", **OVERFLOW) == 4 + 4 + 4 + 6
    assert total(s, "jobs_total") == 5 * 4 + 6


def test_gauge_overflow_is_the_sum_of_current_values() -> None:
    store = make_store(max_series_per_stream=1)
    push(store, Req().gauge("g", [({"k": "a"}, 1.0, 10), ({"k": "b"}, 5.0, 10)]))
    push(store, Req().gauge("g", [({"k": "c"}, 2.0, 10)]))
    push(store, Req().gauge("g", [({"k": "b"}, 3.0, 20)]))  # goes down: no reset for a gauge
    assert scrape(store).value("g", **OVERFLOW) == 3.0 + 2.0


def test_per_metric_limit_replaces_the_default() -> None:
    store = make_store(max_series_per_stream=100, per_metric={"small_total": 2})
    push(store, Req().sum("small", [({"k": str(i)}, 1, 0, 10) for i in range(10)]))
    push(store, Req().sum("big", [({"k": str(i)}, 1, 0, 10) for i in range(10)]))
    s = scrape(store)
    assert len(s.all("small_total")) == 3
    assert s.value("small_total", **OVERFLOW) == 8
    assert len(s.all("big_total")) == 10


def test_per_service_limit_counts_every_stream_of_the_service() -> None:
    store = make_store(max_series_per_service=5)
    push(store, Req(service="a").sum("x", [({"k": str(i)}, 1, 0, 10) for i in range(4)]))
    push(store, Req(service="a").sum("y", [({"k": str(i)}, 1, 0, 10) for i in range(4)]))
    push(store, Req(service="b").sum("y", [({"k": str(i)}, 1, 0, 10) for i in range(4)]))
    s = scrape(store)
    assert len(s.all("x_total", job="a")) == 4
    # a's fifth series fits, then y overflows; service b has its own budget.
    assert s.value("y_total", job="a", **OVERFLOW) == 3
    assert len(s.all("y_total", job="b")) == 4
    assert total(s, "y_total") == 8


def test_untracked_overflowed_series_are_dropped_and_counted() -> None:
    store = make_store(max_series_per_stream=1, max_tracked_overflow_series=2)
    push(store, Req().sum("c", [({"k": str(i)}, 1, 0, 10) for i in range(5)]))
    s = scrape(store)
    assert s.value("c_total", **OVERFLOW) == 2
    assert store.counters.dropped == {"cardinality_limit": 2}


def test_overflow_series_expires_with_its_members_and_starts_again() -> None:
    clock = FakeClock()
    store = make_store(clock, max_series_per_stream=1)
    push(store, Req().sum("c", [({"k": "a"}, 1, 0, 10), ({"k": "b"}, 7, 0, 10)]))
    clock.now += 400
    store.expire()
    assert store.series_count == 0
    push(store, Req().sum("c", [({"k": "x"}, 1, 0, 20), ({"k": "y"}, 2, 0, 20)]))
    assert scrape(store).value("c_total", **OVERFLOW) == 2


def test_long_label_values_are_cut_with_a_marker_and_counted() -> None:
    store = make_store(max_label_value_length=10)
    push(store, Req().gauge("g", [({"path": "/" + "x" * 50, "ok": "short"}, 1.0, 10)]))
    push(store, Req().gauge("g", [({"path": "/" + "x" * 50, "ok": "short"}, 2.0, 20)]))
    s = scrape(store)
    assert s.value("g", path="/xxxxxx...", ok="short") == 2.0
    assert store.limiter.counters.truncated == {"g": 1}


def test_histograms_over_the_limit_add_their_increases_bucket_by_bucket() -> None:
    store = make_store(max_series_per_stream=1)
    first = [({"k": str(i)}, [1.0], [1, i], 0.5 + i, 0, 10) for i in range(3)]
    push(store, Req().histogram("h", first, unit="s"))
    # k=1 grows, k=2 restarts (its count goes down): the whole point is its increase.
    later = [({"k": "1"}, [1.0], [3, 4], 9.0, 0, 20), ({"k": "2"}, [1.0], [1, 0], 0.25, 15, 20)]
    push(store, Req().histogram("h", later, unit="s"))
    s = scrape(store)
    overflow = {"otel_metric_overflow": "true"}
    # k=1: (1,1) then (3,4): +2, +3; k=2: (1,2) then reset to (1,0)
    assert s.value("h_seconds_bucket", le="1", **overflow) == 3 + 1 + 1
    assert s.value("h_seconds_bucket", le="+Inf", **overflow) == (3 + 4) + (1 + 0) + 3
    assert s.value("h_seconds_count", **overflow) == 7 + 1 + 3
    assert s.value("h_seconds_sum", **overflow) == pytest.approx(9.0 + 0.25 + 2.5)
    assert store.limiter.counters.overflowed == {"h_seconds": 4}


def test_overflowed_histograms_with_other_bounds_are_dropped_and_counted() -> None:
    store = make_store(max_series_per_stream=1)
    points = [
        ({"k": "0"}, [1.0], [1, 0], 0.5, 0, 10),
        ({"k": "1"}, [1.0], [1, 0], 0.5, 0, 10),
        ({"k": "2"}, [2.0, 5.0], [1, 0, 0], 0.5, 0, 10),
    ]
    push(store, Req().histogram("h", points, unit="s"))
    assert scrape(store).value("h_seconds_count", otel_metric_overflow="true") == 1
    assert store.limiter.counters.dropped == {"overflow_bounds_mismatch": 1}


def test_summaries_over_the_limit_are_dropped_and_counted() -> None:
    store = make_store(max_series_per_stream=1)
    req = Req()
    m = req._sm.metrics.add()
    m.name = "q"
    for i in range(3):
        p = m.summary.data_points.add()
        p.attributes.add(key="k").value.string_value = str(i)
        p.time_unix_nano, p.count, p.sum = 10, 1, 1.0
    push(store, req)
    assert len(scrape(store).all("q_count")) == 1
    assert store.counters.dropped == {"cardinality_limit": 2}


def test_forwarded_batches_fold_histograms_and_gauges_like_the_store() -> None:
    store = make_store(max_series_per_stream=1)
    upstream = SeriesStore(StoreSettings(max_series_per_stream=10_000))
    folder = OverflowFolder(store, upstream)
    for t, scale in ((10, 1), (20, 2)):
        req = Req().histogram(
            "h", [({"k": str(i)}, [1.0], [i * scale, 1], 1.0 * scale, 0, t) for i in range(4)]
        )
        req.gauge("g", [({"k": str(i)}, float(i * scale), t) for i in range(4)])
        folder.consume(push(store, req))
    ours, theirs = scrape(store), scrape(upstream)
    for name in ("h_bucket", "h_count", "h_sum", "g"):
        strip = {"job", "instance", "otel_scope_name"}
        mine = sorted(
            (sorted((k, v) for k, v in lb.items() if k not in strip), x) for lb, x in ours.all(name)
        )
        upstream_view = sorted(
            (sorted((k, v) for k, v in lb.items() if k not in strip), x)
            for lb, x in theirs.all(name)
        )
        assert mine == upstream_view, name
    assert theirs.value("g", otel_metric_overflow="true") == (1 + 2 + 3) * 2
    assert theirs.value("h_count", otel_metric_overflow="true") == (1 + 2 + 3) * 2 + 3


def test_the_folder_leaves_batches_alone_until_a_stream_overflows() -> None:
    store = make_store(max_series_per_stream=10)
    sink = Sink()
    req = Req().sum("c", [({"k": str(i)}, 1, 0, 10) for i in range(5)])
    before = req.request.SerializeToString()
    OverflowFolder(store, sink).consume(push(store, req))
    assert [b.request.SerializeToString() for b in sink.batches] == [before]


# A stream of updates: (series index, increase), pushed in requests of a few points.
_updates = st.lists(st.tuples(st.integers(0, 24), st.integers(0, 1000)), min_size=1, max_size=120)


@settings(max_examples=150, deadline=None)
@given(
    updates=_updates,
    limit=st.integers(1, 12),
    chunk=st.integers(1, 9),
    delta=st.booleans(),
)
def test_sum_of_output_equals_sum_of_input_and_series_stay_bounded(
    updates: list[tuple[int, int]], limit: int, chunk: int, delta: bool
) -> None:
    store = make_store(max_series_per_stream=limit)
    # What the forwarder sends, translated by a store without limits (a Collector's Prometheus).
    upstream = SeriesStore(StoreSettings(max_series_per_stream=10_000))
    folder = OverflowFolder(store, upstream)
    cumulative: dict[int, int] = {}
    last_end: dict[int, int] = {}
    t = 0
    for offset in range(0, len(updates), chunk):
        t += 1
        points = []
        seen: set[int] = set()
        for index, increase in updates[offset : offset + chunk]:
            if index in seen:
                continue  # one point per series per request, as an SDK sends
            seen.add(index)
            cumulative[index] = cumulative.get(index, 0) + increase
            if delta:
                start = last_end.get(index, 0)
                points.append(({"series": f"s{index}"}, increase, start, t))
                last_end[index] = t
            else:
                points.append(({"series": f"s{index}"}, cumulative[index], 0, t))
        temporality = DELTA if delta else CUMULATIVE
        batch = push(store, Req().sum("events", points, temporality=temporality))
        folder.consume(batch)
        for s in (store, upstream):
            assert len(scrape(s).all("events_total")) <= limit + 1
            assert s.series_count <= limit + 1
    for s in (store, upstream):
        assert total(scrape(s), "events_total") == sum(cumulative.values())
        assert s.counters.dropped == {}


def test_the_gateway_wide_cap_refuses_new_series_streams_and_services() -> None:
    clock = FakeClock()
    store = make_store(clock, max_series_total=3, max_series_per_stream=2)
    # a: 2 series and an overflow series (3 in all: the cap)
    push(store, Req().sum("a", [({"k": str(i)}, 1, 0, 10) for i in range(3)]))
    assert store.series_count == 3
    # At the cap: a's overflow series takes a new series of a; a new metric and a new service
    # get nothing, and the client hears of it.
    batch = push(store, Req().sum("a", [({"k": "new"}, 5, 0, 20)]))
    assert batch.rejected_points == 0
    batch = push(store, Req().sum("b", [({"k": "x"}, 1, 0, 20)]))
    assert batch.rejected_points == 1 and "max_series_total" in batch.error_message
    batch = push(store, Req(service="other").sum("a", [({"k": "x"}, 1, 0, 20)]))
    assert batch.rejected_points == 1
    s = scrape(store)
    assert store.series_count == 3
    assert s.value("a_total", **OVERFLOW) == 1 + 5
    assert s.all("b_total") == [] and s.all("a_total", job="other") == []
    assert store.counters.capped == 2
    # Held series keep updating.
    push(store, Req().sum("a", [({"k": "0"}, 7, 0, 30)]))
    assert scrape(store).value("a_total", k="0") == 7
    # Once the held series go stale, the cap makes room by itself (no scrape needed).
    clock.now += 301
    batch = push(store, Req().sum("b", [({"k": "x"}, 1, 0, 40)]))
    assert batch.rejected_points == 0
    assert scrape(store).value("b_total", k="x") == 1


def test_at_the_cap_a_stream_without_an_overflow_series_drops_and_so_does_the_forward() -> None:
    store = make_store(max_series_total=2)
    sink = Sink()
    folder = OverflowFolder(store, sink)
    folder.consume(push(store, Req().gauge("g", [({"k": str(i)}, 1.0, 10) for i in range(4)])))
    (batch,) = sink.batches
    assert batch.rejected_points == 2
    dps = batch.request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    assert sorted(p.attributes[0].value.string_value for p in dps) == ["0", "1"]
    assert store.counters.capped == 2


def test_folds_of_encodings_the_store_evicted_reach_upstream_through_the_others() -> None:
    """The store indexes a few encodings of one resource (`dropped_attributes_count` makes
    another); a request with more evicts some, and the folder cannot find the stream through
    those. Their points are in the overflow series all the same, so the overflow point sent
    for an encoding it does find carries their increase: nothing lost, nothing twice (sending
    them unfolded as well counted them twice)."""
    store = make_store(max_series_per_stream=1)
    upstream = SeriesStore(StoreSettings(max_series_per_stream=10_000))
    req = Req()
    del req.request.resource_metrics[:]
    for n in range(12):
        one = Req().sum("c", [({"k": str(n)}, 1, 0, 10)], temporality=DELTA)
        rm = one.request.resource_metrics[0]
        rm.resource.dropped_attributes_count = n
        req.request.resource_metrics.append(rm)
    OverflowFolder(store, upstream).consume(push(store, req))
    assert total(scrape(store), "c_total") == 12
    assert total(scrape(upstream), "c_total") == 12
