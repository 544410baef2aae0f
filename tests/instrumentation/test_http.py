from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentation import Instrumentation, InstrumentationSettings, instrument_app
from tests.support.instrumentation import collect, otlp_http_receiver, value_of

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


@pytest.mark.integration
async def test_lifespan_sets_up_and_flushes_on_shutdown() -> None:
    app = make_app()
    with otlp_http_receiver() as receiver:
        settings = InstrumentationSettings(
            service_name="lifespan-test",
            endpoint=receiver.url,
            export_interval_s=3600,
            set_global=False,
            instrument_asyncpg=False,
        )
        instrument_app(app, settings)
        async with app.router.lifespan_context(app):
            handle = app.state.instrumentation
            assert handle.resource.attributes["service.name"] == "lifespan-test"
            async with client(app) as c:
                await c.get("/items/1")
            assert receiver.received == []  # nothing exported before the shutdown
        assert handle._closed
        (received,) = receiver.received  # the shutdown's flush
    counts = [
        p.count
        for rm in received.request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == DURATION
        for p in m.histogram.data_points
    ]
    assert counts == [1]
    # After shutdown the middleware passes requests through unmeasured.
    async with client(app) as c:
        assert (await c.get("/items/1")).status_code == 200


def test_instrumenting_twice_or_with_a_wrong_argument_is_refused(handle: Instrumentation) -> None:
    app = make_app()
    instrument_app(app, handle)
    with pytest.raises(RuntimeError, match="already"):
        instrument_app(app, handle)
    with pytest.raises(TypeError, match="InstrumentationSettings"):
        instrument_app(make_app(), {"service_name": "x"})  # type: ignore[arg-type]


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


async def test_mounted_apps_keep_their_prefix_in_the_route(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount

    async def static(scope: dict, receive: object, send: Any) -> None:  # a raw ASGI app
        await PlainTextResponse("file")(scope, receive, send)  # type: ignore[arg-type]

    api = FastAPI()

    @api.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    inner = FastAPI()
    inner.mount("/api", api)
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def top(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.mount("/v1", api)
    app.mount("/nested", inner)
    app.router.routes.append(Mount("/static", app=static))
    instrument_app(app, handle)
    # The mounted app instrumented on its own too: its requests are still counted once.
    instrument_app(api, handle)
    async with client(app) as c:
        assert (await c.get("/items/1")).status_code == 200
        for i in range(2):
            assert (await c.get(f"/v1/items/{i}")).status_code == 200
        for i in range(3):
            assert (await c.get(f"/nested/api/items/{i}")).status_code == 200
        assert (await c.get("/v1/nowhere")).status_code == 404
        assert (await c.get("/static/css/site.css")).text == "file"
    points, _ = collect(reader)
    by_route = {
        (a.get("http.route"), a.get("http.response.status_code")): int(p.count)
        for a, p in points[DURATION]
    }
    assert by_route == {
        ("/items/{item_id}", 200): 1,
        ("/v1/items/{item_id}", 200): 2,
        ("/nested/api/items/{item_id}", 200): 3,
        ("/v1/{path}", 404): 1,  # inside the mount, no route of the sub-app matched
        ("/static/{path}", 200): 1,
    }


async def test_a_server_root_path_is_not_a_mount_prefix(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    app = make_app()
    instrument_app(app, handle)
    transport = httpx.ASGITransport(app=app, root_path="/proxy")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.get("/proxy/items/3")).status_code == 200
    points, _ = collect(reader)
    ((attrs, point),) = points[DURATION]
    assert attrs["http.route"] == "/items/{item_id}"
    assert point.count == 1


async def test_exact_counts_under_concurrency(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    app = make_app()
    instrument_app(app, handle)
    async with client(app) as c:

        async def burst(n: int) -> None:
            for i in range(n):
                assert (await c.get(f"/items/{i}")).status_code == 200

        await asyncio.gather(*(burst(25) for _ in range(40)))
    points, _ = collect(reader)
    ((_attrs, point),) = points[DURATION]
    assert point.count == 1000
    assert sum(point.bucket_counts) == 1000
    assert (
        value_of(points, ACTIVE, **{"http.request.method": "GET", "url.scheme": "http"}).value == 0
    )


def test_exact_counts_from_several_threads(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    """Each thread runs its own event loop against the same app (as several servers in one
    process would); the shared histogram and in-flight counts stay exact."""
    import threading

    app = make_app()
    instrument_app(app, handle)
    per_thread, threads = 300, 6

    async def drive() -> None:
        async with client(app) as c:
            for i in range(per_thread):
                assert (await c.get(f"/items/{i}")).status_code == 200

    collected: list[int] = []

    def run() -> None:
        asyncio.run(drive())

    def collect_meanwhile(stop: threading.Event) -> None:
        while not stop.is_set():  # collections racing the records must not break anything
            pts, _ = collect(reader)
            collected.extend(int(p.count) for _, p in pts.get(DURATION, []))

    stop = threading.Event()
    collector = threading.Thread(target=collect_meanwhile, args=(stop,))
    collector.start()
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    collector.join()
    points, _ = collect(reader)
    ((_attrs, point),) = points[DURATION]
    assert point.count == per_thread * threads
    assert sum(point.bucket_counts) == point.count
    assert collected == sorted(collected)  # cumulative: never goes back
