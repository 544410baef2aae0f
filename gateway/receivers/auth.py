"""`TokenAuth`: bearer tokens on ingest, one or more per tenant (or service).

Tokens come from `auth.tokens` (set from the environment: `GATEWAY_AUTH__TOKENS='{team-a: ...}'`)
and from `auth.tokens_file`, a YAML mapping of tenant to a token or a list of tokens:

    team-a: 3f1c...        # one token
    team-b: [9a0e..., c41d...]   # rotation: old and new token both valid

A request without a valid token gets the same answer whatever is wrong with it (HTTP 401 with
`WWW-Authenticate: Bearer`, gRPC UNAUTHENTICATED), and the check takes the same time whichever
token is presented: it compares SHA-256 digests of the presented token with every configured
token's digest using `hmac.compare_digest`, without stopping at the first match, so neither
the answer nor its timing says which tokens exist or how much of one was right.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path

import yaml

from gateway.config import AuthConfig
from gateway.errors import PermanentError

__all__ = ["AuthError", "TokenAuth", "load_tokens"]

_SCHEME = "bearer "


class AuthError(PermanentError):
    """Missing or wrong credentials: HTTP 401, gRPC UNAUTHENTICATED."""

    def __init__(self) -> None:
        super().__init__("missing or invalid bearer token", http_status=401)


def load_tokens(config: AuthConfig) -> dict[str, list[str]]:
    """Tenant -> tokens from the config and its tokens file; a bad file raises `ValueError`
    naming the file."""
    tokens: dict[str, list[str]] = {t: [tok] for t, tok in config.tokens.items()}
    if config.tokens_file:
        path = Path(config.tokens_file)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"auth.tokens_file {path}: {exc}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"auth.tokens_file {path}: must map tenant to token(s)")
        for tenant, value in data.items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str) and v for v in values):
                raise ValueError(
                    f"auth.tokens_file {path}: {tenant}: tokens must be non-empty strings"
                )
            tokens.setdefault(str(tenant), []).extend(values)
    return tokens


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenAuth:
    """Maps an `Authorization` header value to its tenant, or raises `AuthError`."""

    def __init__(self, tokens: Mapping[str, list[str]]) -> None:
        self._digests = [(tenant, _digest(tok)) for tenant, toks in tokens.items() for tok in toks]
        if not self._digests:
            raise ValueError("auth: no tokens configured")

    @classmethod
    def from_config(cls, config: AuthConfig) -> TokenAuth | None:
        """None when auth is off."""
        return cls(load_tokens(config)) if config.enabled else None

    def tenant(self, authorization: str | None) -> str:
        if not authorization or authorization[: len(_SCHEME)].lower() != _SCHEME:
            raise AuthError()
        presented = _digest(authorization[len(_SCHEME) :].strip())
        found = ""
        for tenant, digest in self._digests:
            # no early exit: every request costs one comparison per configured token
            if hmac.compare_digest(presented, digest) and not found:
                found = tenant
        if not found:
            raise AuthError()
        return found
