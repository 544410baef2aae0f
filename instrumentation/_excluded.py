"""`excluded_urls_from_env()`: the URLs the stock OpenTelemetry instrumentors do not trace,
from the same variables, so that one setting keeps a path out of both spans and our metrics.

    OTEL_PYTHON_FASTAPI_EXCLUDED_URLS="/health$,client/.*/info"

The stock FastAPI instrumentor reads `OTEL_PYTHON_FASTAPI_EXCLUDED_URLS` (the Starlette one
`OTEL_PYTHON_STARLETTE_EXCLUDED_URLS`), and when that is not set at all the generic
`OTEL_PYTHON_EXCLUDED_URLS`: comma-separated regexes, each searched (`re.search`, not a full
match) in the request's URL without its query string, `scheme://host/path`, the host from the
Host header (`opentelemetry.instrumentation.asgi.get_host_port_url_tuple`, 0.66b1). The
variables are parsed by `opentelemetry-util-http`, the stock instrumentors' own helper; only
the URL is built here, because that helper lives in the ASGI instrumentation, a package
with the span machinery this one leaves out.

Stricter than the stock parser in one way: an empty entry ("health," or "a,,b") would make the
joined regex match every URL and silently switch off all HTTP metrics, so it is refused at start
with the variable's name, like a regex that does not compile.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.util.http import ExcludeList
    from starlette.types import Scope

__all__ = ["ExcludedUrls", "excluded_urls_from_env"]

GENERIC = "OTEL_PYTHON_EXCLUDED_URLS"


def _variable(framework: str) -> str:
    return f"OTEL_PYTHON_{framework}_EXCLUDED_URLS"


class ExcludedUrls:
    """Compiled exclusions: `excludes(scope)` for an HTTP scope."""

    __slots__ = ("_list", "patterns")

    def __init__(self, patterns: list[str], exclude_list: ExcludeList) -> None:
        #: the regexes as given, for messages and tests
        self.patterns = patterns
        self._list = exclude_list

    def excludes(self, scope: Scope) -> bool:
        return self._list.url_disabled(url_of(scope))


def url_of(scope: Scope) -> str:
    """The URL the stock ASGI middleware matches: `scheme://host/path`, no query string; the
    host from the Host header, else the server's address (":80" left out)."""
    host = None
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
            break
    if not host:
        address, port = scope.get("server") or ("0.0.0.0", 80)
        host = address if str(port) == "80" else f"{address}:{port}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('path', '')}"


def excluded_urls_from_env(framework: str) -> ExcludedUrls | None:
    """The exclusions for `framework` ("FASTAPI" or "STARLETTE") from the environment, None
    when no variable names any. Raises ValueError naming the variable for an empty entry or a
    regex that does not compile."""
    name = _variable(framework)
    if name not in os.environ:  # set but empty still wins, as in opentelemetry-util-http
        name = GENERIC
    value = os.environ.get(name, "")
    if not value:
        return None
    patterns = [p.strip() for p in value.split(",")]
    if not all(patterns):
        raise ValueError(
            f"{name}={value!r}: an empty entry would exclude every URL; give comma-separated "
            "regexes without empty ones"
        )
    # Imported only when a variable is set: it loads the HTTP semantic conventions (~30 ms).
    from opentelemetry.util.http import parse_excluded_urls

    try:
        exclude_list = parse_excluded_urls(value)
    except re.error as exc:
        raise ValueError(f"{name}={value!r}: not a comma-separated list of regexes: {exc}") from exc
    return ExcludedUrls(patterns, exclude_list)
