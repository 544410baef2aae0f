"""`listeners_free`: what `run` checks just before it starts, that is not a config check.

The files a config names (TLS pair, token files, the queue path) are the config layer's:
`gateway.config_files`, which `check-config` runs too. Whether the ports are free is not: it
depends on what else runs on the machine now, and check-config must not fail because a
gateway runs."""

from __future__ import annotations

import errno
import socket

from gateway.config import GatewayConfig

__all__ = ["listeners_free"]


def listeners_free(config: GatewayConfig) -> list[str]:
    """Problems ("key: message") with the addresses `run` is about to listen on.

    Probed with a plain socket first because the servers report a busy port badly: uvicorn
    logs its own line and calls `sys.exit`, grpc logs a C-core error and says "Failed to
    bind".
    """
    server = config.server
    wanted = [
        ("server.http_port", "OTLP/HTTP and /metrics", server.http_port, "GATEWAY_HTTP_PORT"),
        ("server.grpc_port", "OTLP/gRPC", server.grpc_port, "GATEWAY_GRPC_PORT; 0: off"),
    ]
    problems: list[str] = []
    for key, what, port, variable in wanted:
        if not port:
            continue
        try:
            infos = socket.getaddrinfo(server.host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            problems.append(f"server.host: cannot resolve {server.host!r}: {exc.strerror}")
            return problems
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                hint = "is another gateway running? " if exc.errno == errno.EADDRINUSE else ""
                problems.append(
                    f"{key}: cannot listen for {what} on {server.host}:{port}: {reason} "
                    f"({hint}change it with --{key.split('.')[1].replace('_', '-')} or {variable})"
                )
    return problems
