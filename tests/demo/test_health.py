"""The demo's health checks in-process: the WebSocket hub check (uvicorn in a thread, real
WebSocket sessions), the PostgreSQL check's circuit breaker against the real PostgreSQL through a
TCP proxy the test cuts, and the metrics both export (read from an InMemoryMetricReader)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import httpx
import pydantic
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from demo.app import create_app
from demo.db import token_for
from demo.settings import DemoSettings
from gateway.catalogue import by_name
from instrumentation import InstrumentationSettings, setup
from tests.support.instrumentation import Points, collect
from tests.support.postgres import DSN
from tests.support.servers import free_port
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

STATUS = by_name("health.check.status").otel_name()
DURATION = by_name("health.check.duration").otel_name()
STATE = by_name("circuit_breaker.state").otel_name()
TRANSITIONS = by_name("circuit_breaker.transitions").otel_name()
WS_EVENTS = by_name("websocket.connections").otel_name()
NO_DB = "postgresql://postgres@127.0.0.1:1/none"  # port 1: connection refused at once


def make(reader: InMemoryMetricReader, **settings: Any) -> FastAPI:
    return create_app(
        DemoSettings(build_seconds=(0.0, 0.01), **settings),
        instrumentation=setup(
            InstrumentationSettings(service_name="demo", export=False, set_global=False),
            readers=[reader],
        ),
    )


def status_of(points: Points, component: str) -> float | None:
    found = [p.value for a, p in points.get(STATUS, []) if a == {"component": component}]
    return found[0] if found else None


def breaker_state(points: Points, component: str) -> str | None:
    current = [
        a["state"]
        for a, p in points.get(STATE, [])
        if a["component"] == component and p.value == 1.0
    ]
    assert len(current) <= 1, current
    return current[0] if current else None


def transitions(points: Points, component: str) -> dict[tuple[str, str], int]:
    return {
        (a["from"], a["to"]): int(p.value)
        for a, p in points.get(TRANSITIONS, [])
        if a["component"] == component
    }


# -- the WebSocket hub ------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    app: FastAPI
    client: httpx.Client

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] + "/ws"

    def hub_entries(self) -> dict[str, Any]:
        """The hub's /api/health entries: {"open": entry, "max": entry}."""
        entries = self.client.get("/api/health").json()["checks"]["websocket:connections"]
        return {e.get("componentId", "open"): e for e in entries}


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[Served]:
    """The app in a real uvicorn server (lifespan, WebSockets) in a thread, on a free port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5.0) as client:
            yield Served(url, app, client)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.integration
def test_hub_check_counts_open_websockets_warns_near_and_fails_at_capacity() -> None:
    reader = InMemoryMetricReader()
    app = make(reader, database_url=NO_DB, health_interval_s=0.02, websocket_max_connections=10)
    with serve(app) as demo, contextlib.ExitStack() as sockets:

        def open_sockets(n: int) -> None:
            for i in range(n):
                ws = sockets.enter_context(ws_connect(f"{demo.ws_url}?token={token_for(i + 1)}"))
                ws.send("hi")
                assert json.loads(ws.recv(timeout=5))["echo"] == "hi"

        def hub_says(open_now: int, status: str) -> Callable[[], bool]:
            return lambda: (
                (e := demo.hub_entries()["open"])["observedValue"] == open_now
                and e["status"] == status
            )

        eventually(hub_says(0, "pass"))
        entries = demo.hub_entries()
        assert entries["open"]["observedUnit"] == "connections"
        assert entries["open"]["componentType"] == "component"
        assert entries["max"]["observedValue"] == 10
        assert status_of(collect(reader)[0], "websocket") == 1.0

        open_sockets(9)
        eventually(hub_says(9, "warn"))
        assert "nearly full: 9 of 10" in demo.hub_entries()["open"]["output"]
        assert status_of(collect(reader)[0], "websocket") == 0.5

        open_sockets(1)
        eventually(hub_says(10, "fail"))
        assert status_of(collect(reader)[0], "websocket") == 0.0
        # An optional component: the service still answers ready, overall only warns.
        assert demo.client.get("/ready").status_code == 200
        assert demo.client.get("/health").json()["status"] == "warn"
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"{demo.ws_url}?token={token_for(1)}")
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "5"

        sockets.close()  # everyone leaves
        eventually(hub_says(0, "pass"))
        assert status_of(collect(reader)[0], "websocket") == 1.0
    points, _ = collect(reader)
    events = {a["status"]: p.value for a, p in points[WS_EVENTS]}
    assert events == {"authenticated": 10, "closed": 10, "rejected": 1}


@pytest.mark.integration
def test_the_hub_is_closed_outside_the_lifespan_and_says_so() -> None:
    reader = InMemoryMetricReader()
    app = make(reader, database_url=NO_DB, health_interval_s=0.02)
    hub = app.state.demo.hub
    outcome = asyncio.run(hub.check())
    assert outcome.status.value == "fail"
    assert "closed" in outcome.output
    with serve(app) as demo:
        with ws_connect(f"{demo.ws_url}?token={token_for(2)}") as ws:
            ws.send("x")
            ws.recv(timeout=5)
            assert hub.open_connections == 1
        eventually(lambda: hub.open_connections == 0)
    assert hub.accepting is False


# -- the database breaker ---------------------------------------------------------------------

INTERVAL = 0.1
TIMEOUT = 0.5
FAILURES = 2
COOLDOWN = 1.0


@pytest.fixture
async def proxied_demo(
    table_prefix: str,
) -> AsyncIterator[tuple[FastAPI, InMemoryMetricReader, TcpProxy]]:
    with TcpProxy("127.0.0.1", 5432) as proxy:
        reader = InMemoryMetricReader()
        app = make(
            reader,
            database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/test",
            table_prefix=table_prefix,
            health_interval_s=INTERVAL,
            health_timeout_s=TIMEOUT,
            database_breaker={
                "failure_threshold": FAILURES,
                "failure_rate_threshold": None,
                "cooldown_seconds": COOLDOWN,
            },
            plan_refresh_s=60,
        )
        try:
            async with app.router.lifespan_context(app):
                assert app.state.demo.db is not None, app.state.demo.db_error
                yield app, reader, proxy
        finally:
            proxy.restore()
            conn = await asyncpg.connect(DSN)
            try:
                await conn.execute(
                    f"DROP TABLE IF EXISTS {table_prefix}deployments, {table_prefix}users"
                )
            finally:
                await conn.close()


async def until(reader: InMemoryMetricReader, ready: Callable[[Points], bool]) -> Points:
    points: Points = {}
    with anyio.move_on_after(10):
        while not ready(points := collect(reader)[0]):
            await anyio.sleep(0.05)
    return points


@pytest.mark.integration
@pytest.mark.anyio
async def test_database_cut_opens_the_breaker_and_the_metrics_follow(
    proxied_demo: tuple[FastAPI, InMemoryMetricReader, TcpProxy],
) -> None:
    app, reader, proxy = proxied_demo
    points = await until(reader, lambda p: status_of(p, "postgresql") == 1.0)
    assert status_of(points, "postgresql") == 1.0
    assert breaker_state(points, "postgresql") == "closed"
    assert transitions(points, "postgresql") == {
        ("closed", "open"): 0,
        ("open", "half_open"): 0,
        ("half_open", "closed"): 0,
        ("half_open", "open"): 0,
    }
    assert [a for a, _ in points[DURATION] if a["component"] == "postgresql"]

    proxy.cut()
    points = await until(reader, lambda p: breaker_state(p, "postgresql") == "open")
    assert breaker_state(points, "postgresql") == "open", points.get(STATE)
    assert status_of(points, "postgresql") == 0.0
    assert transitions(points, "postgresql")[("closed", "open")] == 1
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as c:
        health = (await c.get("/api/health")).json()
        assert health["status"] == "warn"  # the database is optional for the demo
        assert health["checks"]["postgresql:responseTime"][0]["status"] == "fail"
        assert health["checks"]["postgresql:responseTime"][0]["output"]  # says why

    proxy.restore()
    points = await until(
        reader,
        lambda p: status_of(p, "postgresql") == 1.0 and breaker_state(p, "postgresql") == "closed",
    )
    assert status_of(points, "postgresql") == 1.0
    assert breaker_state(points, "postgresql") == "closed"
    edges = transitions(points, "postgresql")
    assert edges[("open", "half_open")] >= 1
    assert edges[("half_open", "closed")] == 1
    # Every reopening from half-open is one more trip from open.
    assert edges[("closed", "open")] + edges[("half_open", "open")] == edges[("open", "half_open")]


# -- shutdown with a check cut short ----------------------------------------------------------


@contextlib.contextmanager
def loop_errors(loop: asyncio.AbstractEventLoop) -> Iterator[list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


@pytest.mark.integration
@pytest.mark.anyio
async def test_shutdown_while_the_database_check_hangs_leaves_no_orphaned_errors() -> None:
    """The database was down at start, so the check keeps its own pool; at shutdown a run is
    stuck mid-query. Closing that pool must not leave a failed release in a task nobody awaits
    (it did when PostgresCheck.close() terminated the pool under the cancelled query)."""
    with TcpProxy("127.0.0.1", 5432) as proxy:
        reader = InMemoryMetricReader()
        app = make(
            reader,
            database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/test",
            database_connect_timeout_s=0.3,
            health_interval_s=0.05,
            health_timeout_s=5.0,
        )
        with loop_errors(asyncio.get_running_loop()) as errors:
            proxy.set_latency(1.0)  # the service's own connect times out: no service pool
            async with app.router.lifespan_context(app):
                assert app.state.demo.db is None
                proxy.restore()
                await until(reader, lambda p: status_of(p, "postgresql") == 1.0)
                proxy.set_latency(5.0)  # the next run hangs mid-query
                await anyio.sleep(0.2)
                started = time.monotonic()
            assert time.monotonic() - started < 3.0  # shutdown does not wait for the latency
            proxy.restore()
            for _ in range(3):  # unretrieved exceptions are reported when collected
                gc.collect()
                await anyio.sleep(0.1)
        assert errors == [], [(e.get("message"), e.get("exception")) for e in errors]


# -- settings ---------------------------------------------------------------------------------


def test_health_settings_from_the_environment() -> None:
    s = DemoSettings.from_env(
        {
            "DEMO_HEALTH_INTERVAL_S": "0.5",
            "DEMO_HEALTH_TIMEOUT_S": "0.25",
            "DEMO_BREAKER_FAILURES": "2",
            "DEMO_BREAKER_COOLDOWN_S": "1.5",
            "DEMO_WS_MAX_CONNECTIONS": "7",
        }
    )
    assert (s.health_interval_s, s.health_timeout_s, s.websocket_max_connections) == (0.5, 0.25, 7)
    assert (s.database_breaker.failure_threshold, s.database_breaker.cooldown_seconds) == (2, 1.5)
    assert DemoSettings.from_env({}).database_breaker.cooldown_seconds == 30.0


@pytest.mark.parametrize(
    "bad",
    [
        {"DEMO_HEALTH_INTERVAL_S": "0"},
        {"DEMO_BREAKER_FAILURES": "0"},
        {"DEMO_BREAKER_COOLDOWN_S": "soon"},
        {"DEMO_WS_MAX_CONNECTIONS": "-1"},
    ],
)
def test_bad_health_settings_name_the_field(bad: dict[str, str]) -> None:
    with pytest.raises(pydantic.ValidationError) as error:
        DemoSettings.from_env(bad)
    field = {
        "DEMO_HEALTH_INTERVAL_S": "health_interval_s",
        "DEMO_BREAKER_FAILURES": "database_breaker.failure_threshold",
        "DEMO_BREAKER_COOLDOWN_S": "database_breaker.cooldown_seconds",
        "DEMO_WS_MAX_CONNECTIONS": "websocket_max_connections",
    }[next(iter(bad))]
    assert field in str(error.value)
