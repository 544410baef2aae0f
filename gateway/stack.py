"""`telemetry-gateway stack up|status|stop|restart|logs`: the local monitoring stack without Docker.

Starts node_exporter, the gateway, the demo service, Alertmanager and Prometheus (the Debian
packages' binaries, this repository's configs) as background processes, like the original's
`scripts/start-monitoring.sh` (`--logs`, `--status`, `--stop`, `--restart`). Everything lives in
one directory of its own (`.stack/` in the checkout, gitignored):

    .stack/stack.json            ports and the processes `up` started (pid + start time)
    .stack/run/<component>.pid   one pid file per component
    .stack/logs/<component>.log  stdout and stderr of each component
    .stack/prometheus/           generated prometheus.yml and the TSDB (15d / 10GB retention)
    .stack/alertmanager/         Alertmanager's silences and notification log

Each component runs in its own session (process group), so `stop` ends it with everything it
spawned, and only processes whose pid *and* start time match what `up` recorded are signalled.
The demo service is optional: when it cannot start (no PostgreSQL is fine, it reports that in
its health; a missing package is not), `up` says why and carries on without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import yaml

__all__ = ["Component", "Stack", "StackError", "StackSettings", "add_stack_parser", "main"]

REPO = Path(__file__).resolve().parents[1]
RETENTION_TIME = "15d"
RETENTION_SIZE = "10GB"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_ORDER = ("node-exporter", "gateway", "demo", "alertmanager", "prometheus")


class StackError(RuntimeError):
    """The stack cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class StackSettings:
    #: where state, logs and data go
    directory: Path = REPO / ".stack"
    #: the checkout whose prometheus/ and alertmanager/ configs are used
    repo: Path = REPO
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    node_exporter_port: int = 9100
    gateway_port: int = 4318
    #: gateway OTLP/gRPC; 0 turns it off
    gateway_grpc_port: int = 4317
    demo_port: int = 3000
    #: start the demo service (optional component)
    demo: bool = True
    #: gateway YAML config, passed to `telemetry-gateway run --config`
    gateway_config: str | None = None
    #: seconds `up` waits for each component to become healthy
    timeout_s: float = _START_TIMEOUT_S

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["directory"], data["repo"] = str(self.directory), str(self.repo)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackSettings:
        values = dict(data)
        values["directory"], values["repo"] = Path(values["directory"]), Path(values["repo"])
        return cls(**values)


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    port: int
    #: path polled for health (200 = healthy)
    health_path: str
    #: what `status` shows as the URL to open
    url: str
    optional: bool = False
    env: Mapping[str, str] | None = None
    cwd: Path | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.health_path}"


@dataclass
class _Record:
    """What `up` remembers about a process it started."""

    pid: int
    create_time: float
    url: str
    health_url: str
    optional: bool = False


@dataclass
class _State:
    settings: StackSettings
    running: dict[str, _Record] = field(default_factory=dict)
    #: optional components left out, and why
    skipped: dict[str, str] = field(default_factory=dict)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{name} is not installed: run `make system-deps`")
    return path


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _healthy(url: str) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        return False, f"not answering ({type(exc).__name__})"
    if response.status_code == 200:
        return True, "healthy"
    return False, f"unhealthy (HTTP {response.status_code})"


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    """The local stack in `settings.directory`. `environ` is the environment the components
    inherit (the CLI passes `os.environ`)."""

    def __init__(self, settings: StackSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = dict(environ)
        self.dir = settings.directory
        self.logs = self.dir / "logs"
        self.run_dir = self.dir / "run"

    # ------------------------------------------------------------------ components

    def _prometheus_config(self) -> Path:
        """prometheus/prometheus.local.yml with this stack's ports and the repo's rules."""
        s = self.settings
        config = yaml.safe_load((s.repo / "prometheus" / "prometheus.local.yml").read_text())
        targets = {
            "gateway": s.gateway_port,
            "node": s.node_exporter_port,
            "alertmanager": s.alertmanager_port,
            "prometheus": s.prometheus_port,
        }
        for job in config["scrape_configs"]:
            port = targets.get(job["job_name"])
            if port is not None:
                job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        config["alerting"]["alertmanagers"] = [
            {"static_configs": [{"targets": [f"127.0.0.1:{s.alertmanager_port}"]}]}
        ]
        config["rule_files"] = [str(s.repo / "prometheus" / "rules" / "*.yml")]
        path = self.dir / "prometheus" / "prometheus.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            "# Generated by `telemetry-gateway stack up` from prometheus/prometheus.local.yml\n"
        )
        path.write_text(header + yaml.safe_dump(config, sort_keys=False))
        return path

    def components(self) -> list[Component]:
        s = self.settings
        gateway_url = f"http://127.0.0.1:{s.gateway_port}"
        gateway_argv = [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--http-port",
            str(s.gateway_port),
            "--grpc-port",
            str(s.gateway_grpc_port),
        ]
        if s.gateway_config:
            gateway_argv += ["--config", s.gateway_config]
        # The demo reports to this stack's gateway, not to whatever OTEL_* says.
        demo_env = {k: v for k, v in self.environ.items() if not k.startswith("OTEL_")}
        demo_env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=gateway_url,
            OTEL_METRIC_EXPORT_INTERVAL="5000",
        )
        out = [
            Component(
                "node-exporter",
                (
                    _binary("prometheus-node-exporter"),
                    f"--web.listen-address=127.0.0.1:{s.node_exporter_port}",
                ),
                s.node_exporter_port,
                "/",
                f"http://127.0.0.1:{s.node_exporter_port}/metrics",
            ),
            Component(
                "gateway",
                tuple(gateway_argv),
                s.gateway_port,
                "/ready",
                f"{gateway_url}/metrics",
                cwd=s.repo,
            ),
        ]
        if s.demo:
            out.append(
                Component(
                    "demo",
                    (
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "demo.app:create_app_from_env",
                        "--factory",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(s.demo_port),
                        "--log-level",
                        "warning",
                    ),
                    s.demo_port,
                    "/live",
                    f"http://127.0.0.1:{s.demo_port}/",
                    optional=True,
                    env=demo_env,
                    cwd=s.repo,
                )
            )
        out += [
            Component(
                "alertmanager",
                (
                    _binary("prometheus-alertmanager"),
                    f"--config.file={s.repo / 'alertmanager' / 'alertmanager.yml'}",
                    f"--storage.path={self.dir / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{s.alertmanager_port}",
                    # a single instance: no gossip port (9094) to collide with
                    "--cluster.listen-address=",
                ),
                s.alertmanager_port,
                "/-/ready",
                f"http://127.0.0.1:{s.alertmanager_port}",
            ),
            Component(
                "prometheus",
                (
                    _binary("prometheus"),
                    f"--config.file={self.dir / 'prometheus' / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.dir / 'prometheus' / 'data'}",
                    f"--storage.tsdb.retention.time={RETENTION_TIME}",
                    f"--storage.tsdb.retention.size={RETENTION_SIZE}",
                    f"--web.listen-address=127.0.0.1:{s.prometheus_port}",
                    "--web.enable-lifecycle",
                ),
                s.prometheus_port,
                "/-/ready",
                f"http://127.0.0.1:{s.prometheus_port}",
            ),
        ]
        return out

    # ------------------------------------------------------------------ state

    @property
    def _state_file(self) -> Path:
        return self.dir / "stack.json"

    def load_state(self) -> _State | None:
        if not self._state_file.exists():
            return None
        data = json.loads(self._state_file.read_text())
        return _State(
            settings=StackSettings.from_json(data["settings"]),
            running={k: _Record(**v) for k, v in data["running"].items()},
            skipped=dict(data.get("skipped", {})),
        )

    def _save_state(self, state: _State) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {
            "settings": state.settings.to_json(),
            "running": {k: asdict(v) for k, v in state.running.items()},
            "skipped": state.skipped,
        }
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self._state_file)

    @staticmethod
    def _alive(record: _Record) -> bool:
        """The recorded process still runs: same pid *and* start time (pids are reused)."""
        try:
            proc = psutil.Process(record.pid)
            return (
                abs(proc.create_time() - record.create_time) < 0.5
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    # ------------------------------------------------------------------ commands

    def up(self, out: IO[str]) -> int:
        """Start what is not running, wait for each to be healthy; on a failure stop what this
        call started and say why. Returns the exit code."""
        old = self.load_state()
        state = _State(self.settings)
        if old is not None:
            state.running = {k: r for k, r in old.running.items() if self._alive(r)}
            if state.running and old.settings.to_json() != self.settings.to_json():
                raise StackError(
                    "the stack is running with other settings: `telemetry-gateway stack stop` "
                    "first, or `stack restart` with the new flags"
                )
        for path in (self.logs, self.run_dir, self.dir / "alertmanager"):
            path.mkdir(parents=True, exist_ok=True)
        components = self.components()
        self._prometheus_config()
        started: list[str] = []
        for component in components:
            if component.name in state.running:
                out.write(
                    f"{component.name:<14} already running (pid "
                    f"{state.running[component.name].pid})\n"
                )
                continue
            error = self._start(component, state)
            if error is None:
                started.append(component.name)
                self._save_state(state)
                out.write(f"{component.name:<14} healthy   {component.url}\n")
            elif component.optional:
                state.skipped[component.name] = error
                self._save_state(state)
                out.write(f"{component.name:<14} skipped (optional): {error}\n")
            else:
                out.write(f"{component.name:<14} FAILED: {error}\n")
                for name in reversed(started):
                    self._stop_one(name, state.running.pop(name), out)
                self._save_state(state)
                out.write("stopped the components this run had started\n")
                return 1
            out.flush()
        out.write("\n")
        return self.status(out)

    def _start(self, component: Component, state: _State) -> str | None:
        """Start one component and wait for it; None when healthy, else what went wrong."""
        if not _port_free(component.port):
            return (
                f"port {component.port} is in use by another process; pass "
                f"--{component.name.replace('_', '-')}-port to use another one"
            )
        log = self.logs / f"{component.name}.log"
        with log.open("ab") as sink:
            sink.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting\n".encode())
            sink.flush()
            try:
                proc = subprocess.Popen(
                    component.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=dict(component.env) if component.env is not None else self.environ,
                    cwd=component.cwd or self.dir,
                    start_new_session=True,
                )
            except OSError as exc:
                return f"cannot run {component.argv[0]}: {exc}"
        record = _Record(
            proc.pid,
            psutil.Process(proc.pid).create_time(),
            component.url,
            component.health_url,
            component.optional,
        )
        state.running[component.name] = record
        (self.run_dir / f"{component.name}.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + self.settings.timeout_s
        why = "not answering"
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                del state.running[component.name]
                (self.run_dir / f"{component.name}.pid").unlink(missing_ok=True)
                return f"exited with code {code}; last lines of {log}:\n{_tail(log, 15)}"
            ok, why = _healthy(component.health_url)
            if ok:
                return None
            time.sleep(0.2)
        self._stop_one(component.name, state.running.pop(component.name), None)
        return (
            f"not healthy after {self.settings.timeout_s:.0f}s ({why} at "
            f"{component.health_url}); last lines of {log}:\n{_tail(log, 15)}"
        )

    def status(self, out: IO[str]) -> int:
        """Print component, pid, health and URL; 0 when every started component is healthy."""
        state = self.load_state()
        if state is None:
            out.write(f"the stack has not been started here ({self.dir})\n")
            return 3
        rows = [("COMPONENT", "PID", "HEALTH", "URL")]
        all_ok = True
        for name in _ORDER:
            record = state.running.get(name)
            if record is None:
                if name in state.skipped:
                    rows.append((name, "-", "skipped (optional)", "-"))
                continue
            if not self._alive(record):
                rows.append((name, str(record.pid), "down", record.url))
                all_ok = all_ok and record.optional
                continue
            ok, health = _healthy(record.health_url)
            rows.append((name, str(record.pid), health, record.url))
            all_ok = all_ok and (ok or record.optional)
        if len(rows) == 1:
            out.write("no component is running\n")
            return 3
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            out.write("\n")
        for name, why in state.skipped.items():
            out.write(f"\n{name} was skipped: {why.splitlines()[0]}\n")
        return 0 if all_ok else 3

    def stop(self, out: IO[str]) -> int:
        """Stop every component `up` started (producers first), wait until each has exited."""
        state = self.load_state()
        if state is None or not state.running:
            out.write("nothing to stop\n")
            return 0
        for name in reversed(_ORDER):
            record = state.running.pop(name, None)
            if record is not None:
                self._stop_one(name, record, out)
                self._save_state(state)
        state.skipped.clear()
        self._save_state(state)
        return 0

    def _stop_one(self, name: str, record: _Record, out: IO[str] | None) -> None:
        pid_file = self.run_dir / f"{name}.pid"
        if not self._alive(record):
            pid_file.unlink(missing_ok=True)
            if out is not None:
                out.write(f"{name:<14} was not running\n")
            return
        # Each component leads its own session, so its process group is everything it spawned.
        group = [record.pid]
        with contextlib.suppress(psutil.Error):
            group += [c.pid for c in psutil.Process(record.pid).children(recursive=True)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        alive = _wait_exited(_processes(group), _STOP_TIMEOUT_S)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _wait_exited(alive, _STOP_TIMEOUT_S)
        pid_file.unlink(missing_ok=True)
        if out is not None:
            how = " (killed)" if alive else ""
            out.write(f"{name:<14} stopped{how}\n")

    def logs_cmd(self, out: IO[str], component: str | None, lines: int, follow: bool) -> int:
        names = [component] if component else list(_ORDER)
        paths = [(n, self.logs / f"{n}.log") for n in names if (self.logs / f"{n}.log").exists()]
        if not paths:
            out.write(f"no logs in {self.logs}\n")
            return 1
        for name, path in paths:
            out.write(f"==> {name} ({path}) <==\n{_tail(path, lines)}\n")
        out.flush()
        if follow:
            _follow(paths, out)
        return 0


def _processes(pids: Sequence[int]) -> list[psutil.Process]:
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    return procs


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_exited(procs: Sequence[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until the processes have exited; those still running after `timeout_s`.

    A zombie counts as exited: the components were started by an earlier `up` and are
    reparented, and how soon init reaps them is not ours to wait for (psutil.wait_procs would).
    """
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        for p in alive:
            with contextlib.suppress(ChildProcessError, psutil.Error):
                if p.ppid() == os.getpid():
                    p.wait(0)  # reap our own children (an `up` that failed half-way)
        alive = [p for p in alive if _running(p)]
    return alive


def _follow(paths: Sequence[tuple[str, Path]], out: IO[str]) -> None:
    """Print lines appended to the logs, prefixed with the component, until Ctrl-C."""
    positions = {path: path.stat().st_size for _, path in paths}
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            for name, path in paths:
                size = path.stat().st_size if path.exists() else 0
                if size < positions[path]:
                    positions[path] = 0  # truncated or recreated
                if size > positions[path]:
                    with path.open("rb") as f:
                        f.seek(positions[path])
                        chunk = f.read()
                    positions[path] += len(chunk)
                    for line in chunk.decode(errors="replace").splitlines():
                        out.write(f"{name:<14}| {line}\n")
                    out.flush()
            time.sleep(0.3)


# ---------------------------------------------------------------------- command line

_PORT_FLAGS = {
    "prometheus_port": "Prometheus (9090)",
    "alertmanager_port": "Alertmanager (9093)",
    "node_exporter_port": "node_exporter (9100)",
    "gateway_port": "gateway HTTP: OTLP, /metrics, health (4318)",
    "gateway_grpc_port": "gateway OTLP/gRPC (4317; 0 turns it off)",
    "demo_port": "demo service (3000)",
}


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for dest, help_text in _PORT_FLAGS.items():
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=int, help=help_text)
    parser.add_argument("--no-demo", action="store_true", help="leave the demo service out")
    parser.add_argument("--gateway-config", metavar="FILE", help="gateway YAML config")
    parser.add_argument(
        "--timeout", type=float, help=f"seconds to wait for each component ({_START_TIMEOUT_S:.0f})"
    )


def add_stack_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `stack` with its sub-commands to the `telemetry-gateway` parser."""
    stack = subparsers.add_parser(
        "stack",
        help="local monitoring stack without Docker (Prometheus, Alertmanager, node_exporter, "
        "gateway, demo)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    stack.add_argument(
        "--dir", type=Path, default=REPO / ".stack", help="state, logs and data (.stack/)"
    )
    commands = stack.add_subparsers(dest="stack_command", required=True)
    up = commands.add_parser("up", help="start the stack and wait until it is healthy")
    _add_settings_flags(up)
    up.add_argument("--logs", action="store_true", help="then follow the logs (Ctrl-C stops)")
    commands.add_parser("status", help="each component's pid, health and URL")
    commands.add_parser("stop", help="stop every component")
    restart = commands.add_parser("restart", help="stop, then up (same settings unless given)")
    _add_settings_flags(restart)
    logs = commands.add_parser("logs", help="print (and follow) the components' logs")
    logs.add_argument("component", nargs="?", choices=_ORDER)
    logs.add_argument("-n", "--lines", type=int, default=40, help="lines per log (40)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    stack.set_defaults(func=main)


def _settings(args: argparse.Namespace, saved: StackSettings | None) -> StackSettings:
    """Flags over, for `restart`, `status`, `stop` and `logs`, the settings of the last `up`;
    `up` starts from the defaults."""
    fresh = saved is None or args.stack_command == "up"
    base = StackSettings(directory=args.dir) if fresh or saved is None else saved
    values = base.to_json()
    values["directory"] = str(args.dir)
    for dest in _PORT_FLAGS:
        if getattr(args, dest, None) is not None:
            values[dest] = getattr(args, dest)
    if getattr(args, "no_demo", False):
        values["demo"] = False
    if getattr(args, "gateway_config", None):
        values["gateway_config"] = str(Path(args.gateway_config).resolve())
    if getattr(args, "timeout", None) is not None:
        values["timeout_s"] = args.timeout
    return StackSettings.from_json(values)


def main(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run a parsed `stack` command; errors are printed, not raised."""
    out = out or sys.stdout
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll otherwise
    directory: Path = args.dir.resolve()
    args.dir = directory
    saved = Stack(StackSettings(directory=directory), os.environ).load_state()
    saved_settings = saved.settings if saved is not None else None
    commands: dict[str, Callable[[Stack], int]] = {
        "up": lambda st: _up(st, args, out),
        "status": lambda st: st.status(out),
        "stop": lambda st: st.stop(out),
        "restart": lambda st: st.stop(out) or st.up(out),
        "logs": lambda st: st.logs_cmd(out, args.component, args.lines, args.follow),
    }
    try:
        stack = Stack(_settings(args, saved_settings), os.environ)
        return commands[args.stack_command](stack)
    except StackError as exc:
        out.write(f"stack: {exc}\n")
        return 2


def _up(stack: Stack, args: argparse.Namespace, out: IO[str]) -> int:
    code = stack.up(out)
    if code == 0 and args.logs:
        stack.logs_cmd(out, None, 0, follow=True)
    return code
