"""What the status page's endpoints cost the event loop, against a Prometheus scrape of the
same store in the same run (the gateway's `render`, which every scrape pays).

    .venv/bin/python bench/status.py [--series 100000] [--repeat 5]

The store: `--series` series over 20 counters (5 attributes each, as in bench/exposition.py).
Timed: the cardinality summary (every stream), one metric's label ranking (all its series),
the label ranking of a metric past the scan cap (`MAX_SCANNED_SERIES` read, the rest not), and
the live tail (the newest 20 points of one metric).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.otlp_requests import counter_requests
from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch
from gateway.status.cardinality import MAX_SCANNED_SERIES, cardinality_report, label_ranking
from gateway.status.tail import tail


def build_store(series: int, metrics: int) -> SeriesStore:
    store = SeriesStore(StoreSettings(max_series_per_stream=series))
    for request in counter_requests(series, 1000, metrics=metrics):
        store.consume(MetricsBatch(request))
    return store


def median_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    store = build_store(args.series, 20)
    # One metric far past the scan cap, alone in its own store.
    wide = build_store(MAX_SCANNED_SERIES * 3, 1)
    name = "bench_metric_0_total"
    scrape = median_of(lambda: render(store), args.repeat)
    timed = {
        "cardinality summary (all metrics)": lambda: cardinality_report(
            store.stream_views(), overflowed_points={}, truncated={}, limit_of=len, top=50
        ),
        f"label ranking, {args.series // 20} series": lambda: asyncio.run(
            label_ranking(store.stream_views(), name)
        ),
        f"label ranking, {MAX_SCANNED_SERIES * 3} series (cap)": lambda: asyncio.run(
            label_ranking(wide.stream_views(), name)
        ),
        "tail, newest 20 of one metric": lambda: tail(
            store.stream_views(), name, service=None, limit=20
        ),
    }
    print(f"series: {args.series} in 20 metrics")
    print(f"{'prometheus scrape (render)':<40} {scrape * 1e3:8.1f} ms  (the peer)")
    for label, fn in timed.items():
        took = median_of(fn, args.repeat)
        print(f"{label:<40} {took * 1e3:8.1f} ms  {took / scrape:6.3f}x a scrape")


if __name__ == "__main__":
    main()
