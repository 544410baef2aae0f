"""Soak: sustained OTLP/HTTP ingest at a share (default 80 %) of the gateway's measured maximum.

    .venv/bin/python bench/soak.py [--seconds 600] [--load 0.8] [--connections 4]
                                   [--disk-queue] [--hostile] [--config FILE]

1. Starts a gateway (pinned to CPU 0; this load generator to CPU 1), with the embedded default
   config or `--config`; `--disk-queue` adds a forwarder to a local sink (a second gateway)
   through the durable disk queue, so the queue's write on the ingest path is part of the run.
2. Measures the maximum: closed-loop load over `--connections` keep-alive connections for
   `--max-seconds`, like bench/ingest.py.
3. Sends open-loop at `--load` times that rate for `--seconds`: every connection sends on a fixed
   schedule, and a request's latency counts from when it was due, so a stalled gateway shows up
   in the latency instead of slowing the sender down (no coordinated omission).
4. Every `--every` seconds prints the gateway's RSS, the rate achieved and the window's p99.
5. At the end compares the points sent in requests answered 200 with the gateway's own
   `coderunner_gateway_points_received_total{transport="http"}`: points lost must be 0; also
   prints what the store dropped by reason.

6. `--hostile` adds an attacker during the soak (issue 17): over gRPC, bodies of empty
   containers, points with long keys, requests of 1,000 scopes; over raw sockets, endless
   headers and silent connections. The good clients' points must still all arrive (the check of
   step 5 counts HTTP only; the attacks use gRPC or never finish a request), and a probe reports
   the slowest `/live` answer.

Requests: 1,000 cumulative-sum points each, 5 attributes, cycling over 10,000 series; every
cycle moves time forward, so every point is a valid, in-order update.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.otlp_requests import START_NS, counter_requests
from tests.support.promtext import parse
from tests.support.servers import free_port, wait_http

SERIES = 10_000
PER_REQUEST = 1_000
HEADERS = {"Content-Type": "application/x-protobuf"}


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


class Bodies:
    """Request bodies whose timestamps only move forward: body k of cycle c carries time
    START + (c + 1) * 10 s. The bodies are serialized once; each call patches the 8 bytes of
    the timestamp (a fixed64 field) with one `bytes.replace`, so that the generator costs
    little beside the gateway. Thread-safe."""

    def __init__(self) -> None:
        self._first = struct.pack("<Q", START_NS + 10_000_000_000)
        self._templates = [
            r.SerializeToString() for r in counter_requests(SERIES, PER_REQUEST, round_=0)
        ]
        assert all(t.count(self._first) == PER_REQUEST for t in self._templates)
        self._next = 0
        self._lock = threading.Lock()

    def next(self) -> bytes:
        with self._lock:
            n = self._next
            self._next += 1
        cycle, k = divmod(n, len(self._templates))
        t = START_NS + (cycle + 1) * 10_000_000_000
        return self._templates[k].replace(self._first, struct.pack("<Q", t))


class Load:
    """Counters shared by the sender threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.ok_points = 0
        self.errors = 0
        self.requests = 0

    def record(self, latency: float, status: int) -> None:
        with self.lock:
            self.latencies.append(latency)
            self.requests += 1
            if status == 200:
                self.ok_points += PER_REQUEST
            else:
                self.errors += 1

    def take_window(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
            return out


def sender(port: int, bodies: Bodies, load: Load, stop: float, interval: float | None) -> None:
    """One keep-alive connection. interval None: closed loop (as fast as answers come)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    due = time.perf_counter()
    while True:
        now = time.perf_counter()
        if interval is not None:
            if due > now:
                time.sleep(due - now)
            start = due
            due += interval
        else:
            start = now
        if time.monotonic() >= stop:
            break
        body = bodies.next()
        conn.request("POST", "/v1/metrics", body=body, headers=HEADERS)
        resp = conn.getresponse()
        resp.read()
        load.record(time.perf_counter() - start, resp.status)
    conn.close()


def run_load(
    port: int, bodies: Bodies, seconds: float, connections: int, rate: float | None
) -> tuple[Load, list[threading.Thread]]:
    load = Load()
    stop = time.monotonic() + seconds
    interval = connections * PER_REQUEST / rate if rate else None
    threads = [
        threading.Thread(target=sender, args=(port, bodies, load, stop, interval), daemon=True)
        for _ in range(connections)
    ]
    for k, t in enumerate(threads):
        if interval:  # spread the connections' schedules over one interval
            time.sleep(interval / connections if k else 0)
        t.start()
    return load, threads


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


def self_metrics(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics/self")
    text = conn.getresponse().read().decode()
    conn.close()
    return text


def queue_length(port: int) -> float:
    found = parse(self_metrics(port)).all("coderunner_gateway_forward_queue_length")
    return sum(v for _, v in found)


def forwarded_loss(port: int, sink_port: int, sent: int) -> int:
    """Wait (up to 5 minutes) for the disk queue to drain, then compare what the sink received
    over HTTP with every point answered 200 in all phases. The sink also receives the gateway's
    own health points, so the comparison can only under-report a loss by those few."""
    started = time.monotonic()
    while queue_length(port) and time.monotonic() - started < 300:
        time.sleep(1)
    drained = time.monotonic() - started
    text = self_metrics(sink_port)
    received = sum(
        v for _, v in parse(text).all("coderunner_gateway_points_received_total", transport="http")
    )
    lost = max(0, sent - int(received))
    print(
        f"forwarding: queue drained {drained:.0f} s after the load stopped (length now "
        f"{queue_length(port):.0f}); sent {sent:,} points in all phases, the sink received "
        f"{received:,.0f}: forwarded points lost {lost:,}"
    )
    return lost


class Attacker:
    """Hostile traffic beside the soak's good clients; see step 6 of the module's docstring."""

    def __init__(self, http_port: int, grpc_port: int) -> None:
        import grpc

        self.http_port = http_port
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.export = self.channel.unary_unary(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        self.stop = threading.Event()
        self.attacks = 0
        self.live_worst = 0.0
        self.live_failures = 0
        self._bodies = self._grpc_bodies()

    @staticmethod
    def _grpc_bodies() -> list[bytes]:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        empty = b"\x0a\x00" * 1_000_000  # a million empty resources: refused on the wire
        keys = ExportMetricsServiceRequest()
        m = keys.resource_metrics.add().scope_metrics.add().metrics.add()
        m.name = "hostile.keys"
        p = m.gauge.data_points.add()
        for i in range(128):
            p.attributes.add(key=f"{i:04d}" + "k" * 4092).value.string_value = "v"
        scopes = ExportMetricsServiceRequest()
        rm = scopes.resource_metrics.add()
        rm.resource.attributes.add(key="service.name").value.string_value = "hostile"
        for i in range(1000):
            sm = rm.scope_metrics.add()
            sm.scope.name = f"s{i}"
            g = sm.metrics.add()
            g.name = "hostile.scopes"
            g.gauge.data_points.add().as_double = 1.0
        return [empty, keys.SerializeToString(), scopes.SerializeToString()]

    def _headers(self) -> None:
        import socket

        with socket.create_connection(("127.0.0.1", self.http_port), timeout=10) as s:
            s.sendall(b"GET /live HTTP/1.1\r\n")
            try:
                for _ in range(64):  # up to 1 MiB of small headers
                    s.sendall(b"X-Pad: aaaaaaaaaaaa\r\n" * 800)
            except OSError:
                pass  # closed by the gateway (431): the attack is over

    def run(self) -> None:
        import socket

        silent: list[socket.socket] = []
        k = 0
        while not self.stop.is_set():
            k += 1
            with contextlib.suppress(Exception):  # refused: that is the point
                self.export(self._bodies[k % 3], timeout=30)
            if k % 3 == 0:
                self._headers()
            if len(silent) < 200:
                silent.append(socket.create_connection(("127.0.0.1", self.http_port)))
            self.attacks += 1
            self.stop.wait(0.05)
        for s in silent:
            s.close()
        self.channel.close()

    def probe(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
                conn.request("GET", "/live")
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            self.live_worst = max(self.live_worst, time.perf_counter() - started)
            self.live_failures += not ok
            self.stop.wait(0.2)


def start_gateway(
    port: int, config: str | None, tmp: Path, cpu: int | None, grpc_port: int = 0
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "gateway", "run", "--http-port", str(port)]
    argv += ["--grpc-port", str(grpc_port)]
    argv += ["--log-level", "warning"]
    if config is not None:
        cfg = tmp / f"gw-{port}.yaml"
        cfg.write_text(config)
        argv += ["--config", str(cfg)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    proc = subprocess.Popen(
        argv,
        preexec_fn=(lambda: pin(cpu)) if cpu is not None else None,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    wait_http(f"http://127.0.0.1:{port}/live", proc=proc)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="soak duration")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="maximum measurement")
    parser.add_argument("--load", type=float, default=0.8, help="share of the maximum")
    parser.add_argument("--rate", type=float, help="points/s, instead of --load x maximum")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--every", type=float, default=30.0, help="report interval, seconds")
    parser.add_argument("--config", help="gateway YAML config (default: embedded)")
    parser.add_argument(
        "--disk-queue", action="store_true", help="forward through the disk queue to a sink"
    )
    parser.add_argument(
        "--hostile", action="store_true", help="attack the gateway while the soak runs"
    )
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C: the gateways are stopped in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pin(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        config = Path(args.config).read_text() if args.config else ""
        sink: subprocess.Popen[bytes] | None = None
        sink_port = 0
        if args.disk_queue:
            sink_port = free_port()
            sink = start_gateway(sink_port, "observers: {enabled: false}\n", tmp, None)
            config += (
                f"forwarder: {{endpoint: 'http://127.0.0.1:{sink_port}'}}\n"
                f"queue: {{kind: disk, path: '{tmp / 'queue.db'}'}}\n"
            )
        port = free_port()
        grpc_port = free_port() if args.hostile else 0
        proc = start_gateway(port, config or None, tmp, 0, grpc_port)
        gw = psutil.Process(proc.pid)
        try:
            bodies = Bodies()
            # Warm-up (every series created), then the maximum.
            load, threads = run_load(port, bodies, 2.0, args.connections, None)
            for t in threads:
                t.join()
            ok_before = load.ok_points
            # The maximum: the median of three closed-loop windows, so that one window in which
            # the machine was busy with something else (or idle) does not set the pace.
            rates = []
            for _ in range(3):
                load, threads = run_load(port, bodies, args.max_seconds / 3, args.connections, None)
                for t in threads:
                    t.join()
                rates.append(load.requests * PER_REQUEST / (args.max_seconds / 3))
                ok_before += load.ok_points
            maximum = statistics.median(rates)
            target = args.rate or maximum * args.load
            print(
                f"maximum: {maximum:,.0f} points/s (median of windows "
                f"{', '.join(f'{r:,.0f}' for r in rates)}; {args.connections} connections); "
                f"soak at {target / maximum:.0%}: {target:,.0f} points/s for {args.seconds:.0f} s"
                + (" (forwarding through the disk queue)" if args.disk_queue else "")
            )
            before = parse(self_metrics(port)).all(
                "coderunner_gateway_points_received_total", transport="http"
            )
            received_before = sum(v for _, v in before)
            rss_start = gw.memory_info().rss
            attacker = Attacker(port, grpc_port) if args.hostile else None
            if attacker is not None:
                for work in (attacker.run, attacker.probe):
                    threading.Thread(target=work, daemon=True).start()
            load, threads = run_load(port, bodies, args.seconds, args.connections, target)
            started = time.monotonic()
            all_latencies: list[float] = []
            last_requests = 0
            rss_max = rss_start
            print(f"{'t (s)':>6} {'RSS (MiB)':>10} {'points/s':>10} {'p99 (ms)':>9} {'errors':>7}")
            print(f"{0:6.0f} {rss_start / 2**20:10.1f}")
            while any(t.is_alive() for t in threads):
                time.sleep(min(args.every, max(0.1, started + args.seconds + 5 - time.monotonic())))
                window = load.take_window()
                all_latencies.extend(window)
                rss = gw.memory_info().rss
                rss_max = max(rss_max, rss)
                with load.lock:
                    done, errors = load.requests, load.errors
                elapsed = time.monotonic() - started
                rate = (done - last_requests) * PER_REQUEST / args.every
                last_requests = done
                print(
                    f"{elapsed:6.0f} {rss / 2**20:10.1f} {rate:10,.0f} "
                    f"{p99(window) * 1e3:9.1f} {errors:7d}",
                    flush=True,
                )
            for t in threads:
                t.join()
            all_latencies.extend(load.take_window())
            if attacker is not None:
                attacker.stop.set()
                print(
                    f"hostile: {attacker.attacks} attack rounds (empty containers, long keys, "
                    "1,000 scopes over gRPC; endless headers, up to 200 silent sockets); "
                    f"slowest /live {attacker.live_worst * 1e3:.0f} ms, "
                    f"{attacker.live_failures} /live failures"
                )
            text = self_metrics(port)
            samples = parse(text)
            received = (
                sum(
                    v
                    for _, v in samples.all(
                        "coderunner_gateway_points_received_total", transport="http"
                    )
                )
                - received_before
            )
            dropped = {
                labels.get("reason", ""): v
                for labels, v in samples.all("coderunner_gateway_points_dropped_total")
            }
            lost = load.ok_points - received
            print(
                f"sent {load.ok_points:,} points in {load.requests:,} requests answered 200 "
                f"({load.errors} other answers); the gateway counted {received:,.0f}: "
                f"points lost {lost:,.0f}"
            )
            print(
                f"achieved {load.requests * PER_REQUEST / args.seconds:,.0f} points/s; "
                f"latency p50 {statistics.median(all_latencies) * 1e3:.1f} ms, "
                f"p99 {p99(all_latencies) * 1e3:.1f} ms; RSS start {rss_start / 2**20:.0f} MiB, "
                f"max {rss_max / 2**20:.0f} MiB, end {gw.memory_info().rss / 2**20:.0f} MiB; "
                f"store drops {dropped or 'none'}"
            )
            if load.errors:
                print(
                    f"{load.errors} requests refused (HTTP 503 + Retry-After: backpressure, "
                    "a client retries them; not counted as sent)"
                )
            if args.disk_queue:
                assert sink is not None
                lost += forwarded_loss(port, sink_port, ok_before + load.ok_points)
            print("verdict:", "no points lost" if lost == 0 else "POINTS LOST")
        finally:
            proc.terminate()
            proc.wait(15)
            if sink is not None:
                sink.terminate()
                sink.wait(15)


if __name__ == "__main__":
    main()
