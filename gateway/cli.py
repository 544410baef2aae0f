"""`telemetry-gateway` command line: run, check-config, demo, stack, render."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

from gateway.config import (
    ConfigError,
    GatewayConfig,
    ignored_variables,
    load_file,
    resolve_file,
)
from gateway.stack import add_stack_parser

__all__ = ["main"]


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: embedded)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="OTLP/HTTP, /metrics, health (4318)")
    parser.add_argument("--grpc-port", type=int, help="OTLP/gRPC (4317); 0 turns it off")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.http_port is not None:
        server["http_port"] = args.http_port
    if args.grpc_port is not None:
        server["grpc_port"] = args.grpc_port
    return {"server": server} if server else {}


def load_config(args: argparse.Namespace) -> GatewayConfig:
    return load_file(args.config, environ=os.environ, overrides=_flag_overrides(args))


def _run(args: argparse.Namespace) -> int:
    from gateway.app import Gateway
    from gateway.config_files import ConfigFiles
    from gateway.preflight import listeners_free

    config = load_config(args)
    # The files the config names, all problems at once in check-config's words ("FILE: key:
    # message"; without --config only GATEWAY_* variables name files); a ConfigError exits 2
    # like any other config error (`main`).
    files = ConfigFiles.read(config, source=args.config or "environment")
    busy = listeners_free(config)
    for problem in busy:
        print(f"telemetry-gateway: cannot start: {problem}", file=sys.stderr)
    if busy:
        return 1
    try:
        asyncio.run(Gateway(config, files).serve())
    except OSError as exc:
        # A busy port, an unknown host: one line, not a traceback.
        print(f"telemetry-gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


_SECRET_KEYS = frozenset(("token", "tokens", "headers", "password"))


def _shown(key: tuple[str, ...], value: Any) -> str:
    """A value as check-config prints it: tokens, headers and URL passwords hidden."""
    if (key and key[-1] in _SECRET_KEYS) or (len(key) > 1 and key[-2] in _SECRET_KEYS):
        return "<hidden>"
    if isinstance(value, str) and "://" in value:
        parts = urllib.parse.urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":<hidden>@", 1)
            value = parts._replace(netloc=netloc).geturl()
    return json.dumps(value, default=str)


def _leaves(data: Any, key: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict) and data and not (key and key[-1] in _SECRET_KEYS):
        for name, value in data.items():
            yield from _leaves(value, (*key, str(name)))
    else:
        yield key, data


def _check_config(args: argparse.Namespace) -> int:
    from gateway.config_files import ConfigFiles

    try:
        resolved = resolve_file(args.file, environ=os.environ)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 1
    problems = ConfigFiles.problems(resolved.config)
    for problem in problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    if problems:
        return 1
    # Where each value came from: the file, a variable (check-config reads the environment,
    # as `run` does), or the default. `views` is a list the catalogue defines: one line.
    dumped = resolved.config.model_dump(mode="json")
    for key, value in _leaves(dumped):
        origin = resolved.origin(key)
        if origin.kind != "default" or args.all:
            shown = "(list)" if key == ("views",) else _shown(key, value)
            print(f"  {'.'.join(key)} = {shown}  ({origin})")
    if not args.all:
        print("  every other setting: its default (--all lists them; docs/configuration.md)")
    shortcuts = "GATEWAY_HOST, GATEWAY_HTTP_PORT, GATEWAY_GRPC_PORT, GATEWAY_NAMESPACE, ..."
    for name in ignored_variables(os.environ):
        print(
            f"environment {name}: not a setting, ignored (GATEWAY_<SECTION>__<KEY>, or "
            f"{shortcuts})",
            file=sys.stderr,
        )
    print(f"{args.file}: ok")
    return 0


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from demo.runner import add_arguments

    add_arguments(parser)


def _demo(args: argparse.Namespace) -> int:
    from demo.runner import run_from_args

    return run_from_args(args)


def _add_render_arguments(parser: argparse.ArgumentParser) -> None:
    from gateway.catalogue import DEFAULT_NAMESPACE

    parser.add_argument(
        "--namespace",
        help="metric namespace (default: the gateway's prometheus.namespace from --config and "
        f"GATEWAY_NAMESPACE, else {DEFAULT_NAMESPACE})",
    )
    parser.add_argument("--config", metavar="FILE", help="gateway YAML config to read it from")
    parser.add_argument(
        "--gateway-url",
        default="http://127.0.0.1:4318",
        help="the gateway whose /ui/runbooks and /ui/ the default links point at",
    )
    parser.add_argument(
        "--runbook-base", help="URL of the runbooks (default: <gateway>/ui/runbooks)"
    )
    parser.add_argument(
        "--dashboard-base", help="URL of the overview dashboard (default: <gateway>/ui/)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write")


def _render(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.render import RenderOptions, UnmappedName, local_links, render

    local = local_links(args.gateway_url)
    namespace = args.namespace
    if namespace is None:  # what the gateway would use: its file, then its environment
        namespace = load_file(args.config, environ=os.environ).prometheus.namespace
    try:
        options = RenderOptions(
            namespace,
            runbook_base=args.runbook_base or local.runbooks,
            dashboard_base=args.dashboard_base or local.dashboard,
        )
        rendered = render(Path(args.out), options)
    except (ValueError, OSError) as exc:  # UnmappedName is a ValueError
        kind = "cannot render" if not isinstance(exc, UnmappedName) else "refused"
        print(f"telemetry-gateway render: {kind}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(rendered.files)} files under {rendered.out} for namespace {namespace}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-gateway",
        description="Receive OTLP metrics, serve them to Prometheus, forward them upstream.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway")
    _add_config_flags(run)
    run.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.add_argument(
        "--all", action="store_true", help="list every setting, defaults included, with origin"
    )
    check.set_defaults(func=_check_config)
    demo = sub.add_parser(
        "demo", help="gateway + instrumented demo service + traffic, with a live summary"
    )
    _add_demo_arguments(demo)
    demo.set_defaults(func=_demo)
    add_stack_parser(sub)
    render = sub.add_parser(
        "render",
        help="write the rules, their tests, the dashboards and docs for a namespace and links",
    )
    _add_render_arguments(render)
    render.set_defaults(func=_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "info").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: the forwarder's and the demo's would drown the rest.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"telemetry-gateway: {line}", file=sys.stderr)
        return 2
    return result
