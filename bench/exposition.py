"""Time to render /metrics for N series, against prometheus_client.generate_latest for the same
series in the same run, and the store's memory per series.

    .venv/bin/python bench/exposition.py [--series 100000] [--repeat 5]

The series: 20 counter metrics of 5,000 series each, 5 attributes per series (like the ingest
benchmark), pushed into the gateway's SeriesStore as OTLP; prometheus_client gets one Counter
per metric with the same label names and values.

Then, as processes, against the project's OpenTelemetry Collector (`make collector`,
otel-collector/config.yaml: otlp -> prometheus exporter), each alone on CPU 0 and fed the same
OTLP over HTTP: the time a scrape of GET /metrics takes (0.0.4 text, best and median of
--repeat) and resident memory per series (RSS after loading minus RSS before, / series).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx

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


def _pin0() -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})


def _gateway_process(port: int, tmp: Path, series: int) -> subprocess.Popen[bytes]:
    config = tmp / "gateway.yaml"
    # Limits lifted to hold every series; no views (the bench metrics match none anyway).
    config.write_text(
        f"views: []\ncardinality: {{max_series_per_stream: {series}, "
        f"max_series_per_service: {series * 2}}}\nobservers: {{enabled: false}}\n"
    )
    argv = [sys.executable, "-m", "gateway", "run", "--http-port", str(port)]
    argv += ["--grpc-port", "0", "--log-level", "warning", "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    return subprocess.Popen(argv, preexec_fn=_pin0, env=env, cwd=Path(__file__).parents[1])


def compare_processes(series: int, repeat: int) -> None:
    from bench.collector_peer import (
        Peer,
        rss_bytes,
        start_collector,
        start_gateway,
        wait_series,
    )
    from tests.support.servers import free_port

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    bodies = [r.SerializeToString() for r in counter_requests(series, 1000, metrics=20)]
    results: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        starters: list[tuple[str, object]] = [
            (
                "gateway",
                lambda: start_gateway(free_port(), lambda p: _gateway_process(p, tmp, series)),
            ),
            ("collector", lambda: start_collector(tmp, _pin0)),
        ]
        for name, start in starters:
            try:
                peer: Peer = start()  # type: ignore[operator]
            except RuntimeError as exc:
                print(f"{name}: {exc}; skipped")
                continue
            try:
                time.sleep(1)
                before = rss_bytes(peer.proc.pid)
                with httpx.Client(timeout=60) as client:
                    url = f"http://127.0.0.1:{peer.otlp_port}/v1/metrics"
                    for body in bodies:
                        r = client.post(
                            url, content=body, headers={"Content-Type": "application/x-protobuf"}
                        )
                        r.raise_for_status()
                held = wait_series(peer.scrape_url, "bench_metric_", series)
                assert held == series, f"{name} exposes {held} of {series} series"
                times = []
                failed = 0
                with httpx.Client(timeout=300) as client:
                    for _ in range(repeat):
                        t = time.perf_counter()
                        try:
                            client.get(peer.scrape_url).raise_for_status()
                        except httpx.HTTPError as exc:
                            failed += 1
                            print(f"{name}: a scrape failed after "
                                  f"{time.perf_counter() - t:.1f} s: {exc!r}")  # fmt: skip
                            continue
                        times.append(time.perf_counter() - t)
                if not times:
                    print(f"{name}: every scrape failed")
                    continue
                after = rss_bytes(peer.proc.pid)
                results[name] = (min(times), statistics.median(times), (after - before) / series)
            finally:
                peer.stop()
    for name, (best, median, per) in results.items():
        print(
            f"{name + ' process':<18} scrape of {series} series: best {best * 1e3:7.1f} ms  "
            f"median {median * 1e3:7.1f} ms   RSS per series {per:6.0f} bytes"
        )
    if len(results) == 2:
        g, c = results["gateway"], results["collector"]
        print(f"ratio gateway/collector scrape time (median): {g[1] / c[1]:.2f}x (target <= 1.0x)")
        print(f"ratio gateway/collector RSS per series:       {g[2] / c[2]:.2f}x (target <= 1.0x)")


if __name__ == "__main__":
    main()
    compare_processes(
        int(sys.argv[sys.argv.index("--series") + 1]) if "--series" in sys.argv else 100_000,
        int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 5,
    )
