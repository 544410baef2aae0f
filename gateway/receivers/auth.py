"""`TokenAuth`: bearer tokens on ingest, one or more per tenant (or service).

Tokens come from `auth.tokens` (set from the environment: `GATEWAY_AUTH__TOKENS='{team-a: ...}'`)
and from `auth.tokens_file`, a YAML mapping of tenant to a token or a list of tokens:

    team-a: 3f1c...        # one token
    team-b: [9a0e..., c41d...]   # rotation: old and new token both valid

Both are read before the gateway is built, by the config layer (`gateway.config_files`); the
classes here take the tokens as values and read no file. When a token file changes the gateway
hands the new set to `TokenAuth.replace`, which swaps it in one assignment: a request checks
against the old set or the new one, never a mix. Both receivers share one `TokenAuth`, and the
`ReadGuard` can be given one, so a swap holds for all of them at once.

A request without a valid token gets the same answer whatever is wrong with it (HTTP 401 with
`WWW-Authenticate: Bearer`, gRPC UNAUTHENTICATED), and the check takes the same time whichever
token is presented: it compares SHA-256 digests of the presented token with every configured
token's digest using `hmac.compare_digest`, without stopping at the first match, so neither
the answer nor its timing says which tokens exist or how much of one was right.

`ReadGuard` puts read tokens (`auth.read_tokens`, `auth.read_tokens_file`) in front of every
HTTP route but ingest (its own tokens) and the probes: `/metrics` and the status page carry
what services send, which is not for anyone who can reach the port. It accepts
`Authorization: Bearer <token>` (Prometheus' `authorization` scrape setting) and HTTP Basic with
the token as password (what a browser asks for on the status page; the user name is ignored).
It is a pure ASGI wrapper rather than a FastAPI dependency so that a route added later is
guarded without anyone remembering to say so: the open routes are an allow-list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import PermanentError

__all__ = ["OPEN_PATHS", "AuthError", "ReadGuard", "TokenAuth"]

_SCHEME = "bearer "
_BASIC = "basic "

#: Routes a read token does not guard: ingest (its own tokens), the Kubernetes probes, and
#: /api/health (details by `health.details`).
OPEN_PATHS = frozenset({"/v1/metrics", "/live", "/ready", "/health", "/api/health"})


class AuthError(PermanentError):
    """Missing or wrong credentials: HTTP 401, gRPC UNAUTHENTICATED."""

    def __init__(self) -> None:
        super().__init__("missing or invalid bearer token", http_status=401)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenAuth:
    """Maps an `Authorization` header value to its tenant, or raises `AuthError`."""

    def __init__(self, tokens: Mapping[str, Sequence[str]]) -> None:
        self._digests = self._digests_of(tokens)

    @staticmethod
    def _digests_of(tokens: Mapping[str, Sequence[str]]) -> tuple[tuple[str, bytes], ...]:
        digests = tuple((tenant, _digest(tok)) for tenant, toks in tokens.items() for tok in toks)
        if not digests:
            raise ValueError("auth: no tokens configured")
        return digests

    def replace(self, tokens: Mapping[str, Sequence[str]]) -> None:
        """Check against `tokens` from now on (`ValueError` and no change if there is none).
        One attribute assignment: a check already running finishes on the set it started
        with, since it iterates the tuple it read."""
        self._digests = self._digests_of(tokens)

    def tenant(self, authorization: str | None) -> str:
        if not authorization or authorization[: len(_SCHEME)].lower() != _SCHEME:
            raise AuthError()
        return self.tenant_of_token(authorization[len(_SCHEME) :].strip())

    def tenant_of_token(self, token: str) -> str:
        """The tenant of a bare token, or `AuthError`; constant time over the configured tokens."""
        presented = _digest(token)
        found = ""
        digests = self._digests  # one set for the whole check, whatever `replace` does meanwhile
        for tenant, digest in digests:
            # no early exit: every request costs one comparison per configured token
            if hmac.compare_digest(presented, digest) and not found:
                found = tenant
        if not found:
            raise AuthError()
        return found


_CHALLENGE = [
    (b"www-authenticate", b'Bearer realm="telemetry-gateway"'),
    # A browser on /ui/ asks for the token as a password, and resends it to the page's JSON.
    (b"www-authenticate", b'Basic realm="telemetry-gateway", charset="UTF-8"'),
    (b"content-type", b"application/json"),
]
_REFUSAL = b'{"detail": "missing or invalid read token"}'


class ReadGuard:
    """ASGI wrapper: GET and HEAD requests outside `OPEN_PATHS` need a read token (401
    otherwise)."""

    def __init__(self, app: ASGIApp, tokens: Sequence[str] | TokenAuth) -> None:
        """`tokens`: the read tokens, or a `TokenAuth` holding them that the caller keeps to
        `replace` them at run time (starlette builds the middleware itself, late)."""
        if isinstance(tokens, TokenAuth):
            self._auth = tokens
        else:
            if not tokens:
                raise ValueError("ReadGuard needs at least one token")
            self._auth = TokenAuth({"read": tokens})
        self.app = app

    def allowed(self, authorization: str) -> bool:
        scheme = authorization[:7].lower()
        if scheme.startswith(_SCHEME):
            token = authorization[len(_SCHEME) :].strip()
        elif scheme.startswith(_BASIC):
            try:
                decoded = base64.b64decode(authorization[len(_BASIC) :].strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            token = decoded.decode("utf-8", "surrogateescape").partition(":")[2]
        else:
            return False
        try:
            self._auth.tenant_of_token(token)
        except AuthError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only reads are guarded: a POST elsewhere than /v1/metrics (a service exporting traces
        # here, a wrong path) is answered 404/405 and counted, not hidden behind a 401.
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or scope["path"] in OPEN_PATHS
        ):
            await self.app(scope, receive, send)
            return
        authorization = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        if authorization and self.allowed(authorization):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [*_CHALLENGE, (b"content-length", str(len(_REFUSAL)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": _REFUSAL})
