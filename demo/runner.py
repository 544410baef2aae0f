"""`telemetry-gateway demo`: the gateway, the instrumented demo service and traffic, with a live
one-screen summary read from the gateway (`/metrics`, `/api/status/pipeline`, `/health`).
Ctrl-C stops everything.

The traffic is the `steady` profile: a healthy service that fires none of the repository's
alerts. `--scenario NAME` (`demo.scenarios`) adds a fault after a warm-up that fires the
matching alerts, then recovers so that they resolve; `telemetry-gateway stack up` runs the
Prometheus and Alertmanager that show them.

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from demo.dbproxy import DatabaseProxy
from demo.scenarios import SCENARIOS, Scenario
from demo.settings import DEFAULT_DATABASE_URL
from demo.traffic import MAX_RATE, TrafficGenerator, TrafficStats
from gateway.catalogue import DEFAULT_NAMESPACE, by_name
from gateway.stack.processes import port_free, start_logged

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
        ns = _namespace_of(samples)

        def name(entry: str) -> str:
            return by_name(entry).prometheus_name(ns)

        ns_deploy = name("deployments")
        requests = _total(samples, _HTTP_COUNT) or _total(samples, name("api.requests"))
        rate = 0.0
        if previous is not None and dt > 0:
            rate = max(0.0, requests - previous.requests_total) / dt
        return cls(
            requests_total=requests,
            requests_per_s=rate,
            deployments_ok=_total(samples, ns_deploy, status="success"),
            deployments_failed=_total(samples, ns_deploy, status="failed"),
            errors=_total(samples, name("errors")),
            websockets_open=_total(samples, name("websocket.active_connections")),
            active_series=_total(samples, name("gateway.active_series")),
        )


def _namespace_of(samples: Samples) -> str:
    """The gateway's metric namespace (GATEWAY_NAMESPACE), read off its own series, so the
    summary also reads a gateway it did not start (`--gateway URL`)."""
    suffix = "_" + by_name("gateway.active_series").prometheus_name("")
    for sample_name in samples:
        if sample_name.endswith(suffix):
            return sample_name.removesuffix(suffix)
    return DEFAULT_NAMESPACE


async def _get_json(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        body = (await client.get(url)).json()
    return body if isinstance(body, dict) else {}


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


def _stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class GatewayFigures:
    """What the gateway says about itself (`/api/status/pipeline`, `/health`)."""

    points_per_s: float | None = None
    dropped: int = 0
    refused: int = 0
    health: str = "?"

    @classmethod
    def from_status(cls, pipeline: Mapping[str, Any], health: Mapping[str, Any]) -> GatewayFigures:
        """From `/api/status/pipeline` and `/api/status/health` (the checks that do not pass
        are named when the details are shown)."""
        status = str(health.get("status", "?"))
        troubled = [
            f"{c['name']}: {c['status']}" for c in health.get("checks", []) if c["status"] != "pass"
        ]
        return cls(
            points_per_s=pipeline["points_in"]["per_second"],
            dropped=sum(pipeline["dropped_points"].values()),
            refused=sum(pipeline["refused_requests"].values()),
            health=f"{status} ({', '.join(troubled)})" if troubled else status,
        )


@dataclass
class ScenarioState:
    """Where a scenario stands: `waiting` (warm-up), `fault`, `recovering`."""

    scenario: Scenario
    warmup_s: float
    fault_s: float
    phase: str = "waiting"
    phase_ends: float = 0.0

    def describe(self, now: float) -> str:
        s = self.scenario
        left = max(0.0, self.phase_ends - now)
        if self.phase == "waiting":
            return f"{s.name}: steady for {left:.0f}s more, then {s.fault}"
        if self.phase == "fault":
            return f"{s.name}: FAULT ({s.fault}) for {left:.0f}s more"
        return f"{s.name}: recovering; the alerts resolve once the rate windows forget the fault"


def _render(
    urls: Mapping[str, str],
    database: str,
    summary: Summary,
    stats: TrafficStats | None,
    logs: Path,
    started: float,
    *,
    gateway: GatewayFigures | None = None,
    scenario: ScenarioState | None = None,
) -> str:
    """One screen (at most 24 lines): where to look, labelled figures, what to try next."""
    now = time.monotonic()
    deployments = summary.deployments_ok + summary.deployments_failed
    failed_share = summary.deployments_failed / deployments if deployments else 0.0
    lines = [
        f"telemetry-gateway demo - running {now - started:5.0f}s  (Ctrl-C stops everything)",
        *(f"  {k:<16}{v}" for k, v in urls.items()),
        f"  {'database':<16}{database}",
        f"  {'logs':<16}{logs}",
        "demo service, as the gateway received it",
        f"  {'requests/s':<16}{summary.requests_per_s:8.1f}   (total {summary.requests_total:.0f})",
        f"  {'deployments':<16}{summary.deployments_ok:8.0f} success  "
        f"{summary.deployments_failed:.0f} failed ({failed_share:.0%}; alert above 10%)",
        f"  {'errors':<16}{summary.errors:8.0f}   (failed builds, database and server errors)",
        f"  {'websockets open':<16}{summary.websockets_open:8.0f}",
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
    g = gateway or GatewayFigures()
    rate = "-" if g.points_per_s is None else f"{g.points_per_s:.1f}"
    lines += [
        "gateway",
        f"  {'points/s in':<16}{rate:>8}   {'active series':<14}{summary.active_series:.0f}",
        f"  {'dropped points':<16}{g.dropped:8d}   {'refused':<14}{g.refused} requests   "
        f"health {g.health}",
        "scenario: "
        + (scenario.describe(now) if scenario else "none (steady state: no alert should fire)"),
        "try next",
        f"  open {urls.get('status page', '')} (cardinality, live tail, health, host charts)",
        "  telemetry-gateway demo --scenario error-spike   (or slow-deploys, db-outage)",
        "  telemetry-gateway stack up --scenario error-spike   (Prometheus :9090, Alertmanager"
        " :9093)",
    ]
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
    scenario: ScenarioState | None = None,
) -> None:
    """Every `interval_s`: on a terminal the whole screen redrawn in place (cursor home, each
    line cleared to its end, the rest of the screen cleared), else one plain line."""
    tty = out.isatty()
    previous: Summary | None = None
    last = time.monotonic()
    started = last
    phase = scenario.phase if scenario else ""
    if tty:
        out.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear once
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval_s)
                if stop.is_set():
                    return
                try:
                    text = (await client.get(gateway_url + "/metrics")).text
                    index = (await client.get(demo_url + "/")).json()
                    figures = GatewayFigures.from_status(
                        (await client.get(gateway_url + "/api/status/pipeline")).json(),
                        (await client.get(gateway_url + "/api/status/health")).json(),
                    )
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    out.write(f"summary unavailable: {exc!r}\n")
                    continue
                now = time.monotonic()
                summary = Summary.from_samples(parse_prometheus_text(text), previous, now - last)
                previous, last = summary, now
                stats = generator.stats if generator is not None else None
                if tty:
                    screen = _render(
                        urls,
                        index.get("database", "?"),
                        summary,
                        stats,
                        logs,
                        started,
                        gateway=figures,
                        scenario=scenario,
                    )
                    body = "".join(line + "\x1b[K\n" for line in screen.splitlines())
                    out.write("\x1b[H" + body + "\x1b[J")
                else:
                    if scenario is not None and scenario.phase != phase:
                        phase = scenario.phase
                        out.write(f"[{now - started:6.0f}s] scenario {scenario.describe(now)}\n")
                    out.write(
                        f"[{now - started:6.0f}s] req/s {summary.requests_per_s:.1f} "
                        f"deployments {summary.deployments_ok:.0f}/"
                        f"{summary.deployments_failed:.0f} "
                        f"errors {summary.errors:.0f} series {summary.active_series:.0f} "
                        f"points/s {figures.points_per_s or 0:.1f} health {figures.health}\n"
                    )
                out.flush()
    finally:
        if tty:
            out.write("\x1b[?25h")  # the cursor back
            out.flush()


async def _drive_scenario(
    state: ScenarioState,
    generator: TrafficGenerator | None,
    proxy: DatabaseProxy | None,
    stop: asyncio.Event,
) -> None:
    """Warm-up, fault, recovery; the fault is always undone, even on Ctrl-C."""

    async def wait(seconds: float) -> bool:
        state.phase_ends = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        return not stop.is_set()

    if not await wait(state.warmup_s):
        return
    state.phase = "fault"
    if generator is not None:
        generator.use_profile(state.scenario.profile)
    if proxy is not None and state.scenario.database_outage:
        proxy.cut()
    try:
        await wait(state.fault_s)
    finally:
        if generator is not None:
            generator.use_profile("steady")
        if proxy is not None:
            proxy.restore()
        state.phase = "recovering"


def _via_proxy(database_url: str, port: int) -> str:
    """`database_url` with its host and port replaced by the relay's."""
    parts = urlsplit(database_url)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


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
    scenario: str | None = None,
    warmup_s: float | None = None,
    fault_s: float | None = None,
    external_gateway: str | None = None,
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
                scenario=scenario,
                warmup_s=warmup_s,
                fault_s=fault_s,
                external_gateway=external_gateway,
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
    scenario: str | None = None,
    warmup_s: float | None = None,
    fault_s: float | None = None,
    external_gateway: str | None = None,
) -> int:
    chosen = None
    if scenario is not None:
        chosen = SCENARIOS.get(scenario)
        if chosen is None:
            raise DemoError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
        if (warmup_s is not None and warmup_s < 0) or (fault_s is not None and fault_s <= 0):
            raise DemoError("--warmup must be >= 0 and --fault-seconds > 0")
        if not traffic and not chosen.database_outage:
            raise DemoError(f"scenario {scenario} needs traffic: drop --no-traffic")
    if host not in ("127.0.0.1", "localhost"):
        raise DemoError("the demo binds 127.0.0.1 only (its traffic goes there)")
    if not 0 < rate <= MAX_RATE:
        raise DemoError(f"--rate must be in (0, {MAX_RATE:.0f}]")
    ports = [("--demo-port", demo_port)]
    if external_gateway is None:
        ports += [("--http-port", http_port)] + ([("--grpc-port", grpc_port)] if grpc_port else [])
    else:
        parts = urlsplit(external_gateway)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise DemoError(f"--gateway must be a http://127.0.0.1 URL, got {external_gateway!r}")
        if gateway_config:
            raise DemoError("--config configures the demo's own gateway: not with --gateway")
    for name, port in ports:
        if not port_free(port, host):
            raise DemoError(f"port {port} is in use: pass another {name}")
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="telemetry-demo-"))
    logs.mkdir(parents=True, exist_ok=True)
    gateway_url = (external_gateway or f"http://{host}:{http_port}").rstrip("/")
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
    dsn = original_dsn = database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    proxy = None
    if chosen is not None and chosen.database_outage:
        target = urlsplit(dsn)
        proxy = DatabaseProxy(target.hostname or "127.0.0.1", target.port or 5432)
        dsn = _via_proxy(dsn, await proxy.start())
    demo_env = {
        **base_env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": gateway_url,
        "OTEL_METRIC_EXPORT_INTERVAL": str(int(export_interval_s * 1000)),
        "DATABASE_URL": dsn,
        "DEMO_TABLE_PREFIX": table_prefix,
        # the database check every 5 s, so an outage shows within the alert's minute
        "DEMO_HEALTH_INTERVAL_S": os.environ.get("DEMO_HEALTH_INTERVAL_S", "5"),
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
        gateway_env = dict(base_env)
        if not gateway_config:
            # The demo listens on loopback only: show health details on /api/health and the
            # status page (a config file, or the environment, decides otherwise).
            gateway_env.setdefault("GATEWAY_HEALTH__DETAILS", "always")
        if external_gateway is None:
            gateway = start_logged(gw_argv, logs / "gateway.log", gateway_env, _REPO)
            await _wait_live(gateway_url + "/live", gateway, logs / "gateway.log")
        else:
            # Any HTTP answer will do: behind `stack up --replicas`, the URL is the
            # load-balancing Collector's OTLP endpoint, which has no /live.
            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    await client.get(gateway_url + "/live")
            except httpx.HTTPError as exc:
                raise DemoError(f"nothing answers at {gateway_url}: {exc}") from None
        demo = start_logged(demo_argv, logs / "demo.log", demo_env, _REPO)
        await _wait_live(demo_url + "/live", demo, logs / "demo.log")
        if proxy is not None:
            database = (await _get_json(demo_url + "/")).get("database", "")
            if database != "connected":
                raise DemoError(
                    f"scenario db-outage needs PostgreSQL at {original_dsn}: {database}"
                )
        urls = {
            "status page": gateway_url + "/ui/",
            "metrics": gateway_url + "/metrics",
            "gateway health": gateway_url + "/api/health",
            "demo service": demo_url + "/",
            "demo health": demo_url + "/api/health",
        }
        out.write("\n".join(f"{k:<16}{v}" for k, v in urls.items()) + "\n")
        out.flush()
        generator = TrafficGenerator(demo_url, rate=rate, profile="steady") if traffic else None
        state = None
        if chosen is not None:
            state = ScenarioState(
                chosen,
                chosen.warmup_s if warmup_s is None else warmup_s,
                chosen.fault_s if fault_s is None else fault_s,
            )
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(
                _summaries(
                    gateway_url,
                    demo_url,
                    urls,
                    logs,
                    generator,
                    stop,
                    summary_interval_s,
                    out,
                    state,
                )
            )
        ]
        if state is not None:
            tasks.append(asyncio.create_task(_drive_scenario(state, generator, proxy, stop)))
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
        if proxy is not None:
            await proxy.close()
        out.write(f"demo stopped (logs in {logs})\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `telemetry-gateway demo` flags."""
    parser.add_argument("--config", metavar="FILE", help="gateway YAML config")
    parser.add_argument(
        "--gateway",
        metavar="URL",
        help="report to this running gateway instead of starting one (the local stack's: "
        "http://127.0.0.1:4318)",
    )
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
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        help="after a warm-up, a fault that fires the matching alerts, then recovery: "
        + "; ".join(f"{s.name}: {s.fault} ({', '.join(s.alerts)})" for s in SCENARIOS.values()),
    )
    parser.add_argument(
        "--warmup", type=float, metavar="SECONDS", help="steady traffic before the fault (60)"
    )
    parser.add_argument(
        "--fault-seconds", type=float, metavar="SECONDS", help="how long the fault lasts (300)"
    )


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
        scenario=args.scenario,
        warmup_s=args.warmup,
        fault_s=args.fault_seconds,
        external_gateway=args.gateway,
    )


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m demo.runner", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run_from_args(_parser.parse_args()))
