"""SeriesStore: the indexes keyed by what clients send (resources, scopes, streams, families,
the limiter's overflow state and counts) stay bounded however many names clients invent, and
are forgotten with what they name.

The sizes are read from the store's private indexes on purpose: what is under test is exactly
that those dicts do not grow. No scrape runs during a flood unless the test says so, because
expiry runs on scrapes: the bound must hold without one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.processors.cardinality import CardinalityConfig
from tests.support.common import FakeClock, push, scrape
from tests.support.otlp import Req

FLOOD = 10_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _store(clock: FakeClock, **cardinality: int) -> SeriesStore:
    config = CardinalityConfig(**cardinality) if cardinality else None
    return SeriesStore(StoreSettings(expiration_seconds=300, cardinality=config), clock=clock)


def _sizes(store: SeriesStore) -> dict[str, int]:
    limiter = store.limiter
    return {
        "resources": len(store._resources),
        "resource_keys": len(store._resource_keys),
        "scopes": len(store._scopes),
        "scope_keys": len(store._scope_keys),
        "streams": len(store._streams),
        "families": len(store._families),
        "claims": len(store._claims),
        "overflows": len(limiter._overflows),
        "overflowed_counts": len(limiter.counters.overflowed),
        "truncated_counts": len(limiter.counters.truncated),
    }


def _legit(store: SeriesStore) -> None:
    """One well-behaved service with one series, held through every flood."""
    push(store, Req(service="legit", scope="legit").gauge("up", [({}, 1.0, 10)]))


# What a request without a series looks like: (request for the n-th name, points refused).
_NO_SERIES: dict[str, Callable[[Req], tuple[Req, int]]] = {
    "no metric": lambda r: (r, 0),
    "metric without points": lambda r: (r.sum("c", []), 0),
    "all points invalid": lambda r: (r.sum("c", [({}, -1, 0, 10)]), 1),
    "metric name invalid": lambda r: (r.gauge("", [({}, 1.0, 10)]), 1),
}


@pytest.mark.parametrize("shape", list(_NO_SERIES))
def test_new_scope_names_without_series_leave_the_indexes_as_they_were(
    clock: FakeClock, shape: str
) -> None:
    store = _store(clock)
    _legit(store)
    before = _sizes(store)
    refused = 0
    for n in range(FLOOD):
        req, bad = _NO_SERIES[shape](Req(service="legit", scope=f"scope-{n}"))
        refused += push(store, req).rejected_points
        assert refused == bad * (n + 1)  # every refused point is reported, none silently
    assert _sizes(store) == before
    assert scrape(store).value("up", job="legit") == 1.0


@pytest.mark.parametrize("shape", list(_NO_SERIES))
def test_new_resources_without_series_leave_the_indexes_as_they_were(
    clock: FakeClock, shape: str
) -> None:
    store = _store(clock)
    _legit(store)
    before = _sizes(store)
    for n in range(FLOOD):
        push(store, _NO_SERIES[shape](Req(service="svc", instance=f"pod-{n}"))[0])
    assert _sizes(store) == before
    # Only resources with a series give a target_info (as the Collector's exporter).
    assert len(store.target_infos()) == 1


def test_new_metric_names_with_invalid_points_leave_no_family(clock: FakeClock) -> None:
    store = _store(clock)
    _legit(store)
    before = _sizes(store)
    for n in range(FLOOD):
        push(store, Req(service="legit", scope="legit").sum(f"c{n}", [({}, -1, 0, 10)]))
    assert _sizes(store) == before


def test_new_scopes_at_the_series_cap_are_not_kept(clock: FakeClock) -> None:
    store = _store(clock, max_series_total=1)
    _legit(store)
    before = _sizes(store)
    capped = 0
    for n in range(FLOOD):
        req = Req(service="legit", scope=f"scope-{n}").gauge("g", [({}, 1.0, 10)])
        capped += push(store, req).rejected_points
    assert capped == store.counters.capped == FLOOD
    assert _sizes(store) == before


def test_other_encodings_of_one_resource_and_scope_are_indexed_a_few_times(
    clock: FakeClock,
) -> None:
    """Each `dropped_attributes_count` is another encoding of the same labels: the series
    keeps updating and the index keeps a few encodings, not one per request."""
    store = _store(clock)
    for n in range(1, FLOOD + 1):
        req = Req().gauge("g", [({}, float(n), n)])
        rm = req.request.resource_metrics[0]
        rm.resource.dropped_attributes_count = n
        rm.scope_metrics[0].scope.dropped_attributes_count = n
        push(store, req)
    assert scrape(store).value("g") == FLOOD
    sizes = _sizes(store)
    assert sizes["resources"] <= 4 and sizes["scopes"] <= 4
    assert sizes["resource_keys"] == sizes["scope_keys"] == sizes["streams"] == 1


def test_everything_a_client_named_is_forgotten_after_expiry(clock: FakeClock) -> None:
    """Series in many resources, scopes and metrics, label values cut, one stream overflowed;
    once they expire nothing of them is left: the store then looks like a new one that saw
    only the next request. No per-service limit: the limiter's once-a-second recount, which
    drops the overflow state of dropped streams, ran only under one."""
    store = _store(clock, max_series_per_stream=1, max_series_per_service=0)
    fresh = _store(clock, max_series_per_stream=1, max_series_per_service=0)
    for n in range(1_000):
        req = Req(service=f"svc-{n}", scope=f"scope-{n}")
        push(store, req.gauge(f"g{n}", [({"k": "x" * 600}, 1.0, 10)]))
    push(store, Req().sum("c", [({"k": "a"}, 1, 0, 10), ({"k": "b"}, 1, 0, 10)]))
    grown = _sizes(store)
    assert grown["scopes"] > 1_000 and grown["truncated_counts"] == 1_000
    assert grown["overflows"] == grown["overflowed_counts"] == 1
    clock.advance(301)
    assert scrape(store).names() <= {"target_info"}
    for each in (store, fresh):
        _legit(each)
    assert _sizes(store) == _sizes(fresh)
    assert _sizes(store)["overflows"] == 0 and _sizes(store)["scopes"] == 1


def test_a_stale_overflowed_series_is_forgotten_and_counts_as_new_when_it_returns(
    clock: FakeClock,
) -> None:
    """As the limiter's docstring says. Limit 1: `a` holds the stream's one series, `b` and
    `c` go to the overflow series; `b` goes stale while `c` keeps the overflow series alive."""
    store = _store(clock, max_series_per_stream=1, max_series_per_service=0)

    def counter(points: dict[str, int], t: int) -> None:
        push(store, Req().sum("c", [({"k": k}, v, 0, t) for k, v in points.items()]))

    counter({"a": 1, "b": 3, "c": 10}, 10)
    clock.advance(200)
    counter({"a": 2, "c": 10}, 20)
    clock.advance(150)
    assert scrape(store).value("c_total", otel_metric_overflow="true") == 13
    stream = next(iter(store._streams.values()))
    state = store.limiter.overflow_state(stream)
    assert state is not None and len(state.members) == 1  # c's
    counter({"b": 5}, 30)
    # b's 5 counted whole (it is new again), not as an increase of 2 over its forgotten 3.
    assert scrape(store).value("c_total", otel_metric_overflow="true") == 18
