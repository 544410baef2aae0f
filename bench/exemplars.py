"""What exemplars cost, against the same series without them, in the same process.

    .venv/bin/python bench/exemplars.py [--repeats 7]

Bodies: bench/ingest.py's (10,000 series of cumulative counters in 1,000-point requests, and
its service mix of histograms and counters), as they are and with one exemplar on every point
of a monotonic sum or histogram (`bench/store_cpu.py --exemplars`: trace and span ids, one
filtered attribute). Prints, each pair measured in interleaved rounds, best of `--repeats`:

* store CPU per point (`time.process_time`; each round moves the times forward, so every
  point is a valid update and every exemplar the newest);
* store memory (tracemalloc) after the counters, per series and per exemplar;
* the OpenMetrics rendering of the counters' store, time and size.

Whether points WITHOUT exemplars cost more than before is `bench/store_cpu.py` run in two
checkouts (docs/performance.md, "Exemplars").
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from bench.ingest import ROUNDS, otlp_bodies, service_bodies
from bench.store_cpu import shift_times, with_exemplars
from gateway.config import load
from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch, count_points


def _store(bodies: list[bytes]) -> SeriesStore:
    store = SeriesStore(StoreSettings(cardinality=load().cardinality, exemplars=True))
    for body in bodies:
        store.consume(MetricsBatch(ExportMetricsServiceRequest.FromString(body)))
    return store


def cpu(name: str, plain: list[bytes], sampled: list[bytes], repeats: int) -> None:
    points = sum(count_points(ExportMetricsServiceRequest.FromString(b)) for b in plain)
    stores = (_store(plain), _store(sampled))
    best = [float("inf"), float("inf")]
    for k in range(repeats):
        for which, bodies in enumerate((plain, sampled)):
            requests = [ExportMetricsServiceRequest.FromString(b) for b in bodies]
            shift_times(requests, (k + 1) * ROUNDS * 10_000_000_000)
            t = time.process_time()
            for request in requests:
                stores[which].consume(MetricsBatch(request))
            best[which] = min(best[which], (time.process_time() - t) / points)
    print(
        f"{name}: store {best[0] * 1e6:.2f} us/point without exemplars, "
        f"{best[1] * 1e6:.2f} with: {best[1] / best[0]:.2f}x"
    )


def memory(plain: list[bytes], sampled: list[bytes]) -> tuple[SeriesStore, SeriesStore]:
    out = []
    sizes = []
    for bodies in (plain, sampled):
        requests = [ExportMetricsServiceRequest.FromString(b) for b in bodies]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        store = SeriesStore(StoreSettings(cardinality=load().cardinality, exemplars=True))
        for request in requests:
            store.consume(MetricsBatch(request))
        del requests
        gc.collect()
        sizes.append(tracemalloc.get_traced_memory()[0] - before)
        tracemalloc.stop()
        out.append(store)
    series = out[0].series_count
    print(
        f"counters: store memory {sizes[0] / series:.0f} bytes/series without exemplars, "
        f"{sizes[1] / series:.0f} with one each: {(sizes[1] - sizes[0]) / series:.0f} bytes "
        "per exemplar (tracemalloc)"
    )
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min)")
    counters = otlp_bodies()
    mix = service_bodies()
    counters_x = [with_exemplars(b) for b in counters]
    cpu("counters", counters, counters_x, args.repeats)
    cpu("service mix", mix, [with_exemplars(b) for b in mix], args.repeats)
    plain, sampled = memory(counters, counters_x)
    times = [float("inf"), float("inf")]
    sizes = [0, 0]
    for _ in range(args.repeats):
        for which, store in enumerate((plain, sampled)):
            t = time.perf_counter()
            body = render(store, openmetrics=True)
            times[which] = min(times[which], time.perf_counter() - t)
            sizes[which] = len(body)
    print(
        f"counters: OpenMetrics render {times[0] * 1e3:.1f} ms without exemplars "
        f"({sizes[0] / 1e6:.1f} MB), {times[1] * 1e3:.1f} ms with ({sizes[1] / 1e6:.1f} MB): "
        f"{times[1] / times[0]:.2f}x"
    )
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
