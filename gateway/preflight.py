"""`preflight`: what a config names outside itself (TLS files, the token files, the queue path),
checked before anything starts. `check-config` runs the same checks as `run`, so that a config
it calls ok does not fail at start (it once said ok for missing TLS and token files)."""

from __future__ import annotations

import errno
import socket
import ssl
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.receivers.auth import TokenAuth, load_read_tokens

__all__ = ["listeners_free", "preflight", "read_tls"]


def read_tls(config: GatewayConfig) -> tuple[bytes, bytes] | None:
    """(PEM key, PEM certificate chain), or None without TLS. Raises ValueError with a message
    naming the YAML key when a file is missing, unreadable, or not a matching PEM pair."""
    tls = config.tls
    if not tls.enabled:
        return None
    try:
        key = Path(tls.key_file).read_bytes()
        cert = Path(tls.cert_file).read_bytes()
    except OSError as exc:
        raise ValueError(f"tls: {exc.filename}: {exc.strerror}") from None
    try:
        # The same check uvicorn makes at start; grpc would only say "Failed to bind".
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            tls.cert_file, tls.key_file
        )
    except ssl.SSLError as exc:
        raise ValueError(
            f"tls.cert_file / tls.key_file: not a usable PEM certificate and key ({exc.reason})"
        ) from None
    return key, cert


def preflight(config: GatewayConfig) -> list[str]:
    """Problems ("key: message") with the files a config names; empty when it can start."""
    problems: list[str] = []
    try:
        read_tls(config)
    except ValueError as exc:
        problems.append(str(exc))
    try:
        TokenAuth.from_config(config.auth)
        load_read_tokens(config.auth)
    except ValueError as exc:
        problems.append(str(exc))
    if config.queue.kind == "disk" and Path(config.queue.path).is_dir():
        problems.append(f"queue.path: {config.queue.path!r} is a directory, not a file")
    return problems


def listeners_free(config: GatewayConfig) -> list[str]:
    """Problems ("key: message") with the addresses `run` is about to listen on.

    Probed with a plain socket first because the servers report a busy port badly: uvicorn
    logs its own line and calls `sys.exit`, grpc logs a C-core error and says "Failed to
    bind". Not part of `preflight`: check-config must not fail because a gateway runs.
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
