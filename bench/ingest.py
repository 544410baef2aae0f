"""Ingest throughput of the gateway on one core, against Prometheus' pushgateway in the same run.

    .venv/bin/python bench/ingest.py [--seconds 10] [--connections 4]

Requests: OTLP/HTTP protobuf, 1,000 points each (cumulative sums, 5 attributes), cycling over
10,000 distinct series (10 requests per round; every round moves time and values forward).
The server under test is pinned to CPU 0, this load generator to CPU 1 (on a machine with one
core both share it and the figures mean less). The pushgateway gets the same series in its
text format, 1,000 samples per PUT, one group per request. The project's OpenTelemetry
Collector (`make collector`; otel-collector/config.yaml: otlp -> memory_limiter -> batch ->
prometheus exporter, pinned to CPU 0 too, so GOMAXPROCS is 1) gets the same OTLP bodies.

Variants, each a separate gateway process: `no views` (`views: []`) and `default views` (the
catalogue views and cardinality limits), each on two workloads:
* `counters`: the requests above, whose names no view selects (the views' cost is the
  per-metric decision only);
* `service mix`: what the instrumentation package sends, 1,000 points per request from one
  service instance (HTTP duration histograms by method, route, status and scheme; in-flight
  requests; database operation histograms; the catalogue-named app and business counters and
  histograms), 10 instances; here the views rewrite, aggregate and derive. Its ratio is the
  one the 30 % budget applies to. Rates are input points per second in both variants.

Overflow (`--only overflow` runs just this part): 10,000 series in ONE stream, the gateway's
limit at 2,000 series per stream (the default), so 80 % of the series go to the stream's
overflow series, next to the same bodies with a limit of 20,000 (every series admitted); over
HTTP (the store alone, no forwarder; two runs of each, interleaved, the best of each), and
in-process as CPU time per point of the store plus the forward path's overflow folding, runs
interleaved. Target: overflow >= 0.8x the admitted rate.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from bench.otlp_requests import START_NS, counter_requests
from gateway.pipeline.batch import count_points
from tests.support.servers import free_port, wait_http

SERIES = 10_000
OVERFLOW_LIMIT = 2_000  # the default cardinality.max_series_per_stream
PER_REQUEST = 1_000
ROUNDS = 6  # distinct rounds of bodies; the generator cycles through them


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > cpu:  # type: ignore[operator]
        os.sched_setaffinity(0, {cpu})


def otlp_bodies() -> list[bytes]:
    bodies = []
    for r in range(ROUNDS):
        bodies.extend(
            req.SerializeToString() for req in counter_requests(SERIES, PER_REQUEST, round_=r)
        )
    return bodies


_HTTP_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_DB_BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
INSTANCES = 10


def _attrs(target: Any, attributes: dict[str, Any]) -> None:
    for key, value in attributes.items():
        kv = target.add()
        kv.key = key
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value


def _service_request(instance: int, round_: int) -> ExportMetricsServiceRequest:
    """One export of one service instance, as the instrumentation package makes it."""
    start = START_NS
    now = START_NS + (round_ + 1) * 10_000_000_000
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    _attrs(
        rm.resource.attributes,
        {
            "service.name": "coderunner-api",
            "service.namespace": "coderunner",
            "service.instance.id": f"instance-{instance}",
            "service.version": "1.4.2",
            "deployment.environment": "production",
            "host.name": f"host-{instance}",
        },
    )

    def histogram(
        sm: Any, name: str, bounds: tuple[float, ...], sets: list[dict[str, Any]]
    ) -> None:
        m = sm.metrics.add()
        m.name, m.unit = name, "s"
        m.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        for i, attributes in enumerate(sets):
            p = m.histogram.data_points.add()
            _attrs(p.attributes, attributes)
            p.start_time_unix_nano, p.time_unix_nano = start, now
            counts = [(i + b + round_) % 7 for b in range(len(bounds) + 1)]
            p.bucket_counts.extend(counts)
            p.explicit_bounds.extend(bounds)
            p.count = sum(counts)
            p.sum = 0.01 * p.count
            p.min, p.max = 0.001, 1.5

    def sums(sm: Any, name: str, unit: str, sets: list[dict[str, Any]], monotonic: bool) -> None:
        m = sm.metrics.add()
        m.name, m.unit = name, unit
        m.sum.is_monotonic = monotonic
        m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        for i, attributes in enumerate(sets):
            p = m.sum.data_points.add()
            _attrs(p.attributes, attributes)
            p.start_time_unix_nano, p.time_unix_nano = start, now
            p.as_int = i + round_ * 3

    http = rm.scope_metrics.add()
    http.scope.name = "instrumentation.http"
    methods = ("GET", "POST", "PUT", "DELETE")
    routes = [f"/api/v1/resource{r}/{{id}}" for r in range(40)]
    statuses = (200, 201, 404, 500)
    histogram(
        http,
        "http.server.request.duration",
        _HTTP_BOUNDS,
        [
            {"http.request.method": m, "url.scheme": "https", "http.route": r,
             "http.response.status_code": s}
            for m in methods for r in routes for s in statuses
        ][:637],
    )  # fmt: skip
    sums(
        http,
        "http.server.active_requests",
        "{request}",
        [{"http.request.method": m, "url.scheme": sc} for m in methods for sc in ("http", "https")],
        monotonic=False,
    )
    db = rm.scope_metrics.add()
    db.scope.name = "instrumentation.asyncpg"
    histogram(
        db,
        "db.client.operation.duration",
        _DB_BOUNDS,
        [{"db.system.name": "postgresql", "db.operation.name": op}
         for op in ("SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT")]
        + [{"db.system.name": "postgresql", "db.operation.name": "INSERT", "error.type": e}
           for e in ("UniqueViolationError", "DeadlockDetectedError")],
    )  # fmt: skip
    app = rm.scope_metrics.add()
    app.scope.name, app.scope.version = "instrumentation", "0.1.0"
    plans = ("free", "premium", "team")
    sums(
        app,
        "coderunner.user.activity",
        "{action}",
        [{"action": f"action{a}", "plan_type": p} for a in range(40) for p in plans],
        True,
    )
    sums(
        app,
        "coderunner.feature.usage",
        "{use}",
        [{"feature": f"feature{f}", "user_type": p} for f in range(40) for p in plans],
        True,
    )
    sums(
        app,
        "coderunner.deployments",
        "{deployment}",
        [{"status": s, "type": f"runtime{t}"} for s in ("success", "failed") for t in range(10)],
        True,
    )
    sums(
        app,
        "coderunner.errors",
        "{error}",
        [
            {"type": f"Error{e}", "service": "api", "severity": v}
            for e in range(30)
            for v in ("warning", "critical")
        ],
        True,
    )
    sums(
        app,
        "coderunner.resource.costs",
        "{USD}",
        [{"resource_type": r, "plan": p} for r in ("compute", "storage") for p in plans],
        True,
    )
    histogram(app, "coderunner.deployment.duration", _HTTP_BOUNDS,
              [{"type": f"runtime{t}", "status": s} for t in range(10)
               for s in ("success", "failed")])  # fmt: skip
    sums(app, "coderunner.websocket.active_connections", "{connection}", [{}], False)
    return request


def service_bodies() -> list[bytes]:
    return [
        _service_request(i, r).SerializeToString() for r in range(ROUNDS) for i in range(INSTANCES)
    ]


def pipeline_cpu(bodies: list[bytes], repeats: int = 5) -> tuple[float, float]:
    """CPU seconds per input point of the gateway's pipeline in this process (decode, views,
    store), without and with the default views, runs interleaved. Over HTTP, other processes
    on the machine shift the two variants' figures apart; CPU time of the same work in
    one process does not."""
    from gateway.config import load as load_config
    from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
    from gateway.pipeline import Pipeline
    from gateway.pipeline.batch import MetricsBatch
    from gateway.processors.views import ViewProcessor

    config = load_config()
    settings = StoreSettings(cardinality=config.cardinality)
    plain = Pipeline([], [SeriesStore(settings)])
    viewed = Pipeline([ViewProcessor(config.views)], [SeriesStore(settings)])
    spent = [0.0, 0.0]
    points = 0
    for round_ in range(repeats + 1):
        for k, pipeline in enumerate((plain, viewed)):
            t = time.process_time()
            for body in bodies:
                pipeline.consume(MetricsBatch(ExportMetricsServiceRequest.FromString(body)))
            if round_:  # the first round creates the series: not measured
                spent[k] += time.process_time() - t
        if round_:
            points += sum(count_points(ExportMetricsServiceRequest.FromString(b)) for b in bodies)
    return spent[0] / points, spent[1] / points


def overflow_bodies() -> list[bytes]:
    """SERIES series in one stream (one metric of one resource and scope)."""
    return [
        req.SerializeToString()
        for r in range(ROUNDS)
        for req in counter_requests(SERIES, PER_REQUEST, metrics=1, round_=r)
    ]


def overflow_cpu(bodies: list[bytes], repeats: int = 7) -> tuple[float, float]:
    """CPU seconds per input point of the store and the forward path's overflow folding (into
    a sink), every series admitted against 80 % of them over the limit: the best of `repeats`
    interleaved runs, after a first round that creates the series."""
    from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
    from gateway.pipeline.batch import MetricsBatch
    from gateway.processors.cardinality import CardinalityConfig, OverflowFolder

    class Sink:
        def consume(self, batch: MetricsBatch) -> None:
            pass

    def path(limit: int) -> Any:
        store = SeriesStore(
            StoreSettings(cardinality=CardinalityConfig(max_series_per_stream=limit))
        )
        folder = OverflowFolder(store, Sink())

        def run(chunk: list[bytes]) -> None:
            for body in chunk:
                batch = MetricsBatch(ExportMetricsServiceRequest.FromString(body))
                store.consume(batch)
                folder.consume(batch)

        return run

    first = SERIES // PER_REQUEST
    runs = [path(SERIES * 2), path(OVERFLOW_LIMIT)]
    for run in runs:
        run(bodies[:first])
    best = [float("inf"), float("inf")]
    points = (len(bodies) - first) * PER_REQUEST
    for _ in range(repeats):
        for k, run in enumerate(runs):
            t = time.process_time()
            run(bodies[first:])
            best[k] = min(best[k], (time.process_time() - t) / points)
    return best[0], best[1]


def run_overflow(args: argparse.Namespace, tmp: Path) -> None:
    bodies = overflow_bodies()
    print(
        f"overflow: {len(bodies)} bodies of {PER_REQUEST} points, {SERIES} series in one stream; "
        f"limit {SERIES * 2} (all admitted) against {OVERFLOW_LIMIT} "
        f"({100 - OVERFLOW_LIMIT * 100 // SERIES} % of the series over it)"
    )
    config = "views: []\ncardinality: {{max_series_per_stream: {}}}\n"
    # Interleaved, twice each, the best of each kept: one run after the other drifts with
    # what else the machine does.
    admitted = over = 0.0
    for _ in range(2):
        admitted = max(
            admitted,
            run_gateway_variant(
                "one stream, all admitted", config.format(SERIES * 2), bodies, args, tmp
            ),
        )
        over = max(
            over,
            run_gateway_variant(
                "one stream, 80 % overflow",
                config.format(OVERFLOW_LIMIT),
                bodies,
                args,
                tmp,
                OVERFLOW_LIMIT + 1,
            ),
        )
    print(
        f"overflow over HTTP (best of 2 each): {over / admitted:.2f}x the admitted rate "
        "(target >= 0.8x)"
    )
    plain, folded = overflow_cpu(bodies)
    print(
        f"overflow in-process (store + forward folding): {plain * 1e6:.2f} us/point admitted, "
        f"{folded * 1e6:.2f} us/point with 80 % overflow: {plain / folded:.2f}x the admitted "
        "rate (target >= 0.8x)"
    )


def text_bodies() -> list[tuple[str, bytes]]:
    """The same series in the Prometheus text format, one pushgateway group per request."""
    out = []
    for r in range(ROUNDS):
        for chunk, req in enumerate(counter_requests(SERIES, PER_REQUEST, round_=r)):
            lines = []
            for metric in req.resource_metrics[0].scope_metrics[0].metrics:
                name = metric.name.replace(".", "_") + "_total"
                lines.append(f"# TYPE {name} counter\n")
                for p in metric.sum.data_points:
                    labels = ",".join(f'{kv.key}="{kv.value.string_value}"' for kv in p.attributes)
                    lines.append(f"{name}{{{labels}}} {p.as_double}\n")
            out.append((f"/metrics/job/bench/chunk/{chunk}", "".join(lines).encode()))
    return out


def load(
    port: int,
    requests: list[tuple[str, str, bytes, dict[str, str]]],
    seconds: float,
    connections: int,
) -> tuple[int, list[float], int]:
    """Send `requests` round-robin over `connections` keep-alive connections for `seconds`.
    Returns (requests completed, latencies in seconds, errors)."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    done = [0]
    lock = threading.Lock()

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = offset
        mine: list[float] = []
        bad = 0
        while time.monotonic() < stop:
            method, path, body, headers = requests[i % len(requests)]
            i += connections
            t = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t)
            if resp.status >= 300:
                bad += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad
            done[0] += len(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0], latencies, errors[0]


def report(label: str, done: int, latencies: list[float], errors: int, seconds: float) -> float:
    rate = done * PER_REQUEST / seconds
    lat = sorted(latencies)
    p50 = statistics.median(lat) * 1e3
    p99 = lat[int(len(lat) * 0.99) - 1] * 1e3
    print(
        f"{label:<26} {rate:>12,.0f} points/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms"
        f"   ({done} requests, {errors} errors)"
    )
    return rate


def gateway_process(port: int, config: str | None, tmp: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "run",
        "--http-port",
        str(port),
        "--grpc-port",
        "0",
        "--log-level",
        "warning",
    ]
    if config is not None:
        cfg = tmp / f"gw-{port}.yaml"
        cfg.write_text(config)
        argv += ["--config", str(cfg)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.Popen(
        argv, preexec_fn=lambda: pin(0), env=env, cwd=Path(__file__).resolve().parents[1]
    )


def run_gateway_variant(
    label: str,
    config: str | None,
    bodies: list[bytes],
    args: argparse.Namespace,
    tmp: Path,
    expected_series: int | None = SERIES,
) -> float:
    port = free_port()
    proc = gateway_process(port, config, tmp)
    try:
        wait_http(f"http://127.0.0.1:{port}/live", proc=proc)
        headers = {"Content-Type": "application/x-protobuf"}
        reqs = [("POST", "/v1/metrics", b, headers) for b in bodies]
        load(port, reqs, 2.0, args.connections)  # warm-up: every series created
        done, lat, err = load(port, reqs, args.seconds, args.connections)
        rate = report(label, done, lat, err, args.seconds)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics/self")
        text = conn.getresponse().read().decode()
        active = [
            ln for ln in text.splitlines() if ln.startswith("coderunner_gateway_active_series")
        ]
        held = active[0].rsplit(" ", 1)[1] if active else "?"
        expectation = f" (expected {expected_series})" if expected_series is not None else ""
        print(f"{'':<26} check: {held} series held{expectation}")
        return rate
    finally:
        proc.terminate()
        proc.wait(10)


def run_pushgateway(args: argparse.Namespace, tmp: Path) -> float | None:
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        print("pushgateway: not installed (make system-deps); skipped")
        return None
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        preexec_fn=lambda: pin(0),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", proc=proc)
        headers = {"Content-Type": "text/plain; version=0.0.4"}
        reqs = [("PUT", path, body, headers) for path, body in text_bodies()]
        load(port, reqs, 2.0, args.connections)
        done, lat, err = load(port, reqs, args.seconds, args.connections)
        return report("pushgateway (text, PUT)", done, lat, err, args.seconds)
    finally:
        proc.terminate()
        proc.wait(10)


def run_collector(args: argparse.Namespace, bodies: list[bytes], tmp: Path) -> float | None:
    from bench.collector_peer import start_collector, wait_series

    try:
        peer = start_collector(tmp, lambda: pin(0))
    except RuntimeError as exc:
        print(f"collector: {exc}; skipped")
        return None
    try:
        headers = {"Content-Type": "application/x-protobuf"}
        reqs = [("POST", "/v1/metrics", b, headers) for b in bodies]
        load(peer.otlp_port, reqs, 2.0, args.connections)
        done, lat, err = load(peer.otlp_port, reqs, args.seconds, args.connections)
        rate = report("collector (otlp->prometheus)", done, lat, err, args.seconds)
        held = wait_series(peer.scrape_url, "bench_metric_", SERIES, timeout=30)
        print(f"{'':<26} check: {held} series exposed (expected {SERIES})")
        return rate
    finally:
        peer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--views-config",
        default="default",
        help="'default': the gateway's default views; 'none' skips the variant",
    )
    parser.add_argument(
        "--only", choices=["overflow"], help="run one part: 'overflow' (see the docstring)"
    )
    args = parser.parse_args()
    pin(1)
    print(f"load before the run: {os.getloadavg()[0]:.2f} (1 min)")
    if args.only == "overflow":
        with tempfile.TemporaryDirectory() as d:
            run_overflow(args, Path(d))
        print(f"load after the run: {os.getloadavg()[0]:.2f} (1 min)")
        return
    bodies = otlp_bodies()
    print(
        f"{len(bodies)} OTLP bodies of {PER_REQUEST} points, {SERIES} series, "
        f"{sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB each; {args.seconds:.0f} s per run, "
        f"{args.connections} connections; server on CPU 0, load on CPU 1"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = run_gateway_variant(
            "gateway (no views)", "views: []\n" if _has_views() else None, bodies, args, tmp
        )
        with_views = None
        mix_base = mix_views = None
        if _has_views() and args.views_config != "none":
            with_views = run_gateway_variant("gateway (default views)", None, bodies, args, tmp)
            mix = service_bodies()
            first = ExportMetricsServiceRequest.FromString(mix[0])
            print(
                f"service mix: {len(mix)} bodies of {count_points(first)} points, "
                f"{INSTANCES} instances, {sum(map(len, mix)) / len(mix) / 1024:.0f} KiB each"
            )
            mix_base = run_gateway_variant(
                "service mix (no views)", "views: []\n", mix, args, tmp, None
            )
            mix_views = run_gateway_variant(
                "service mix (default views)", None, mix, args, tmp, None
            )
        run_overflow(args, tmp)
        push = run_pushgateway(args, tmp)
        collector = run_collector(args, bodies, tmp)
    print(f"target: >= 200,000 points/s on one core: {'met' if base >= 200_000 else 'NOT met'}")
    if collector:
        print(f"ratio gateway/collector: {base / collector:.2f}x (target >= 1.0x per core)")
    if push:
        print(f"ratio gateway/pushgateway: {base / push:.2f}x (target >= 2x)")
    if with_views:
        print(
            f"views cost, counters no view selects: {(base / with_views - 1) * 100:.0f}% more time"
        )
    if mix_base and mix_views:
        print(
            f"views cost, service mix over HTTP: {(mix_base / mix_views - 1) * 100:.0f}% more "
            "time per input point (target <= 30%)"
        )
    if _has_views() and args.views_config != "none":
        plain, viewed = pipeline_cpu(service_bodies())
        print(
            f"service mix, pipeline CPU in-process: {plain * 1e6:.2f} us/point without views, "
            f"{viewed * 1e6:.2f} us/point with; views cost {(viewed / plain - 1) * 100:.0f}% "
            "(target <= 30%)"
        )


def _has_views() -> bool:
    from gateway.config import GatewayConfig

    return "views" in GatewayConfig.model_fields


if __name__ == "__main__":
    main()
