"""Ingest throughput of the gateway on one core, against Prometheus' pushgateway in the same run.

    .venv/bin/python bench/ingest.py [--seconds 10] [--connections 4]

Requests: OTLP/HTTP protobuf, 1,000 points each (cumulative sums, 5 attributes), cycling over
10,000 distinct series (10 requests per round; every round moves time and values forward).
The server under test is pinned to CPU 0, this load generator to CPU 1 (on a machine with one
core both share it and the figures mean less). The pushgateway gets the same series in its
text format, 1,000 samples per PUT, one group per request.

Variants, each a separate gateway process: `no views` (the embedded default pipeline without
the catalogue views) and `views` (the default catalogue views and cardinality limits), when
the installed gateway has them; the views' cost is printed as a ratio.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.otlp_requests import counter_requests
from tests.support.servers import free_port, wait_http

SERIES = 10_000
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
    label: str, config: str | None, bodies: list[bytes], args: argparse.Namespace, tmp: Path
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
        print(
            f"{'':<26} check: {active[0].rsplit(' ', 1)[1] if active else '?'} series held "
            f"(expected {SERIES})"
        )
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--views-config",
        default="default",
        help="'default': the gateway's default views; 'none' skips the variant",
    )
    args = parser.parse_args()
    pin(1)
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
        if _has_views() and args.views_config != "none":
            with_views = run_gateway_variant("gateway (default views)", None, bodies, args, tmp)
        push = run_pushgateway(args, tmp)
    print(f"target: >= 200,000 points/s on one core: {'met' if base >= 200_000 else 'NOT met'}")
    if push:
        print(f"ratio gateway/pushgateway: {base / push:.2f}x (target >= 2x)")
    if with_views:
        print(
            f"views cost: {(base / with_views - 1) * 100:.0f}% more time per point (target <= 30%)"
        )


def _has_views() -> bool:
    from gateway.config import GatewayConfig

    return "views" in GatewayConfig.model_fields


if __name__ == "__main__":
    main()
