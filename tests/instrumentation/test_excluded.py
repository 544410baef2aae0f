"""OTEL_PYTHON_[FASTAPI_|STARLETTE_]EXCLUDED_URLS: the stock instrumentors' variables keep URLs
out of this package's HTTP metrics too, matched against the same URL the stock ASGI middleware
builds (the zero-code launcher with a real server: tests/integration/
test_instrumentation_distribution.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import get_host_port_url_tuple
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from instrumentation import Instrumentation, instrument_app
from instrumentation._excluded import excluded_urls_from_env, url_of
from tests.support.instrumentation import collect

pytestmark = pytest.mark.anyio

DURATION = "http.server.request.duration"
VARIABLES = (
    "OTEL_PYTHON_EXCLUDED_URLS",
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
    "OTEL_PYTHON_STARLETTE_EXCLUDED_URLS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> str:
        return "ok"

    @app.get("/healthz")
    async def healthz() -> str:
        return "ok"

    @app.get("/client/{client_id}/info")
    async def info(client_id: int) -> int:
        return client_id

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> int:
        return order_id

    return app


async def routes_measured(app: Any, reader: InMemoryMetricReader, paths: list[str]) -> set[str]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc.internal:8080") as c:
        for path in paths:
            assert (await c.get(path)).status_code == 200, path
    points, _ = collect(reader)
    return {str(attrs["http.route"]) for attrs, _ in points.get(DURATION, [])}


ALL_PATHS = ["/health", "/healthz", "/client/7/info", "/orders/1", "/health?verbose=1"]


async def test_the_fastapi_variable_excludes_by_regex_search_in_the_url(
    monkeypatch: pytest.MonkeyPatch, handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    # the stock docs' own example; "/health$" spares /healthz, the query string is not matched
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "client/.*/info, /health$")
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "orders")  # the specific one wins
    app = make_app()
    instrument_app(app, handle)
    assert await routes_measured(app, reader, ALL_PATHS) == {"/healthz", "/orders/{order_id}"}


async def test_the_generic_variable_applies_when_the_specific_one_is_not_set(
    monkeypatch: pytest.MonkeyPatch, handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "svc.internal:8080/orders/")
    app = make_app()
    instrument_app(app, handle, exclude_paths=["/healthz"])  # exact paths add to the variable
    assert await routes_measured(app, reader, ALL_PATHS) == {"/health", "/client/{client_id}/info"}


async def test_a_set_but_empty_specific_variable_excludes_nothing(
    monkeypatch: pytest.MonkeyPatch, handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    # as opentelemetry-util-http reads it: set wins over the generic one, even when empty
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "")
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "health")
    app = make_app()
    instrument_app(app, handle)
    assert len(await routes_measured(app, reader, ALL_PATHS)) == 4


async def test_a_starlette_app_reads_the_starlette_variable(
    monkeypatch: pytest.MonkeyPatch, handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "ping")  # not this app's
    monkeypatch.setenv("OTEL_PYTHON_STARLETTE_EXCLUDED_URLS", "/health$")

    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/health", ok), Route("/ping", ok)])
    instrument_app(app, handle)
    assert await routes_measured(app, reader, ["/health", "/ping"]) == {"/ping"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("health,", "empty entry"),
        ("a,,b", "empty entry"),
        (" ", "empty entry"),
        ("client/[0-9", "not a comma-separated list of regexes"),
    ],
)
def test_a_bad_value_fails_when_the_app_is_built_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", value)
    with pytest.raises(ValueError, match=f"OTEL_PYTHON_EXCLUDED_URLS=.*{message}"):
        instrument_app(make_app())


def test_no_variable_means_nothing_to_check_per_request() -> None:
    assert excluded_urls_from_env("FASTAPI") is None


def scope(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "http",
        "scheme": "https",
        "path": "/v1/items/3",
        "query_string": b"x=1",
        "server": ("10.0.0.5", 8443),
        "headers": [(b"accept", b"*/*"), (b"host", b"api.example.com")],
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "asgi_scope",
    [
        scope(),
        scope(headers=[]),  # no Host header: the server's address and port
        scope(headers=[], server=("10.0.0.5", 80), scheme="http"),  # port 80 left out
        scope(headers=[], server=None),  # no server either
        scope(path="/", headers=[(b"host", b"h:9000")]),
    ],
)
def test_the_url_is_the_one_the_stock_asgi_middleware_matches(asgi_scope: dict[str, Any]) -> None:
    """Pinned to opentelemetry-instrumentation-asgi's own function: the same regex excludes the
    same requests from spans and from metrics."""
    assert url_of(asgi_scope) == get_host_port_url_tuple(asgi_scope)[2]
