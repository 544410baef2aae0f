"""Exemplars: kept by the store, written in OpenMetrics only, read back through
prometheus_client's OpenMetrics parser (which checks where exemplars may stand and their
128-character limit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.processors.cardinality import CardinalityConfig
from tests.support.common import FakeClock, push
from tests.support.otlp import DELTA, Req, S

TRACE = bytes(range(1, 17))
SPAN = bytes(range(1, 9))
A = {"route": "/a"}


def exemplar(
    point: Any,
    value: float,
    t: float,
    *,
    trace: bytes = TRACE,
    span: bytes = SPAN,
    attributes: Mapping[str, str] | None = None,
) -> None:
    """Adds an exemplar (time in seconds) to a data point of a `Req`."""
    e = point.exemplars.add()
    e.trace_id, e.span_id = trace, span
    if isinstance(value, int):
        e.as_int = value
    else:
        e.as_double = value
    e.time_unix_nano = int(t * S)
    for key, text in (attributes or {}).items():
        kv = e.filtered_attributes.add()
        kv.key = key
        kv.value.string_value = text


def points(req: Req, metric: int = 0) -> Any:
    m = req.request.resource_metrics[0].scope_metrics[0].metrics[metric]
    return getattr(m, m.WhichOneof("data")).data_points


def samples(store: SeriesStore) -> list[Sample]:
    """Every sample of the store's OpenMetrics exposition, through the real parser."""
    text = render(store, openmetrics=True).decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def exemplar_of(store: SeriesStore, name: str, **labels: str) -> Any:
    found = [
        s
        for s in samples(store)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, found
    return found[0].exemplar


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> SeriesStore:
    return SeriesStore(StoreSettings(expiration_seconds=300, exemplars=True), clock=clock)


def counter(value: int, start: int, end: int, temporality: int | None = None) -> Req:
    kwargs = {"temporality": temporality} if temporality is not None else {}
    return Req().sum("http.requests", [(A, value, start, end)], unit="{request}", **kwargs)


def test_a_counter_sample_carries_its_exemplar_in_openmetrics_only(store: SeriesStore) -> None:
    req = counter(5, 0, 10)
    exemplar(points(req)[0], 0.25, 9.5, attributes={"user.id": "u-1"})
    push(store, req)
    ex = exemplar_of(store, "http_requests_total", route="/a")
    assert ex.labels == {
        "trace_id": "0102030405060708090a0b0c0d0e0f10",
        "span_id": "0102030405060708",
        "user_id": "u-1",
    }
    assert ex.value == 0.25
    assert (ex.timestamp.sec, ex.timestamp.nsec) == (9, 500_000_000)
    text = render(store).decode()  # 0.0.4 has no exemplars
    assert "http_requests_total" in text and "trace_id" not in text and " # " not in text


def test_the_newest_exemplar_wins_and_outlives_points_without_one(store: SeriesStore) -> None:
    req = counter(5, 0, 10)
    exemplar(points(req)[0], 1, 8, trace=b"\x01" * 16)
    exemplar(points(req)[0], 2, 9, trace=b"\x02" * 16)  # newest, not last
    exemplar(points(req)[0], 3, 7, trace=b"\x03" * 16)
    push(store, req)
    assert exemplar_of(store, "http_requests_total").labels["trace_id"] == "02" * 16
    push(store, counter(6, 0, 20))  # no exemplar: the last one stays
    ex = exemplar_of(store, "http_requests_total")
    assert ex.labels["trace_id"] == "02" * 16 and ex.value == 2
    older = counter(7, 0, 30)
    exemplar(points(older)[0], 4, 8.5, trace=b"\x04" * 16)  # older than the one kept
    push(store, older)
    assert exemplar_of(store, "http_requests_total").labels["trace_id"] == "02" * 16
    newer = counter(8, 0, 40)
    exemplar(points(newer)[0], 5, 39, trace=b"\x05" * 16)
    push(store, newer)
    assert exemplar_of(store, "http_requests_total").labels["trace_id"] == "05" * 16


def test_a_point_refused_or_out_of_order_leaves_no_exemplar(store: SeriesStore) -> None:
    push(store, counter(5, 0, 20))
    late = counter(4, 0, 10)  # before the kept point: dropped
    exemplar(points(late)[0], 1, 9)
    push(store, late)
    negative = counter(-1, 0, 30)  # refused: negative counter
    exemplar(points(negative)[0], 1, 29)
    push(store, negative)
    assert store.counters.dropped == {"out_of_order": 1}
    assert exemplar_of(store, "http_requests_total") is None


def test_delta_sums_keep_the_exemplar_of_the_latest_point(store: SeriesStore) -> None:
    first = counter(5, 0, 10, DELTA)
    exemplar(points(first)[0], 1, 5, trace=b"\x01" * 16)
    push(store, first)
    second = counter(3, 10, 20, DELTA)
    exemplar(points(second)[0], 1, 15, trace=b"\x02" * 16)
    push(store, second)
    found = [s for s in samples(store) if s.name == "http_requests_total"]
    assert found[0].value == 8
    assert found[0].exemplar.labels["trace_id"] == "02" * 16
    late = counter(1, 15, 18, DELTA)  # ends before 20: dropped, and its exemplar with it
    exemplar(points(late)[0], 1, 19, trace=b"\x03" * 16)
    push(store, late)
    assert store.counters.dropped == {"out_of_order": 1}
    assert exemplar_of(store, "http_requests_total").labels["trace_id"] == "02" * 16


def test_gauges_and_non_monotonic_sums_have_none(store: SeriesStore) -> None:
    req = (
        Req().gauge("temperature", [(A, 21.5, 10)]).sum("active", [(A, 3, 0, 10)], monotonic=False)
    )
    exemplar(points(req, 0)[0], 21.5, 9)
    exemplar(points(req, 1)[0], 1, 9)
    push(store, req)
    assert all(s.exemplar is None for s in samples(store))
    assert render(store, openmetrics=True).count(b" # ") == 0


def test_a_point_with_exemplars_is_the_same_series(store: SeriesStore) -> None:
    push(store, counter(5, 0, 10))
    req = counter(6, 0, 20)
    exemplar(points(req)[0], 1, 19)
    push(store, req)
    found = [s for s in samples(store) if s.name == "http_requests_total"]
    assert len(found) == 1 and found[0].value == 6 and found[0].exemplar is not None
    assert store.series_count == 1


BOUNDS = [0.1, 1.0, 5.0]


def histogram(counts: list[int], start: int, end: int, bounds: list[float] = BOUNDS) -> Req:
    return Req().histogram("rpc.duration", [(A, bounds, counts, 1.0, start, end)], unit="s")


def bucket_exemplars(store: SeriesStore) -> dict[str, Any]:
    return {
        s.labels["le"]: s.exemplar
        for s in samples(store)
        if s.name == "rpc_duration_seconds_bucket"
    }


def test_histogram_exemplars_go_to_the_bucket_their_value_falls_in(store: SeriesStore) -> None:
    req = histogram([1, 1, 0, 2], 0, 10)
    p = points(req)[0]
    exemplar(p, 0.05, 1, trace=b"\x01" * 16)
    exemplar(p, 1.0, 2, trace=b"\x02" * 16)  # on a bound: that bucket (le is "<=")
    exemplar(p, 0.5, 3, trace=b"\x03" * 16)  # same bucket, newer
    exemplar(p, 9.0, 4, trace=b"\x04" * 16)  # past the last bound: +Inf
    push(store, req)
    got = bucket_exemplars(store)
    assert got["0.1"].labels["trace_id"] == "01" * 16
    assert got["1.0"].labels["trace_id"] == "03" * 16 and got["1.0"].value == 0.5
    assert got["5.0"] is None
    assert got["+Inf"].labels["trace_id"] == "04" * 16 and got["+Inf"].value == 9.0
    assert all(s.exemplar is None for s in samples(store) if not s.name.endswith("_bucket"))
    assert " # " not in render(store).decode()


def test_each_bucket_keeps_its_most_recent_exemplar(store: SeriesStore) -> None:
    first = histogram([1, 1, 0, 0], 0, 10)
    exemplar(points(first)[0], 0.05, 9, trace=b"\x01" * 16)
    exemplar(points(first)[0], 0.5, 9, trace=b"\x02" * 16)
    push(store, first)
    second = histogram([1, 2, 1, 0], 0, 20)
    exemplar(points(second)[0], 0.7, 19, trace=b"\x03" * 16)
    exemplar(points(second)[0], 3.0, 19, trace=b"\x04" * 16)
    push(store, second)
    got = bucket_exemplars(store)
    assert got["0.1"].labels["trace_id"] == "01" * 16  # untouched by the second point
    assert got["1.0"].labels["trace_id"] == "03" * 16
    assert got["5.0"].labels["trace_id"] == "04" * 16
    assert got["+Inf"] is None


def test_delta_histograms_keep_exemplars_across_points(store: SeriesStore) -> None:
    first = Req().histogram(
        "rpc.duration", [(A, BOUNDS, [1, 0, 0, 0], 0.05, 0, 10)], unit="s", temporality=DELTA
    )
    exemplar(points(first)[0], 0.05, 9, trace=b"\x01" * 16)
    push(store, first)
    second = Req().histogram(
        "rpc.duration", [(A, BOUNDS, [0, 0, 0, 1], 9.0, 10, 20)], unit="s", temporality=DELTA
    )
    exemplar(points(second)[0], 9.0, 19, trace=b"\x02" * 16)
    push(store, second)
    got = bucket_exemplars(store)
    assert got["0.1"].labels["trace_id"] == "01" * 16
    assert got["+Inf"].labels["trace_id"] == "02" * 16


def test_a_histogram_stream_without_exemplars_is_searched_one_request_in_eight(
    store: SeriesStore,
) -> None:
    """Reading an empty exemplars field costs a new object per point (upb), so a stream that
    never had an exemplar is searched in its first request and one in eight after."""
    push(store, histogram([1, 0, 0, 0], 0, 10))  # request 1: searched, nothing found
    second = histogram([2, 0, 0, 0], 0, 20)  # request 2: not searched
    exemplar(points(second)[0], 0.05, 19, trace=b"\x02" * 16)
    push(store, second)
    assert all(ex is None for ex in bucket_exemplars(store).values())
    for r in range(3, 9):
        push(store, histogram([r, 0, 0, 0], 0, 10 * r))
    ninth = histogram([9, 0, 0, 0], 0, 90)  # request 9: searched
    exemplar(points(ninth)[0], 0.05, 89, trace=b"\x09" * 16)
    push(store, ninth)
    assert bucket_exemplars(store)["0.1"].labels["trace_id"] == "09" * 16
    tenth = histogram([10, 0, 0, 0], 0, 100)  # once found, every request is searched
    exemplar(points(tenth)[0], 0.07, 99, trace=b"\x0a" * 16)
    push(store, tenth)
    assert bucket_exemplars(store)["0.1"].labels["trace_id"] == "0a" * 16


def test_changed_bounds_never_put_an_exemplar_in_the_wrong_bucket(store: SeriesStore) -> None:
    first = histogram([0, 1, 0, 0], 0, 10)
    exemplar(points(first)[0], 0.5, 9)  # bucket le=1.0 under the first bounds
    push(store, first)
    push(store, histogram([1, 0, 0, 0], 0, 20, bounds=[0.2, 0.3, 0.4]))  # same count
    assert all(ex is None for ex in bucket_exemplars(store).values())
    push(store, histogram([1, 0, 0], 0, 30, bounds=[0.2, 0.3]))  # another count
    assert all(ex is None for ex in bucket_exemplars(store).values())


def test_exponential_histograms_and_summaries_have_none(store: SeriesStore) -> None:
    req = Req()
    m = req._metric("exp.latency", "s", "")
    m.exponential_histogram.aggregation_temporality = 2
    p = m.exponential_histogram.data_points.add()
    p.time_unix_nano, p.count, p.sum, p.scale = 10 * S, 1, 2.0, 0
    p.positive.offset = 0
    p.positive.bucket_counts.append(1)
    exemplar(p, 2.0, 9)
    push(store, req)
    assert [s for s in samples(store) if s.name.startswith("exp_latency")]
    assert all(s.exemplar is None for s in samples(store))


def test_the_label_set_stays_within_128_characters_and_keeps_the_ids(store: SeriesStore) -> None:
    req = counter(5, 0, 10)
    attributes = {"a": "x" * 30, "b": "y" * 40, "c": "z" * 10, "d": "w" * 5}
    exemplar(points(req)[0], 1, 9, attributes=attributes)
    push(store, req)
    labels = exemplar_of(store, "http_requests_total").labels
    # The ids take 8 + 32 + 7 + 16 = 63; in name order a (31) fits, b (41) does not, c (11)
    # and d (6) do: 111 in all.
    assert set(labels) == {"trace_id", "span_id", "a", "c", "d"}
    assert sum(len(k) + len(v) for k, v in labels.items()) == 111


def test_a_huge_attribute_is_left_out_not_the_exemplar(store: SeriesStore) -> None:
    req = counter(5, 0, 10)
    exemplar(points(req)[0], 1, 9, attributes={"note": "é" * 200, "trace.id": "t"})
    push(store, req)
    labels = exemplar_of(store, "http_requests_total").labels
    # an attribute that sanitises to an id's name does not overwrite it
    assert labels == {
        "trace_id": TRACE.hex(),
        "span_id": SPAN.hex(),
        "exported_trace_id": "t",
    }


def test_attributes_that_need_escaping_are_left_out(store: SeriesStore) -> None:
    req = counter(5, 0, 10)
    attributes = {"quote": 'say "hi"', "slash": "a\\b", "line": "a\nb", "plain": "ok"}
    exemplar(points(req)[0], 1, 9, attributes=attributes)
    push(store, req)
    labels = exemplar_of(store, "http_requests_total").labels
    assert labels == {"trace_id": TRACE.hex(), "span_id": SPAN.hex(), "plain": "ok"}


def test_without_ids_the_exemplar_has_its_attributes_only(store: SeriesStore) -> None:
    req = counter(5, 0, 10)
    exemplar(points(req)[0], 1, 9, trace=b"", span=b"", attributes={"k": "v"})
    push(store, req)
    assert exemplar_of(store, "http_requests_total").labels == {"k": "v"}
    zero = counter(6, 0, 20)
    exemplar(points(zero)[0], 2, 19, trace=b"\0" * 16, span=b"\0" * 8)
    push(store, zero)
    ex = exemplar_of(store, "http_requests_total")
    assert ex.labels == {} and ex.value == 2  # written `# {} 2`, as OpenMetrics asks


def test_a_malformed_newest_exemplar_gives_way_to_the_next(store: SeriesStore) -> None:
    req = counter(5, 0, 10)
    exemplar(points(req)[0], 1, 7, trace=b"\x01" * 16)
    exemplar(points(req)[0], 2, 9, trace=b"\x02" * 15)  # newest, but no trace id of OTLP's size
    exemplar(points(req)[0], 3, 8, trace=b"\x03" * 16)
    push(store, req)
    assert exemplar_of(store, "http_requests_total").labels["trace_id"] == "03" * 16
    hist = histogram([0, 1, 0, 0], 0, 10)
    exemplar(points(hist)[0], 0.5, 7, trace=b"\x04" * 16)
    exemplar(points(hist)[0], 0.6, 9, trace=b"\x05" * 16, span=b"\x05" * 9)
    push(store, hist)
    assert bucket_exemplars(store)["1.0"].labels["trace_id"] == "04" * 16


@pytest.mark.parametrize(
    ("trace", "span", "value"),
    [(b"\x01" * 15, SPAN, 1.0), (TRACE, b"\x01" * 9, 1.0), (TRACE, SPAN, float("nan"))],
)
def test_a_malformed_exemplar_is_left_out_and_the_point_kept(
    store: SeriesStore, trace: bytes, span: bytes, value: float
) -> None:
    req = counter(5, 0, 10)
    exemplar(points(req)[0], value, 9, trace=trace, span=span)
    push(store, req)
    found = [s for s in samples(store) if s.name == "http_requests_total"]
    assert found[0].value == 5 and found[0].exemplar is None


def test_an_exemplar_goes_with_its_expired_series(store: SeriesStore, clock: FakeClock) -> None:
    b = {"route": "/b"}
    req = Req().sum("http.requests", [(A, 5, 0, 10), (b, 1, 0, 10)], unit="{request}")
    exemplar(points(req)[0], 1, 9)
    push(store, req)
    clock.advance(200)
    push(store, Req().sum("http.requests", [(b, 2, 0, 200)], unit="{request}"))
    clock.advance(200)  # /a is 400 s old, /b 200 s: only /a expires, the stream stays
    store.expire()
    assert store.series_count == 1
    push(store, counter(1, 400, 410))  # /a again, without an exemplar
    assert exemplar_of(store, "http_requests_total", route="/a") is None


def test_overflowed_series_have_no_exemplars(clock: FakeClock) -> None:
    store = SeriesStore(
        StoreSettings(
            cardinality=CardinalityConfig(
                max_series_per_stream=2, max_series_per_service=0, max_label_value_length=0
            ),
            exemplars=True,
        ),
        clock=clock,
    )
    req = Req().sum("jobs", [({"n": str(i)}, 1, 0, 10) for i in range(5)])
    for i, p in enumerate(points(req)):
        exemplar(p, 1, 9, trace=bytes([i + 1]) * 16)
    push(store, req)
    found = {s.labels.get("n", "overflow"): s for s in samples(store) if s.name == "jobs_total"}
    assert found["0"].exemplar.labels["trace_id"] == "01" * 16
    assert found["1"].exemplar.labels["trace_id"] == "02" * 16
    overflow = [s for s in found.values() if s.labels.get("otel_metric_overflow") == "true"]
    assert len(overflow) == 1 and overflow[0].exemplar is None and overflow[0].value == 3


def test_off_by_default_nothing_is_kept_or_shown(clock: FakeClock) -> None:
    """`prometheus.exemplars` is off by default (as the Collector's prometheusexporter): the
    values are exposed, no exemplar is kept or shown."""
    store = SeriesStore(StoreSettings(), clock=clock)
    req = counter(5, 0, 10)
    exemplar(points(req)[0], 0.25, 9.5)
    push(store, req)
    assert exemplar_of(store, "http_requests_total", route="/a") is None
    assert all(stream.exemplars is None for stream in store._streams.values())
