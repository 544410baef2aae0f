from __future__ import annotations

import asyncio

import pytest

from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch
from gateway.status import cardinality
from gateway.status.cardinality import cardinality_report, label_ranking
from tests.support.otlp import Req


def store_with(limit: int = 50) -> SeriesStore:
    store = SeriesStore(StoreSettings(max_series_per_stream=limit))
    store.consume(
        MetricsBatch(
            Req(service="web")
            .sum(
                "hits",
                [({"user": f"u{i}", "path": ("/a", '/b"q')[i % 2]}, 1, 0, 10) for i in range(80)],
            )
            .request
        )
    )
    store.consume(
        MetricsBatch(Req(service="api").gauge("temp", [({"room": "x"}, 1.0, 10)]).request)
    )
    return store


def test_ranking_puts_the_exploding_label_first_and_counts_overflow_apart() -> None:
    ranking = asyncio.run(label_ranking(store_with().stream_views(), "hits_total"))
    assert ranking is not None
    assert ranking["series"] == 51 and ranking["overflow_series"] == 1 and ranking["complete"]
    assert [(lbl["name"], lbl["distinct_values"]) for lbl in ranking["labels"]] == [
        ("user", 50),
        ("path", 2),
    ]
    # Values come back as sent, not as escaped in the exposition.
    assert {v["value"] for v in ranking["labels"][1]["top_values"]} == {"/a", '/b"q'}
    assert asyncio.run(label_ranking(store_with().stream_views(), "nope")) is None
    assert (
        asyncio.run(label_ranking(store_with().stream_views(), "hits_total", service="api")) is None
    )


def test_ranking_stops_at_the_scan_cap_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cardinality, "MAX_SCANNED_SERIES", 20)
    ranking = asyncio.run(label_ranking(store_with().stream_views(), "hits_total"))
    assert ranking is not None
    assert ranking["scanned_series"] == 20 and ranking["series"] == 51
    assert ranking["complete"] is False


def test_ranking_yields_to_the_event_loop_between_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cardinality, "_CHUNK", 10)
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        before = ticks
        await label_ranking(store_with().stream_views(), "hits_total")
        assert ticks - before >= 4  # 51 series in chunks of 10: the loop ran in between
        task.cancel()

    asyncio.run(main())


def test_report_sorts_metrics_and_services_by_series() -> None:
    report = cardinality_report(
        store_with().stream_views(),
        overflowed_points={"hits_total": 30},
        truncated={},
        limit_of=lambda name: 50,
        top=10,
    )
    assert [m["name"] for m in report["metrics"]] == ["hits_total", "temp"]
    hits = report["metrics"][0]
    assert (hits["series"], hits["overflowed_series"], hits["overflowed_points"]) == (51, 30, 30)
    assert [s["service"] for s in report["services"]] == ["web", "api"]
    assert report["series_total"] == 52
