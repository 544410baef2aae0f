"""`telemetry-gateway demo`: the gateway, the instrumented demo service and traffic, with a live
one-screen summary read from the gateway's own /metrics. Ctrl-C stops everything.

The gateway and the demo service run as subprocesses (`python -m gateway run`, uvicorn), exactly
as they would be deployed, so the demo shows the real OTLP path; their logs go to files whose
location is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from demo.settings import DEFAULT_DATABASE_URL
from demo.traffic import MAX_RATE, TrafficGenerator, TrafficStats
from gateway.catalogue import by_name

__all__ = ["DemoError", "add_arguments", "parse_prometheus_text", "run_demo", "run_from_args"]

_REPO = Path(__file__).resolve().parents[1]
_HTTP_COUNT = "http_server_request_duration_seconds_count"  # raw semconv name, no views
_START_TIMEOUT_S = 30.0


class DemoError(RuntimeError):
    """The demo could not start (a port in use, a process that died): the message says why."""


# The summary needs a handful of sample values; prometheus_client's parser is a dev-only
# dependency here, and these few lines cover the 0.0.4 text format's sample lines.
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_prometheus_text(text: str) -> Samples:
    """Sample lines by metric name: `{name: [(labels, value), ...]}`; comments skipped."""
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def _total(samples: Samples, name: str, **match: str) -> float:
    return sum(
        v
        for labels, v in samples.get(name, [])
        if all(labels.get(k) == want for k, want in match.items())
    )


@dataclass
class Summary:
    requests_total: float = 0.0
    requests_per_s: float = 0.0
    deployments_ok: float = 0.0
    deployments_failed: float = 0.0
    errors: float = 0.0
    websockets_open: float = 0.0
    active_series: float = 0.0

    @classmethod
    def from_samples(cls, samples: Samples, previous: Summary | None, dt: float) -> Summary:
        ns_deploy = by_name("deployments").prometheus_name()
        requests = _total(samples, _HTTP_COUNT) or _total(
            samples, by_name("api.requests").prometheus_name()
        )
        rate = 0.0
        if previous is not None and dt > 0:
            rate = max(0.0, requests - previous.requests_total) / dt
        return cls(
            requests_total=requests,
            requests_per_s=rate,
            deployments_ok=_total(samples, ns_deploy, status="success"),
            deployments_failed=_total(samples, ns_deploy, status="failed"),
            errors=_total(samples, by_name("errors").prometheus_name()),
            websockets_open=_total(
                samples, by_name("websocket.active_connections").prometheus_name()
            ),
            active_series=_total(samples, by_name("gateway.active_series").prometheus_name()),
        )


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


async def _wait_live(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise DemoError(f"{url} process exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise DemoError(f"{url} did not answer within {_START_TIMEOUT_S:.0f}s (log: {log})")


def _spawn(argv: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=_REPO,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )


def _stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _render(
    urls: Mapping[str, str],
    database: str,
    summary: Summary,
    stats: TrafficStats | None,
    logs: Path,
    started: float,
) -> str:
    lines = [
        f"telemetry-gateway demo - running {time.monotonic() - started:5.0f}s  (Ctrl-C stops)",
        "",
        *(f"  {k:<16}{v}" for k, v in urls.items()),
        f"  {'database':<16}{database}",
        f"  {'logs':<16}{logs}",
        "",
        f"  {'requests/s':<16}{summary.requests_per_s:8.1f}   (total {summary.requests_total:.0f})",
        f"  {'deployments':<16}{summary.deployments_ok:8.0f} success  "
        f"{summary.deployments_failed:.0f} failed",
        f"  {'errors':<16}{summary.errors:8.0f}",
        f"  {'websockets open':<16}{summary.websockets_open:8.0f}",
        f"  {'active series':<16}{summary.active_series:8.0f}",
    ]
    if stats is not None:
        classes = sorted({f"{code // 100}xx" for code in stats.responses})
        by_class = "  ".join(
            f"{c}={sum(n for code, n in stats.responses.items() if code // 100 == int(c[0]))}"
            for c in classes
        )
        lines.append(
            f"  {'traffic sent':<16}{stats.requests:8d} requests  {by_class}  "
            f"ws {stats.ws_sessions} ok / {stats.ws_rejected} rejected"
        )
    return "\n".join(lines)


async def _summaries(
    gateway_url: str,
    demo_url: str,
    urls: Mapping[str, str],
    logs: Path,
    generator: TrafficGenerator | None,
    stop: asyncio.Event,
    interval_s: float,
    out: IO[str],
) -> None:
    tty = out.isatty()
    previous: Summary | None = None
    last = time.monotonic()
    started = last
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            if stop.is_set():
                return
            try:
                text = (await client.get(gateway_url + "/metrics")).text
                index = (await client.get(demo_url + "/")).json()
            except (httpx.HTTPError, ValueError) as exc:
                out.write(f"summary unavailable: {exc!r}\n")
                continue
            now = time.monotonic()
            summary = Summary.from_samples(parse_prometheus_text(text), previous, now - last)
            previous, last = summary, now
            stats = generator.stats if generator is not None else None
            screen = _render(urls, index.get("database", "?"), summary, stats, logs, started)
            if tty:
                out.write("\x1b[H\x1b[J" + screen + "\n")
            else:
                out.write(
                    f"[{now - started:6.0f}s] req/s {summary.requests_per_s:.1f} "
                    f"deployments {summary.deployments_ok:.0f}/{summary.deployments_failed:.0f} "
                    f"errors {summary.errors:.0f} series {summary.active_series:.0f}\n"
                )
            out.flush()


def run_demo(
    *,
    host: str = "127.0.0.1",
    http_port: int = 4318,
    grpc_port: int = 4317,
    demo_port: int = 3000,
    gateway_config: str | None = None,
    database_url: str | None = None,
    table_prefix: str = "demo_",
    rate: float = 5.0,
    traffic: bool = True,
    duration_s: float | None = None,
    export_interval_s: float = 2.0,
    summary_interval_s: float = 2.0,
    log_dir: str | None = None,
    out: IO[str] | None = None,
) -> int:
    """Start the gateway, the demo service and the traffic; print where to look and a live
    summary until Ctrl-C (SIGINT/SIGTERM) or `duration_s`; stop everything. Returns the exit
    code (0, or 1 when something could not start, with the reason printed)."""
    out = out or sys.stdout
    try:
        return asyncio.run(
            _run(
                host=host,
                http_port=http_port,
                grpc_port=grpc_port,
                demo_port=demo_port,
                gateway_config=gateway_config,
                database_url=database_url,
                table_prefix=table_prefix,
                rate=rate,
                traffic=traffic,
                duration_s=duration_s,
                export_interval_s=export_interval_s,
                summary_interval_s=summary_interval_s,
                log_dir=log_dir,
                out=out,
            )
        )
    except DemoError as exc:
        out.write(f"demo: {exc}\n")
        return 1


async def _run(
    *,
    host: str,
    http_port: int,
    grpc_port: int,
    demo_port: int,
    gateway_config: str | None,
    database_url: str | None,
    table_prefix: str,
    rate: float,
    traffic: bool,
    duration_s: float | None,
    export_interval_s: float,
    summary_interval_s: float,
    log_dir: str | None,
    out: IO[str],
) -> int:
    if host not in ("127.0.0.1", "localhost"):
        raise DemoError("the demo binds 127.0.0.1 only (its traffic goes there)")
    if not 0 < rate <= MAX_RATE:
        raise DemoError(f"--rate must be in (0, {MAX_RATE:.0f}]")
    for name, port in (("--http-port", http_port), ("--demo-port", demo_port)) + (
        (("--grpc-port", grpc_port),) if grpc_port else ()
    ):
        if not _port_free(host, port):
            raise DemoError(f"port {port} is in use: pass another {name}")
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="telemetry-demo-"))
    logs.mkdir(parents=True, exist_ok=True)
    gateway_url = f"http://{host}:{http_port}"
    demo_url = f"http://{host}:{demo_port}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    gw_argv = [
        sys.executable,
        "-m",
        "gateway",
        "run",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
    ]
    if gateway_config:
        gw_argv += ["--config", gateway_config]
    demo_env = {
        **base_env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": gateway_url,
        "OTEL_METRIC_EXPORT_INTERVAL": str(int(export_interval_s * 1000)),
        "DATABASE_URL": database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        "DEMO_TABLE_PREFIX": table_prefix,
    }
    demo_argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "demo.app:create_app_from_env",
        "--factory",
        "--host",
        host,
        "--port",
        str(demo_port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gateway = demo = None
    try:
        gateway = _spawn(gw_argv, logs / "gateway.log", base_env)
        await _wait_live(gateway_url + "/live", gateway, logs / "gateway.log")
        demo = _spawn(demo_argv, logs / "demo.log", demo_env)
        await _wait_live(demo_url + "/live", demo, logs / "demo.log")
        urls = {
            "metrics": gateway_url + "/metrics",
            "gateway health": gateway_url + "/api/health",
            "demo service": demo_url + "/",
            "demo health": demo_url + "/api/health",
        }
        out.write("\n".join(f"{k:<16}{v}" for k, v in urls.items()) + "\n")
        out.flush()
        generator = TrafficGenerator(demo_url, rate=rate) if traffic else None
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(
                _summaries(
                    gateway_url, demo_url, urls, logs, generator, stop, summary_interval_s, out
                )
            )
        ]
        if generator is not None:
            tasks.append(asyncio.create_task(generator.run(stop=stop)))
        if duration_s is not None:
            loop.call_later(duration_s, stop.set)
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        # Producers first: the demo flushes its last export into the still-running gateway.
        await asyncio.to_thread(_stop, demo)
        await asyncio.to_thread(_stop, gateway)
        out.write(f"demo stopped (logs in {logs})\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `telemetry-gateway demo` flags."""
    parser.add_argument("--config", metavar="FILE", help="gateway YAML config")
    parser.add_argument("--http-port", type=int, default=4318, help="gateway HTTP (4318)")
    parser.add_argument("--grpc-port", type=int, default=4317, help="gateway gRPC (4317; 0 off)")
    parser.add_argument("--demo-port", type=int, default=3000, help="demo service (3000)")
    parser.add_argument(
        "--database-url", help=f"demo PostgreSQL DSN (DATABASE_URL, else {DEFAULT_DATABASE_URL})"
    )
    parser.add_argument(
        "--table-prefix", default="demo_", help="prefix of the demo's tables (demo_)"
    )
    parser.add_argument("--rate", type=float, default=5.0, help="traffic actions per second (5)")
    parser.add_argument("--no-traffic", action="store_true", help="start without traffic")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--log-dir", help="where the gateway and demo logs go (a temp dir)")


def run_from_args(args: argparse.Namespace) -> int:
    return run_demo(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        demo_port=args.demo_port,
        gateway_config=args.config,
        database_url=args.database_url,
        table_prefix=args.table_prefix,
        rate=args.rate,
        traffic=not args.no_traffic,
        duration_s=args.duration,
        log_dir=args.log_dir,
    )


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m demo.runner", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run_from_args(_parser.parse_args()))
