"""The `stack` sub-command of `telemetry-gateway`: flags, and the mapping to `Stack` methods."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
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


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for dest, help_text in _PORT_FLAGS.items():
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=int, help=help_text)
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
    logs.add_argument("component", nargs="?", help="one component (gateway-2, otel-collector...)")
    logs.add_argument("-n", "--lines", type=int, default=40, help="lines per log (40)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    stack.set_defaults(func=main)


def _settings(args: argparse.Namespace, saved: StackSettings | None) -> StackSettings:
    """Flags over the defaults (`up`) or over the settings of the last `up` (the others)."""
    base = saved if saved is not None and args.stack_command != "up" else StackSettings()
    values = base.to_json()
    values["directory"] = str(args.dir)
    for dest in _PORT_FLAGS:
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
    args.dir = Path(args.dir).resolve()

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
