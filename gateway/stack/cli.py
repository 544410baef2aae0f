"""The `stack` sub-command of `telemetry-gateway`: flags, and the mapping to `Stack` methods."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from gateway.stack.components import (
    DEFAULT_START_TIMEOUT_S,
    REPO,
    StackError,
    StackSettings,
)
from gateway.stack.runner import Stack

__all__ = ["add_stack_parser", "main"]

_PORT_FLAGS = {
    "prometheus_port": "Prometheus (9090)",
    "alertmanager_port": "Alertmanager (9093)",
    "node_exporter_port": "node_exporter (9100)",
    "gateway_port": "gateway HTTP: OTLP, /metrics, health (4318)",
    "gateway_grpc_port": "gateway OTLP/gRPC (4317; 0 turns it off)",
    "demo_port": "demo service (3000)",
    "replica_base_port": "with --replicas: replica i's HTTP port is this + 2(i-1), gRPC the next",
    "collector_grpc_port": "with --collector: its OTLP/gRPC (14317)",
    "collector_http_port": "with --collector: its OTLP/HTTP (14318)",
    "collector_exporter_port": "with --collector: its Prometheus exporter (8889)",
    "collector_telemetry_port": "with --collector: its own metrics (8888)",
    "collector_health_port": "with --collector: its health_check (13133)",
    "loadbalancer_telemetry_port": "with --replicas: the load-balancing tier's metrics (8887)",
    "loadbalancer_health_port": "with --replicas: the load-balancing tier's health_check (13134)",
    "notifications_port": "the receiver every local notification goes to (9095)",
}

#: the rules' namespace and links (`telemetry-gateway render`) and Prometheus' external URL
_TEXT_FLAGS = {
    "namespace": "metric namespace of the gateway and its rules (coderunner)",
    "runbook_base": "alerts' runbook link base (the gateway's /ui/runbooks)",
    "dashboard_base": "alerts' dashboard link base, Grafana's (the gateway's /ui/)",
    "prometheus_external_url": "Prometheus' --web.external-url (its local address)",
}


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for dest, help_text in _PORT_FLAGS.items():
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=int, help=help_text)
    for dest, help_text in _TEXT_FLAGS.items():
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, help=help_text)
    parser.add_argument(
        "--no-demo", action="store_true", help="leave the demo service and its traffic out"
    )
    parser.add_argument(
        "--scenario",
        choices=("error-spike", "slow-deploys", "db-outage"),
        help="the demo runs this scenario: after a minute, a fault that fires the matching "
        "alerts, then recovery (see `telemetry-gateway demo --help`)",
    )
    parser.add_argument(
        "--collector",
        action="store_true",
        help="the Collector path: the gateway forwards to the project's OpenTelemetry Collector "
        "(make collector), which Prometheus scrapes",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        help="gateway replicas behind the load-balancing Collector on the standard OTLP ports (1)",
    )
    parser.add_argument("--gateway-config", metavar="FILE", help="gateway YAML config")
    parser.add_argument(
        "--timeout",
        type=float,
        help=f"seconds to wait for each component ({DEFAULT_START_TIMEOUT_S:.0f})",
    )


def add_stack_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `stack` with its sub-commands to the `telemetry-gateway` parser."""
    stack = subparsers.add_parser(
        "stack",
        help="local monitoring stack without Docker (Prometheus, Alertmanager, node_exporter, "
        "gateway, demo)",
        description="The local monitoring stack without Docker: Prometheus, Alertmanager and "
        "node_exporter (OS packages) with this repository's configs, the gateway and the demo "
        "service. State, logs and data go to --dir.",
    )
    dir_help = (
        "state, logs and data (default: the directory of the stack last started, which "
        f"{_POINTER_NAME} in the per-user state directory remembers, else {DEFAULT_DIR})"
    )
    stack.add_argument("--dir", type=Path, default=None, help=dir_help)
    commands = stack.add_subparsers(dest="stack_command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        # Also after the sub-command (`stack up --dir X`); SUPPRESS keeps one given before it.
        parser.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=dir_help)
        return parser

    up = command("up", "start the stack and wait until it is healthy")
    _add_settings_flags(up)
    up.add_argument("--logs", action="store_true", help="then follow the logs (Ctrl-C stops)")
    command("status", "each component's pid, health and URL")
    command("stop", "stop every component")
    restart = command("restart", "stop, then up (same settings unless given)")
    _add_settings_flags(restart)
    logs = command("logs", "print (and follow) the components' logs")
    logs.add_argument("component", nargs="?", help="one component (gateway-2, otel-collector...)")
    logs.add_argument("-n", "--lines", type=int, default=40, help="lines per log (40)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    stack.set_defaults(func=main)


DEFAULT_DIR = REPO / ".stack"
_POINTER_NAME = "telemetry-gateway/stack-dir"


def pointer_file(environ: Mapping[str, str]) -> Path:
    """Where `up` writes the absolute path of its directory, so that `status`, `stop` and
    `logs` find the running stack from any working directory: `$XDG_STATE_HOME` (default
    `~/.local/state`), `telemetry-gateway/stack-dir`."""
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local/state")
    return Path(base).expanduser() / _POINTER_NAME


def stack_dir(given: Path | None, environ: Mapping[str, str]) -> Path:
    """`--dir` when given; else the directory of the stack last started, while its state is
    there; else the default."""
    if given is not None:
        return Path(given).resolve()
    try:
        remembered = Path(pointer_file(environ).read_text(encoding="utf-8").strip())
    except OSError:
        return DEFAULT_DIR
    return remembered if (remembered / "stack.json").is_file() else DEFAULT_DIR


def _remember(directory: Path, environ: Mapping[str, str]) -> None:
    pointer = pointer_file(environ)
    try:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(f"{directory}\n", encoding="utf-8")
    except OSError as exc:  # a read-only home: the stack runs; --dir finds it
        logging.getLogger(__name__).warning("stack: cannot write %s: %s", pointer, exc)


def _settings(args: argparse.Namespace, saved: StackSettings | None) -> StackSettings:
    """Flags over the defaults (`up`) or over the settings of the last `up` (the others)."""
    base = saved if saved is not None and args.stack_command != "up" else StackSettings()
    values = base.to_json()
    values["directory"] = str(args.dir)
    for dest in (*_PORT_FLAGS, *_TEXT_FLAGS):
        if getattr(args, dest, None) is not None:
            values[dest] = getattr(args, dest)
    if getattr(args, "no_demo", False):
        values["demo"] = False
    if getattr(args, "collector", False):
        values["collector"] = True
    if getattr(args, "replicas", None) is not None:
        values["replicas"] = args.replicas
    if getattr(args, "scenario", None):
        values["scenario"] = args.scenario
    if getattr(args, "gateway_config", None):
        values["gateway_config"] = str(Path(args.gateway_config).resolve())
    if getattr(args, "timeout", None) is not None:
        values["timeout_s"] = args.timeout
    return StackSettings.from_json(values)


def main(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run a parsed `stack` command; errors are printed, not raised."""
    out = out or sys.stdout
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll otherwise
    args.dir = stack_dir(args.dir, os.environ)
    if args.stack_command in ("up", "restart"):
        _remember(args.dir, os.environ)

    def up(stack: Stack) -> int:
        code = stack.up(out)
        if code == 0 and args.logs:
            stack.logs(out, None, 0, keep_following=True)
        return code

    commands: dict[str, Callable[[Stack], int]] = {
        "up": up,
        "status": lambda stack: stack.status(out),
        "stop": lambda stack: stack.stop(out),
        "restart": lambda stack: stack.stop(out) or stack.up(out),
        "logs": lambda stack: stack.logs(out, args.component, args.lines, args.follow),
    }
    try:
        saved = Stack(StackSettings(directory=args.dir), os.environ).load_state()
        settings = _settings(args, saved.settings if saved is not None else None)
        return commands[args.stack_command](Stack(settings, os.environ))
    except StackError as exc:
        out.write(f"stack: {exc}\n")
        return 2
