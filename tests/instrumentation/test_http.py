from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentation import Instrumentation, instrument_app
from tests.instrumentation.support import collect, value_of

pytestmark = pytest.mark.anyio

DURATION = "http.server.request.duration"
ACTIVE = "http.server.active_requests"


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 404:
            raise HTTPException(404, "no such item")
        return {"id": item_id}

    @app.post("/items")
    async def create() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def count(points: dict, **attrs: object) -> int:
    return int(value_of(points, DURATION, **attrs).count)


async def test_counts_by_route_template_method_and_status(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    app = make_app()
    instrument_app(app, handle)
    async with client(app) as c:
        for i in range(7):
            assert (await c.get(f"/items/{i}")).status_code == 200
        for _ in range(2):
            assert (await c.get("/items/404")).status_code == 404
        assert (await c.post("/items")).status_code == 200
        assert (await c.get("/items/abc")).status_code == 422
        assert (await c.get("/nowhere")).status_code == 404
        assert (await c.get("/boom")).status_code == 500
    points, metrics = collect(reader)
    base = {"http.request.method": "GET", "url.scheme": "http"}
    route = {**base, "http.route": "/items/{item_id}"}
    assert count(points, **route, **{"http.response.status_code": 200}) == 7
    assert count(points, **route, **{"http.response.status_code": 404}) == 2
    assert count(points, **route, **{"http.response.status_code": 422}) == 1
    assert (
        count(
            points,
            **{"http.request.method": "POST", "url.scheme": "http", "http.route": "/items"},
            **{"http.response.status_code": 200},
        )
        == 1
    )
    # Unmatched: no http.route (semconv), so the path cannot explode cardinality.
    assert count(points, **base, **{"http.response.status_code": 404}) == 1
    # Unhandled exception: recorded as the 500 the outer error middleware sends.
    assert (
        count(
            points,
            **base,
            **{
                "http.route": "/boom",
                "http.response.status_code": 500,
                "error.type": "RuntimeError",
            },
        )
        == 1
    )
    assert sum(p.count for _, p in points[DURATION]) == 13
    assert metrics[DURATION].unit == "s"
    # Every request finished, so nothing is in flight.
    assert value_of(points, ACTIVE, **base).value == 0


async def test_active_requests_while_in_flight(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    app = FastAPI()
    gate = asyncio.Event()
    entered = asyncio.Semaphore(0)

    @app.get("/slow")
    async def slow() -> str:
        entered.release()
        await gate.wait()
        return "done"

    instrument_app(app, handle)
    async with client(app) as c:
        tasks = [asyncio.create_task(c.get("/slow")) for _ in range(3)]
        for _ in range(3):
            await entered.acquire()
        points, _ = collect(reader)
        attrs = {"http.request.method": "GET", "url.scheme": "http"}
        assert value_of(points, ACTIVE, **attrs).value == 3
        gate.set()
        await asyncio.gather(*tasks)
    points, _ = collect(reader)
    assert value_of(points, ACTIVE, **attrs).value == 0


async def test_excluded_paths_and_websockets_are_not_measured(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    app = make_app()
    instrument_app(app, handle, exclude_paths=["/health"])
    async with client(app) as c:
        for _ in range(5):
            await c.get("/health")
        await c.get("/items/1")
    points, _ = collect(reader)
    assert sum(p.count for _, p in points[DURATION]) == 1


async def test_lifespan_sets_up_and_flushes_on_shutdown(reader: InMemoryMetricReader) -> None:
    app = make_app()
    instrument_app(
        app, service_name="lifespan-test", export=False, readers=[reader], set_global=False
    )
    async with app.router.lifespan_context(app):
        handle = app.state.instrumentation
        assert handle.resource.attributes["service.name"] == "lifespan-test"
        async with client(app) as c:
            await c.get("/items/1")
        handle.meters.deployment(status="success", type="python", duration_s=1.0)
        points, _ = collect(reader)
        assert sum(p.count for _, p in points[DURATION]) == 1
    assert handle._closed
    # After shutdown the middleware passes requests through unmeasured.
    async with client(app) as c:
        assert (await c.get("/items/1")).status_code == 200


def test_instrumenting_twice_or_mixing_arguments_is_refused(handle: Instrumentation) -> None:
    app = make_app()
    instrument_app(app, handle)
    with pytest.raises(RuntimeError, match="already"):
        instrument_app(app, handle)
    with pytest.raises(TypeError, match="not both"):
        instrument_app(make_app(), handle, service_name="x")


async def test_an_app_that_sends_no_response_is_an_error(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    class Silent:  # a raw ASGI endpoint that returns without sending anything
        async def __call__(self, scope: dict, receive: object, send: object) -> None:
            return None

    app = Starlette(routes=[Route("/silent", Silent())])
    instrument_app(app, handle)
    async with client(app) as c:  # type: ignore[arg-type]
        with pytest.raises(AssertionError):  # httpx's transport: "response not complete"
            await c.get("/silent")
    points, _ = collect(reader)
    ((attrs, point),) = points[DURATION]
    assert attrs["error.type"] == "incomplete_response", attrs
    assert attrs["http.route"] == "/silent"
    assert "http.response.status_code" not in attrs
    assert point.count == 1
