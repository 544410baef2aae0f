"""Time to render /metrics for N series, against prometheus_client.generate_latest for the same
series in the same run, and the store's memory per series.

    .venv/bin/python bench/exposition.py [--series 100000] [--repeat 5]

The series: 20 counter metrics of 5,000 series each, 5 attributes per series (like the ingest
benchmark), pushed into the gateway's SeriesStore as OTLP; prometheus_client gets one Counter
per metric with the same label names and values.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Counter, generate_latest

from bench.otlp_requests import counter_requests
from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch


def build_store(series: int, per_request: int) -> SeriesStore:
    store = SeriesStore(StoreSettings(max_series_per_stream=series))
    for request in counter_requests(series, per_request, metrics=20):
        store.consume(MetricsBatch(request))
    return store


def build_registry(series: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    per_metric = series // 20
    labels = ["attr0", "attr1", "attr2", "attr3", "attr4"]
    for m in range(20):
        c = Counter(f"bench_metric_{m}", "Benchmark counter", labels, registry=registry)
        for i in range(per_metric):
            c.labels(*[f"value-{i}-{a}" for a in range(5)]).inc(i + 0.5)
    return registry


def best_of(fn: object, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = build_store(args.series, 1000)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert store.series_count == args.series, store.series_count
    per_series = (after - before) / args.series

    registry = build_registry(args.series)
    body = render(store)
    reference = generate_latest(registry)
    ours_best, ours_median = best_of(lambda: render(store), args.repeat)
    ref_best, ref_median = best_of(lambda: generate_latest(registry), args.repeat)

    print(f"series: {args.series}")
    print(
        f"gateway render:    best {ours_best * 1e3:8.1f} ms  median {ours_median * 1e3:8.1f} ms"
        f"  ({len(body) / 1e6:.1f} MB)"
    )
    print(
        f"prometheus_client: best {ref_best * 1e3:8.1f} ms  median {ref_median * 1e3:8.1f} ms"
        f"  ({len(reference) / 1e6:.1f} MB)"
    )
    print(f"ratio gateway/client:    {ours_median / ref_median:.2f}x (target <= 0.5x)")
    gz_best, _ = best_of(lambda: gzip.compress(body, compresslevel=1), args.repeat)
    gz_size = len(gzip.compress(body, compresslevel=1))
    print(
        f"gzip level 1 (what /metrics sends when asked): {gz_best * 1e3:.1f} ms, "
        f"{len(body) / 1e6:.1f} MB -> {gz_size / 1e6:.1f} MB"
    )
    print(
        f"store memory per series: {per_series:.0f} bytes = {per_series / 1024:.2f} KiB "
        f"(target <= 0.5 KiB; tracemalloc, store only)"
    )


if __name__ == "__main__":
    main()
