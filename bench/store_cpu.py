"""CPU time per point of the series store on the normal path, for comparing two checkouts.

    cd <checkout> && /path/to/.venv/bin/python /path/to/bench/store_cpu.py [--repeats 6]

Imports `gateway` and `bench` from the current directory (not from this file's checkout), so
the same script measures main and a branch back to back. The bodies are bench/ingest.py's
(10,000 series of cumulative counters in 1,000-point requests), the store has the default
`cardinality` config; the first round creates the series and is not measured; the figure is
the best of `--repeats` rounds of CPU time (`time.process_time`), which other processes on a
shared machine disturb far less than a rate over HTTP.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.getcwd())

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    from bench.ingest import otlp_bodies
    from gateway.config import load
    from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
    from gateway.pipeline.batch import MetricsBatch

    bodies = otlp_bodies()
    store = SeriesStore(StoreSettings(cardinality=load().cardinality))
    for body in bodies:
        store.consume(MetricsBatch(ExportMetricsServiceRequest.FromString(body)))
    best = float("inf")
    for _ in range(args.repeats):
        requests = [ExportMetricsServiceRequest.FromString(b) for b in bodies]
        t = time.process_time()
        for request in requests:
            store.consume(MetricsBatch(request))
        best = min(best, (time.process_time() - t) / (len(bodies) * 1000))
    print(
        f"{os.getcwd()}: store {best * 1e6:.2f} us/point (best of {args.repeats}), "
        f"{store.series_count} series, load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
