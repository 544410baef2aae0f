"""CPU time per point of the series store on the normal path, for comparing two checkouts.

    cd <checkout> && /path/to/.venv/bin/python /path/to/bench/store_cpu.py [--repeats 6]

Imports `gateway` and `bench` from the current directory (not from this file's checkout), so
the same script measures main and a branch back to back. The bodies are bench/ingest.py's
(10,000 series of cumulative counters in 1,000-point requests), the store has the default
`cardinality` config; the first round creates the series and is not measured; the figure is
the best of `--repeats` rounds of CPU time (`time.process_time`), which other processes on a
shared machine disturb far less than a rate over HTTP.

Each measured round moves every point's time (and its exemplars') forward past the previous
round, so every point is a valid cumulative update. (Until 2026-11-30 the rounds replayed the
same bodies, so 5 of 6 points were dropped as out of order: the figure was mostly that path's;
`--replay` measures it so again.)

`--workload service-mix` takes bench/ingest.py's service mix instead (histograms, counters and
up-down counters of 10 instances, straight into the store, no views): the histogram path.
`--exemplars` gives every point of a monotonic sum or histogram one exemplar (trace and span
ids, one filtered attribute, the time of the point), as an SDK sampling every request would:
the cost of keeping them, against the same bodies in a checkout that ignores them.
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
    parser.add_argument("--workload", choices=("counters", "service-mix"), default="counters")
    parser.add_argument("--exemplars", action="store_true")
    parser.add_argument("--replay", action="store_true")
    args = parser.parse_args()
    from bench.ingest import ROUNDS, otlp_bodies, service_bodies
    from gateway.config import load
    from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
    from gateway.pipeline.batch import MetricsBatch, count_points

    bodies = otlp_bodies() if args.workload == "counters" else service_bodies()
    if args.exemplars:
        bodies = [with_exemplars(b) for b in bodies]
    points = sum(count_points(ExportMetricsServiceRequest.FromString(b)) for b in bodies)
    store = SeriesStore(StoreSettings(cardinality=load().cardinality))
    for body in bodies:
        store.consume(MetricsBatch(ExportMetricsServiceRequest.FromString(body)))
    best = float("inf")
    for k in range(args.repeats):
        requests = [ExportMetricsServiceRequest.FromString(b) for b in bodies]
        if not args.replay:
            # The bodies span ROUNDS rounds of 10 s each
            shift_times(requests, (k + 1) * ROUNDS * 10_000_000_000)
        t = time.process_time()
        for request in requests:
            store.consume(MetricsBatch(request))
        best = min(best, (time.process_time() - t) / points)
    extra = (" with exemplars" if args.exemplars else "") + (" (replayed)" if args.replay else "")
    print(
        f"{os.getcwd()}: {args.workload}{extra}: store {best * 1e6:.2f} us/point "
        f"(best of {args.repeats}), {store.series_count} series, "
        f"load {os.getloadavg()[0]:.2f}"
    )


def shift_times(requests: list[ExportMetricsServiceRequest], ns: int) -> None:
    for request in requests:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind is None:
                        continue
                    for p in getattr(m, kind).data_points:
                        p.time_unix_nano += ns
                        for e in getattr(p, "exemplars", ()):
                            e.time_unix_nano += ns


def with_exemplars(body: bytes) -> bytes:
    request = ExportMetricsServiceRequest.FromString(body)
    n = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind == "sum" and not m.sum.is_monotonic:
                    continue
                if kind not in ("sum", "histogram"):
                    continue
                for p in getattr(m, kind).data_points:
                    n += 1
                    e = p.exemplars.add()
                    e.trace_id = n.to_bytes(16, "big")
                    e.span_id = n.to_bytes(8, "big")
                    e.as_double = 0.05
                    e.time_unix_nano = p.time_unix_nano
                    kv = e.filtered_attributes.add()
                    kv.key, kv.value.string_value = "user.id", f"u-{n % 1000}"
    out: bytes = request.SerializeToString()
    return out


if __name__ == "__main__":
    main()
