"""`ConfigFiles`: what a config names outside itself, read once, before anything starts.

`gateway.config` validates the config's own values at load; this module reads the files those
values name (the TLS key and certificate, the ingest and read token files) and checks the disk
queue's path. Every problem is reported at once, as "key: message" lines like a config error,
so that a person fixing a config sees all of them in one go.

`run` reads them here before it builds the `Gateway`, which takes the values and does no file
IO for them; `check-config` prints the same problems through `ConfigFiles.problems`, so a
config it calls ok does not fail at start (it once said ok for missing TLS and token files).

This is the config layer: it imports `gateway.config` and the standard library (and PyYAML for
the tokens file), never a receiver, processor or exporter (an import-linter contract in
pyproject.toml). The components take plain values: `TokenAuth(tokens)`, `ReadGuard(app,
tokens)`, the gRPC receiver's `tls=(key, cert)`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NamedTuple

import yaml

from gateway.config import AuthConfig, ConfigError, GatewayConfig, QueueConfig, TlsConfig

__all__ = ["RELOADABLE_KEYS", "ConfigFiles", "Reloadable", "TlsPair"]

#: what the gateway re-reads at run time: the ingest and read token files, the TLS pair
Reloadable = Literal["ingest", "read", "tls"]
#: the YAML key(s) of each, as problems name them
RELOADABLE_KEYS: Mapping[Reloadable, str] = MappingProxyType(
    {
        "ingest": "auth.tokens_file",
        "read": "auth.read_tokens_file",
        "tls": "tls.cert_file / tls.key_file",
    }
)


class TlsPair(NamedTuple):
    """A PEM private key and the certificate chain it belongs to (what grpc takes)."""

    key: bytes
    cert: bytes


def _frozen_tokens(
    tokens: Mapping[str, Sequence[str]] | None,
) -> Mapping[str, tuple[str, ...]] | None:
    if tokens is None:
        return None
    return MappingProxyType({tenant: tuple(values) for tenant, values in tokens.items()})


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """The values read from the files a config names.

    Build it with `ConfigFiles.read(config)` (reads and checks everything, raises `ConfigError`
    with every problem) or, in tests, from values directly.
    """

    #: the TLS key and certificate for both listeners; None: plain TCP
    tls: TlsPair | None = None
    #: tenant -> ingest tokens (`auth.tokens` and `auth.tokens_file`); None: ingest auth is off
    ingest_tokens: Mapping[str, Sequence[str]] | None = None
    #: read tokens (`auth.read_tokens` and `auth.read_tokens_file`); empty: reads are open
    read_tokens: Sequence[str] = field(default=())

    def __post_init__(self) -> None:
        # Frozen all the way down (tuples, a read-only mapping): components share these values.
        object.__setattr__(self, "ingest_tokens", _frozen_tokens(self.ingest_tokens))
        object.__setattr__(self, "read_tokens", tuple(self.read_tokens))

    @classmethod
    def read(cls, config: GatewayConfig, *, source: str = "config") -> ConfigFiles:
        """Read every file `config` names; `ConfigError(source, problems)` naming each problem
        ("tls.key_file: /etc/gw/tls.key: No such file or directory") if any."""
        files, problems = _read(config)
        if problems:
            raise ConfigError(source, problems)
        return files

    @classmethod
    def problems(cls, config: GatewayConfig) -> list[str]:
        """The problems ("key: message") `read` would raise for; empty when it can start."""
        return _read(config)[1]

    def reread(self, config: GatewayConfig, which: Reloadable) -> tuple[ConfigFiles, list[str]]:
        """One token file or the TLS pair read again, with exactly the checks `read` makes at
        start: these values with that part replaced when it checks out, or unchanged with the
        problems ("auth.tokens_file: /etc/gw/tokens.yaml: no tenant in the file") when it does
        not. A token set is rebuilt whole, inline tokens (`auth.tokens`, `auth.read_tokens`)
        included, so a caller swaps it in one assignment. Blocking file IO: run it in a
        thread."""
        problems: list[str] = []
        if which == "ingest":
            ingest = _read_ingest_tokens(config.auth, problems)
            return (self, problems) if problems else (replace(self, ingest_tokens=ingest), [])
        if which == "read":
            read = _read_read_tokens(config.auth, problems)
            return (self, problems) if problems else (replace(self, read_tokens=read), [])
        tls = _read_tls(config.tls, problems)
        return (self, problems) if problems else (replace(self, tls=tls), [])


def _read(config: GatewayConfig) -> tuple[ConfigFiles, list[str]]:
    problems: list[str] = []
    files = ConfigFiles(
        tls=_read_tls(config.tls, problems),
        ingest_tokens=_read_ingest_tokens(config.auth, problems),
        read_tokens=_read_read_tokens(config.auth, problems),
    )
    _check_queue(config.queue, problems)
    return files, problems


def _reason(exc: Exception) -> str:
    """What went wrong, without the path the line already names ("No such file or
    directory", not "[Errno 2] No such file or directory: '/etc/gw/tokens.yaml'")."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _refuse_password() -> bytes:
    # Without a password callback OpenSSL prompts on the terminal for an encrypted key, which
    # would hang `run` under a supervisor; neither listener can use an encrypted key anyway.
    raise ValueError("the key is encrypted")


def _read_tls(tls: TlsConfig, problems: list[str]) -> TlsPair | None:
    """The key and certificate, checked to be a usable PEM pair (the check uvicorn makes at
    start; grpc would only say "Failed to bind")."""
    if not tls.enabled:
        return None
    read: dict[str, bytes] = {}
    for key, path in (("tls.cert_file", tls.cert_file), ("tls.key_file", tls.key_file)):
        try:
            read[key] = Path(path).read_bytes()
        except OSError as exc:
            problems.append(f"{key}: {path}: {_reason(exc)}")
    if len(read) < 2:
        return None
    cert, key_pem = read["tls.cert_file"], read["tls.key_file"]
    if b"PRIVATE KEY-----" in cert and b"PRIVATE KEY-----" not in key_pem:
        problems.append(
            "tls.cert_file / tls.key_file: swapped? tls.cert_file holds a private key and "
            "tls.key_file does not"
        )
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_refuse_password)
    except ssl.SSLError as exc:
        reason = "the key does not belong to the certificate"
        if exc.reason != "KEY_VALUES_MISMATCH":
            reason = str(exc.reason or exc)
        problems.append(
            f"tls.cert_file / tls.key_file: not a usable PEM certificate and key ({reason})"
        )
        return None
    except (ValueError, OSError) as exc:  # the password callback, a file gone since
        problems.append(
            f"tls.cert_file / tls.key_file: not a usable PEM certificate and key ({exc})"
        )
        return None
    return TlsPair(key=key_pem, cert=cert)


def _read_ingest_tokens(auth: AuthConfig, problems: list[str]) -> dict[str, list[str]] | None:
    """Tenant -> tokens from `auth.tokens` and `auth.tokens_file`, a YAML mapping of tenant to
    a token or a list of tokens (rotation: old and new both valid). None when auth is off."""
    if not auth.enabled:
        return None
    known = len(problems)
    tokens: dict[str, list[str]] = {t: [tok] for t, tok in auth.tokens.items()}
    if auth.tokens_file:
        path = Path(auth.tokens_file)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"auth.tokens_file: {path}: {_reason(exc)}")
            return tokens
        if not isinstance(data, Mapping):
            problems.append(f"auth.tokens_file: {path}: must map tenant to token(s)")
            return tokens
        for tenant, value in data.items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str) and v for v in values):
                problems.append(
                    f"auth.tokens_file: {path}: {tenant}: tokens must be non-empty strings"
                )
                continue
            tokens.setdefault(str(tenant), []).extend(values)
        if not data:
            problems.append(f"auth.tokens_file: {path}: no tenant in the file")
    if not any(tokens.values()) and len(problems) == known:
        # Never "auth off" by accident: enabled with no token is refused, not open.
        problems.append("auth: auth.enabled but no token in auth.tokens or auth.tokens_file")
    return tokens


def _read_read_tokens(auth: AuthConfig, problems: list[str]) -> list[str]:
    """The read tokens from the config and its file (one per line; blank lines and `#`
    comments skipped)."""
    tokens = [t.strip() for t in auth.read_tokens]
    if auth.read_tokens_file:
        path = Path(auth.read_tokens_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"auth.read_tokens_file: {path}: {_reason(exc)}")
            return tokens
        found = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not found:
            problems.append(f"auth.read_tokens_file: {path}: no token in the file")
        tokens.extend(found)
    return tokens


def _check_queue(queue: QueueConfig, problems: list[str]) -> None:
    # Opening (and locking) the queue is the forwarder's start, not a config check: only a
    # path that can never be the queue's file is refused here.
    if queue.kind == "disk" and Path(queue.path).is_dir():
        problems.append(f"queue.path: {queue.path!r} is a directory, not a file")
