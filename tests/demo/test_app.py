"""The demo app in-process (httpx ASGI transport) against the real PostgreSQL, metrics read
from an InMemoryMetricReader."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from demo.app import create_app
from demo.settings import DemoSettings
from instrumentation import InstrumentationSettings, setup
from tests.support.instrumentation import collect, value_of
from tests.support.postgres import DSN

# integration: it talks to PostgreSQL
pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def make(reader: InMemoryMetricReader, **settings: object) -> FastAPI:
    return create_app(
        DemoSettings(build_seconds=(0.0, 0.01), plan_refresh_s=0.05, **settings),  # type: ignore[arg-type]
        instrumentation=setup(
            InstrumentationSettings(service_name="demo", export=False, set_global=False),
            readers=[reader],
        ),
    )


@pytest.fixture
async def app_with_db(
    table_prefix: str,
) -> AsyncIterator[tuple[FastAPI, InMemoryMetricReader, str]]:
    reader = InMemoryMetricReader()
    app = make(reader, database_url=DSN, table_prefix=table_prefix)
    try:
        async with app.router.lifespan_context(app):
            assert app.state.demo.db is not None, app.state.demo.db_error
            yield app, reader, table_prefix
    finally:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(
                f"DROP TABLE IF EXISTS {table_prefix}deployments, {table_prefix}users"
            )
        finally:
            await conn.close()


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo")


async def test_deploy_stores_rows_and_records_metrics(
    app_with_db: tuple[FastAPI, InMemoryMetricReader, str],
) -> None:
    app, reader, prefix = app_with_db
    async with client(app) as c:
        for outcome in ("success", "success", "failed"):
            r = await c.post(
                "/api/deploy", json={"user_id": 9, "runtime": "go", "outcome": outcome}
            )
            assert r.status_code == 201, r.text
            assert r.json()["stored"] is True
        assert (await c.post("/api/deploy", json={"user_id": 99999})).status_code == 404
        assert (await c.post("/api/deploy", json={"user_id": "x"})).status_code == 422
        listed = (await c.get("/api/deployments", params={"limit": 5})).json()
    assert [d["status"] for d in listed] == ["failed", "success", "success"]
    conn = await asyncpg.connect(DSN)
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {prefix}deployments") == 3
    finally:
        await conn.close()
    points, _ = collect(reader)
    assert value_of(points, "coderunner.deployments", status="success", type="go").value == 2
    assert value_of(points, "coderunner.deployments", status="failed", type="go").value == 1
    # user 9 is on the team plan (seed_user): costs accrue there.
    assert (
        value_of(points, "coderunner.resource.costs", resource_type="compute", plan="team").value
        >= 0
    )
    assert (
        value_of(
            points, "coderunner.errors", type="BuildFailed", service="builder", severity="warning"
        ).value
        == 1
    )
    deploy_route = {
        "http.request.method": "POST",
        "url.scheme": "http",
        "http.route": "/api/deploy",
    }
    duration = "http.server.request.duration"
    assert (
        value_of(points, duration, **deploy_route, **{"http.response.status_code": 201}).count == 3
    )
    # The database operations behind them were measured too.
    ops = {a["db.operation.name"] for a, _ in points["db.client.operation.duration"]}
    assert {"INSERT", "UPDATE", "SELECT"} <= ops


async def test_users_errors_and_plan_gauge(
    app_with_db: tuple[FastAPI, InMemoryMetricReader, str],
) -> None:
    app, reader, _ = app_with_db
    async with client(app) as c:
        assert (await c.get("/api/users/10")).json() == {"id": 10, "name": "user10", "plan": "free"}
        assert (await c.get("/api/users/12345")).status_code == 404
        r = await c.get("/api/simulate-error")
        assert r.status_code == 500
    points, _ = collect(reader)
    assert (
        value_of(points, "coderunner.user.activity", action="view_profile", plan_type="free").value
        == 1
    )
    assert (
        value_of(
            points, "coderunner.errors", type="SimulatedError", service="api", severity="error"
        ).value
        == 1
    )
    err = value_of(
        points,
        "http.server.request.duration",
        **{
            "http.request.method": "GET",
            "url.scheme": "http",
            "http.route": "/api/simulate-error",
            "http.response.status_code": 500,
            "error.type": "500",
        },
    )
    assert err.count == 1
    # 30 seed users: 18 free, 9 premium, 3 team (from the database).
    plans = {a["plan_type"]: p.value for a, p in points["coderunner.plan.distribution"]}
    assert plans == {"free": 18, "premium": 9, "team": 3}


async def test_without_postgresql_the_demo_runs_and_says_why() -> None:
    reader = InMemoryMetricReader()
    # Port 1 on 127.0.0.1: connection refused at once.
    app = make(
        reader,
        database_url="postgresql://postgres@127.0.0.1:1/none",
        database_connect_timeout_s=1.0,
        health_interval_s=0.05,
    )
    async with app.router.lifespan_context(app), client(app) as c:
        index = (await c.get("/")).json()
        assert index["database"].startswith("off (")
        r = await c.post("/api/deploy", json={"user_id": 1, "outcome": "success"})
        assert r.status_code == 201 and r.json()["stored"] is False
        r = await c.get("/api/deployments")
        assert r.status_code == 503
        assert "database unavailable" in r.json()["detail"]
        assert (await c.get("/api/users/2")).status_code == 200
        # The health check runs in the background; its result says what is wrong. Its first
        # failures warn (circuit breaker still closed); then the breaker opens: fail.
        health: dict = {}
        for _ in range(50):
            health = (await c.get("/api/health")).json()
            if health.get("checks", {}).get("postgresql", [{}])[0].get("status") == "fail":
                break
            await anyio.sleep(0.1)
        assert health["status"] == "warn"
        assert health["checks"]["postgresql"][0]["status"] == "fail"
        assert "ConnectionRefusedError" in health["checks"]["postgresql"][0]["output"]
    points, _ = collect(reader)
    assert value_of(points, "coderunner.deployments", status="success", type="python").value == 1
    assert (
        value_of(
            points,
            "coderunner.errors",
            type="DatabaseUnavailable",
            service="api",
            severity="critical",
        ).value
        == 1
    )


async def test_forced_build_time_is_used_and_bounded(
    app_with_db: tuple[FastAPI, InMemoryMetricReader, str],
) -> None:
    app, _, _ = app_with_db
    async with client(app) as c:
        r = await c.post("/api/deploy", json={"user_id": 3, "build_seconds": 0.2})
        assert r.status_code == 201 and r.json()["duration_s"] == 0.2
        assert (
            await c.post("/api/deploy", json={"user_id": 3, "build_seconds": 6})
        ).status_code == 422


async def test_a_database_outage_answers_503_and_counts_the_error(table_prefix: str) -> None:
    from urllib.parse import urlsplit

    from demo.dbproxy import DatabaseProxy
    from demo.runner import _via_proxy

    target = urlsplit(DSN)
    proxy = DatabaseProxy(target.hostname or "127.0.0.1", target.port or 5432)
    reader = InMemoryMetricReader()
    app = make(
        reader,
        database_url=_via_proxy(DSN, await proxy.start()),
        table_prefix=table_prefix,
        database_connect_timeout_s=2.0,
    )
    try:
        async with app.router.lifespan_context(app), client(app) as c:
            assert (await c.get("/api/users/10")).status_code == 200
            proxy.cut()
            down = await c.get("/api/users/10")
            assert down.status_code == 503, down.text
            assert "database unavailable" in down.json()["detail"]
            proxy.restore()
            # The pool reconnects by itself once the database is back.
            for _ in range(50):
                if (await c.get("/api/users/10")).status_code == 200:
                    break
                await anyio.sleep(0.1)
            else:
                raise AssertionError("the service did not recover after the outage")
    finally:
        await proxy.close()
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(
                f"DROP TABLE IF EXISTS {table_prefix}deployments, {table_prefix}users"
            )
        finally:
            await conn.close()
    points, _ = collect(reader)
    assert (
        value_of(
            points,
            "coderunner.errors",
            type="DatabaseUnavailable",
            service="api",
            severity="critical",
        ).value
        >= 1
    )
