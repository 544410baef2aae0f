"""CPU cost of HTTP instrumentation on a trivial FastAPI endpoint, against peers, in one run.

    .venv/bin/python bench/instrumentation_overhead.py [--requests 20000] [--rounds 5]
    .venv/bin/python bench/instrumentation_overhead.py --server [--seconds 5] [--rounds 3]

Variants, each a FastAPI app serving GET /items/{item_id}:
  plain           no instrumentation
  ours            instrumentation.instrument_app() with a full setup() (resource, OTLP/HTTP
                  exporter every 5 s to a local sink, asyncpg wrapper)
  otel-stock      opentelemetry-instrumentation-fastapi (FastAPIInstrumentor) with an SDK
                  MeterProvider exporting to the same sink, no TracerProvider (default semconv)
  fastapi-native  FastAPI's own telemetry (FastAPI(telemetry=...)), metrics only, same sink
  instrumentator  prometheus-fastapi-instrumentator

Default (in-process): each app is called directly as an ASGI application, `--requests` times
per round, in one event loop, with a fresh scope per call and do-nothing receive/send; CPU per
request is `time.process_time()` (all threads of this process, so the exporters' work counts)
over the calls / requests. This isolates what the instrumentation adds to the app from the
server's and the network's cost. Each round runs every variant once, in a shuffled order, each
between two runs of `plain`. Reported are the best run of each variant (and its difference to
the best `plain`), and the median over rounds of each variant's ratio to the `plain` runs
around it, turned into microseconds at the best `plain` speed: the headline figure. On a
shared machine whose load changes from second to second, a whole run slows down or speeds up
by tens of percent, but the runs on either side of a short one move with it, so the paired
ratio stays put. The count of Python calls per request is printed too: no load moves it.

`--server`: the previous end-to-end method. Each app runs under uvicorn (one process, pinned to
CPU 0); this process (pinned to CPU 1) keeps 32 keep-alive HTTP/1.1 connections busy; CPU
us/request = the server process's user + system CPU time over the window / requests answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import os
import pstats
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VARIANTS = ("plain", "ours", "otel-stock", "fastapi-native", "instrumentator")
PATH = "/items/42"
CONCURRENCY = 32
REPO = Path(__file__).resolve().parents[1]
#: providers built for the in-process variants, shut down before the sink closes
_PROVIDERS: list[Any] = []
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def build_app(variant: str, sink: str) -> Any:
    from fastapi import FastAPI

    kwargs: dict[str, Any] = {}
    if variant == "fastapi-native":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=sink), 5000)
        native_provider = MeterProvider(metric_readers=[reader])
        _PROVIDERS.append(native_provider)
        kwargs["telemetry"] = {
            "meter_provider": native_provider,
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
        from instrumentation import InstrumentationSettings, instrument_app, setup

        handle = setup(
            InstrumentationSettings(service_name="bench", endpoint=sink, set_global=False)
        )
        instrument_app(app, handle)
        _PROVIDERS.append(handle.meter_provider)
    elif variant == "otel-stock":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=sink), 5000)
        stock_provider = MeterProvider(metric_readers=[reader])
        _PROVIDERS.append(stock_provider)
        FastAPIInstrumentor.instrument_app(app, meter_provider=stock_provider)
    elif variant == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app).expose(app)
    return app


# --- in-process ASGI calls (the default) ---


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: dict[str, Any]) -> None:
    pass


async def _check(app: Any) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(), _receive, send)
    if not sent or sent[0].get("status") != 200 or sent[-1].get("body") != b'{"id":42}':
        raise RuntimeError(f"unexpected response: {sent}")


async def _calls(app: Any, n: int) -> float:
    """CPU seconds per call over `n` calls."""
    template = _scope()
    start = time.process_time()
    for _ in range(n):
        await app(dict(template, state={}), _receive, _discard)
    return (time.process_time() - start) / n


def _calls_per_request(loop: asyncio.AbstractEventLoop, app: Any, n: int = 200) -> float:
    """Function calls (Python and built-in) per request, counted by cProfile."""
    profile = cProfile.Profile()
    profile.enable()
    loop.run_until_complete(_calls(app, n))
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return sum(row[1] for row in stats.values()) / n


def in_process(
    variants: list[str], requests: int, rounds: int, sink: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Best CPU us/request per variant, and the median over rounds of each variant's ratio to
    `plain` run just before and just after it (paired: a moment that the machine's other work
    slowed down slows both sides of the ratio)."""
    apps = {v: build_app(v, sink) for v in variants}
    loop = asyncio.new_event_loop()
    try:
        for app in apps.values():
            loop.run_until_complete(_check(app))
            loop.run_until_complete(_calls(app, 2000))  # warm-up: caches, lazy stacks
        per_round: dict[str, list[float]] = {v: [] for v in variants}
        ratios_by_round: dict[str, list[float]] = {v: [] for v in variants if v != "plain"}
        order = [v for v in variants if v != "plain"]
        shuffle = random.Random(15).shuffle

        def measure(v: str) -> float:
            gc.collect()
            us = loop.run_until_complete(_calls(apps[v], requests)) * 1e6
            per_round[v].append(us)
            return us

        for r in range(rounds):
            shuffle(order)  # no variant always runs first, on caches the previous one warmed
            for v in order:
                if "plain" in apps:
                    # plain, v, plain: v's ratio to the plain runs on either side of it
                    before, us, after = measure("plain"), measure(v), measure("plain")
                    ratios_by_round[v].append(2 * us / (before + after))
                else:
                    measure(v)
            line = " ".join(f"{v} {per_round[v][-1]:7.2f}" for v in variants)
            print(f"round {r + 1:3d} us CPU/req: {line}", flush=True)
        best = {v: min(xs) for v, xs in per_round.items()}
        print()
        for v in variants:  # a load-independent view of the same cost
            print(f"{v:<15} {_calls_per_request(loop, apps[v]):6.1f} Python calls per request")
        ratios: dict[str, float] = {}
        if "plain" in apps:
            ratios = {v: statistics.median(xs) for v, xs in ratios_by_round.items() if xs}
            ratios["plain"] = 1.0
        return best, ratios
    finally:
        loop.close()
        for provider in _PROVIDERS:
            provider.shutdown()


# --- end to end through uvicorn (--server) ---


def serve(variant: str, port: int, sink: str) -> None:
    import uvicorn

    uvicorn.run(
        build_app(variant, sink),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


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


def measure_server(variant: str, seconds: float, sink: str, pin: bool) -> tuple[float, float]:
    import psutil

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


def server_mode(variants: list[str], seconds: float, rounds: int, sink: str) -> dict[str, float]:
    pin = len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    else:
        print("fewer than 2 CPUs: server and load generator share a core; ratios still hold")
    best: dict[str, float] = {}
    for r in range(rounds):
        for v in variants:
            rps, us = measure_server(v, seconds, sink, pin)
            print(f"round {r + 1} {v:<15} {rps:8.0f} req/s {us:7.1f} us CPU/req", flush=True)
            best[v] = min(best.get(v, us), us)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="calls per variant a round")
    parser.add_argument("--rounds", type=int, default=60, help="rounds (--server: 3 is plenty)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--server", action="store_true", help="end to end through uvicorn")
    parser.add_argument("--seconds", type=float, default=5.0, help="--server: load per round")
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
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ratios: dict[str, float] = {}
    with otlp_sink() as sink:
        if args.server:
            best = server_mode(variants, args.seconds, args.rounds, sink)
        else:
            best, ratios = in_process(variants, args.requests, args.rounds, sink)
    base = best.get("plain")
    print()
    print(
        f"{'variant':<15} {'best us/req':>11} {'added (best)':>12} "
        f"{'x plain (median)':>16} {'added (median)':>14}"
    )
    added: dict[str, float] = {}
    for v in variants:
        us = best[v]
        by_best = f"{us - base:+12.2f}" if base else "           -"
        if base and v in ratios:
            # The paired ratio at the machine's unloaded speed (the best plain round).
            added[v] = (ratios[v] - 1) * base
            paired = f"{ratios[v]:15.3f}x {added[v]:+14.2f}"
        else:
            paired = f"{'-':>16} {'-':>14}"
        print(f"{v:<15} {us:11.2f} {by_best} {paired}")
    if base and "ours" in best:
        mine = added.get("ours", best["ours"] - base)
        for peer in ("instrumentator", "otel-stock", "fastapi-native"):
            if peer in best:
                theirs = added.get(peer, best[peer] - base)
                print(f"ours / {peer}: {mine / theirs:.3f} of its added CPU")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
