"""CPU cost of HTTP instrumentation on a trivial FastAPI endpoint, against peers, in one run.

    .venv/bin/python bench/instrumentation_overhead.py [--seconds 5] [--rounds 3]

Variants, each a uvicorn server (one process, pinned to CPU 0) serving GET /items/{item_id}:
  plain           no instrumentation
  ours            instrumentation.instrument_app(): full setup (resource, OTLP/HTTP exporter
                  every 5 s to a local sink, app/business meters, asyncpg wrapper)
  otel-stock      opentelemetry-instrumentation-fastapi (FastAPIInstrumentor) with an SDK
                  MeterProvider exporting to the same sink, no TracerProvider (default semconv)
  fastapi-native  FastAPI's own telemetry (FastAPI(telemetry=...)), metrics only, same sink
  instrumentator  prometheus-fastapi-instrumentator with /metrics exposed
The load generator (this process, pinned to CPU 1) keeps 32 keep-alive HTTP/1.1 connections
busy. CPU us/request = the server process's CPU time (user + system, psutil) over the measured
window / requests answered in it. Rounds interleave the variants; the best (lowest) round of
each is reported, since other work on the machine can only add CPU, not remove it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

VARIANTS = ("plain", "ours", "otel-stock", "fastapi-native", "instrumentator")
PATH = "/items/42"
CONCURRENCY = 32
REPO = Path(__file__).resolve().parents[1]


# --- the server side (run as `--serve VARIANT`) ---


def build_app(variant: str, sink: str) -> Any:
    from fastapi import FastAPI

    kwargs: dict[str, Any] = {}
    if variant == "fastapi-native":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=sink), 5000)
        kwargs["telemetry"] = {
            "meter_provider": MeterProvider(metric_readers=[reader]),
            "tracing": False,
            "logs": False,
        }
    else:
        # Native telemetry stays off for the other variants: no global provider is set for it
        # to pick up, and we say so explicitly.
        kwargs["telemetry"] = {"metrics": False, "tracing": False, "logs": False}
    app = FastAPI(**kwargs)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    if variant == "ours":
        from instrumentation import instrument_app

        instrument_app(app, service_name="bench", endpoint=sink, set_global=False)
    elif variant == "otel-stock":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=sink), 5000)
        FastAPIInstrumentor.instrument_app(
            app, meter_provider=MeterProvider(metric_readers=[reader])
        )
    elif variant == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app).expose(app)
    return app


def serve(variant: str, port: int, sink: str) -> None:
    import uvicorn

    uvicorn.run(
        build_app(variant, sink),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


# --- the load generator ---


async def _connection(port: int, stop: float, counter: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    try:
        while time.monotonic() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response: {head[:80]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            counter[0] += 1
    finally:
        writer.close()


async def _load(port: int, seconds: float) -> int:
    counter = [0]
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_connection(port, stop, counter) for _ in range(CONCURRENCY)))
    return counter[0]


def load(port: int, seconds: float) -> int:
    try:
        import uvloop

        return uvloop.run(_load(port, seconds))
    except ImportError:
        return asyncio.run(_load(port, seconds))


# --- orchestration ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    """Accepts OTLP/HTTP exports and discards them, so exporters do their real work."""

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/metrics"
    finally:
        server.shutdown()
        server.server_close()


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("server did not answer")


def measure(variant: str, seconds: float, sink: str, pin: bool) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in [k for k in env if k.startswith("OTEL_")]:
        del env[key]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, "--port", str(port), "--sink", sink],
        env=env,
        cwd=REPO,
        preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None,
    )
    try:
        wait_ready(port, proc)
        load(port, 1.0)  # warm-up: imports, caches, first export
        ps = psutil.Process(proc.pid)
        before = ps.cpu_times()
        start = time.monotonic()
        requests = load(port, seconds)
        elapsed = time.monotonic() - start
        after = ps.cpu_times()
        cpu = (after.user - before.user) + (after.system - before.system)
        return requests / elapsed, cpu / requests * 1e6
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured load per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant (best kept)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.sink)
        return
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    pin = len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    else:
        print("fewer than 2 CPUs: server and load generator share a core; ratios still hold")
    best: dict[str, tuple[float, float]] = {}
    with otlp_sink() as sink:
        for r in range(args.rounds):
            for v in variants:
                rps, us = measure(v, args.seconds, sink, pin)
                print(f"round {r + 1} {v:<15} {rps:8.0f} req/s {us:7.1f} us CPU/req", flush=True)
                if v not in best or us < best[v][1]:
                    best[v] = (rps, us)
    base = best.get("plain")
    print()
    print(f"{'variant':<15} {'req/s':>8} {'CPU us/req':>11} {'added us':>9} {'vs plain':>9}")
    for v in variants:
        rps, us = best[v]
        added = f"{us - base[1]:+9.1f}" if base else "        -"
        ratio = f"{us / base[1]:8.2f}x" if base else "        -"
        print(f"{v:<15} {rps:8.0f} {us:11.1f} {added} {ratio}")


if __name__ == "__main__":
    main()
