"""The demo service: a small deployment-platform API on FastAPI + asyncpg, instrumented with
`instrumentation` so every layer (HTTP, database, deployments, WebSockets, errors, business
events) reaches the gateway.

    uvicorn demo.app:create_app_from_env --factory --port 3000 [--workers 2]

Without PostgreSQL the service still starts: deployments are simulated for the seed users
without being stored, /api/deployments answers 503, and /api/health says why the database
check fails.

Health (`gateway.health`, mounted at /live, /ready, /health, /api/health): a `postgresql` check
behind its own circuit breaker and a `websocket` check of the worker's WebSocket hub; their
results and the breaker's transitions are exported as the catalogue's `health.check.*` and
`circuit_breaker.*` metrics with the service's other metrics (`demo.health_metrics`).

Its platform metrics (`demo.meters.Meters`: deployments, WebSockets, errors, business events)
are built in the lifespan on the provider `instrument_app()` set up for the worker, and kept in
`app.state.meters`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
from fastapi import FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from demo.db import PLANS, Database, User, seed_user, token_for
from demo.health_metrics import HealthMetrics
from demo.meters import Meters
from demo.settings import DemoSettings
from gateway.catalogue import DEFAULT_NAMESPACE
from gateway.health import (
    Check,
    CheckOutcome,
    CircuitBreaker,
    HealthRegistry,
    Observation,
    Status,
    health_router,
)
from gateway.health.checks.postgres import PostgresCheck
from instrumentation import Instrumentation, InstrumentationSettings, instrument_app

__all__ = ["create_app", "create_app_from_env"]

_log = logging.getLogger("demo")

Runtime = Literal["python", "node", "go"]
# Simulated compute price per build-second, by plan (US dollars).
_PRICE_PER_SECOND = {"free": 0.0, "premium": 0.0004, "team": 0.0006}
#: share of the hub's capacity in use from which its health check warns
_HUB_WARN_RATIO = 0.9


class SimulatedError(RuntimeError):
    """Raised on purpose by /api/simulate-error; answered 500 without a traceback in the log."""


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int
    runtime: Runtime = "python"
    #: force the simulated build's outcome (tests and the traffic generator); None: random
    outcome: Literal["success", "failed"] | None = None
    #: force the simulated build's duration in seconds (the slow-deploys scenario); None:
    #: random within the service's build_seconds
    build_seconds: float | None = Field(default=None, ge=0, le=5)


class WebSocketHub:
    """One worker's open WebSockets: admitted up to `capacity`, and only while the service is
    up (closed to newcomers before startup and from the start of shutdown).

    Connections are accepted by the server's own loop (uvicorn), so the hub's health is the
    question a client asks: would a new WebSocket get in now? `check()` answers it, with the
    open connections as the observed value: fail when closed or full, warn from 90 % full.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.open_connections = 0
        self.accepting = False

    def admit(self) -> bool:
        """Take a place for a new connection; False when closed or full."""
        if not self.accepting or self.open_connections >= self.capacity:
            return False
        self.open_connections += 1
        return True

    def leave(self) -> None:
        """An admitted connection ended."""
        self.open_connections -= 1

    async def check(self) -> CheckOutcome:
        n, cap = self.open_connections, self.capacity
        if not self.accepting:
            status, output = Status.FAIL, "hub closed: the service is starting or shutting down"
        elif n >= cap:
            status, output = Status.FAIL, f"hub full: {n} of {cap}; new connections are refused"
        elif n >= _HUB_WARN_RATIO * cap:
            status, output = Status.WARN, f"hub nearly full: {n} of {cap}"
        else:
            status, output = Status.PASS, ""
        return CheckOutcome.of(
            Observation("connections", n, "connections", status=status, output=output),
            Observation("connections", cap, "connections", component_id="max"),
            output=output,
        )


async def _refuse_busy(websocket: WebSocket) -> None:
    # 503 with Retry-After before the upgrade tells the client to come back later; a server
    # without the ASGI denial-response extension can only refuse the handshake (403).
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        busy = PlainTextResponse("WebSocket hub full or closing", 503, {"Retry-After": "5"})
        await websocket.send_denial_response(busy)
    else:
        await websocket.close(code=1013)  # try again later


@dataclass
class _DemoState:
    settings: DemoSettings
    hub: WebSocketHub
    db: Database | None = None
    db_error: str = "not connected yet"
    plan_counts: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)


def _meters(request: Request | WebSocket) -> Meters:
    return request.app.state.meters  # type: ignore[no-any-return]


def _state(request: Request | WebSocket) -> _DemoState:
    return request.app.state.demo  # type: ignore[no-any-return]


def _db_unavailable(request: Request) -> HTTPException:
    state = _state(request)
    _meters(request).error(type="DatabaseUnavailable", service="api", severity="critical")
    return HTTPException(503, f"database unavailable: {state.db_error}")


async def _find_user(state: _DemoState, user_id: int) -> User | None:
    if state.db is not None:
        return await state.db.user(user_id)
    # Without the database, the seed users stand in so the rest of the demo keeps working.
    return seed_user(user_id) if 1 <= user_id <= state.settings.seed_users else None


async def _authenticate(state: _DemoState, token: str) -> User | None:
    if not token:
        return None
    if state.db is not None:
        return await state.db.user_by_token(token)
    prefix = "demo-token-"
    if token.startswith(prefix) and token[len(prefix) :].isdigit():
        user = await _find_user(state, int(token[len(prefix) :]))
        return user if user is not None and token_for(user.id) == token else None
    return None


async def _refresh_plans(state: _DemoState, stop: asyncio.Event) -> None:
    # Stopped by `stop`, not by cancellation: a query cancelled mid-flight leaves asyncpg's
    # shielded connection release racing the pool's close.
    while not stop.is_set():
        if state.db is not None:
            try:
                state.plan_counts = await state.db.plan_counts()
            except (OSError, asyncpg.PostgresError) as exc:
                _log.warning("plan counts not refreshed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), state.settings.plan_refresh_s)


def create_app(
    settings: DemoSettings | None = None,
    *,
    instrumentation: Instrumentation | InstrumentationSettings | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> FastAPI:
    """The demo app. `instrumentation`: settings for `instrumentation.setup()` (endpoint,
    export_interval_s, ...) or a handle from it (tests); by default the OTEL_* environment
    decides, and the service is named `settings.service_name` unless OTEL_SERVICE_NAME is set.
    `namespace` prefixes the platform metrics' names."""
    settings = settings or DemoSettings()
    state = _DemoState(settings, WebSocketHub(settings.websocket_max_connections))
    state.plan_counts = dict.fromkeys(PLANS, 0)
    for i in range(1, settings.seed_users + 1):
        state.plan_counts[seed_user(i).plan] += 1
    registry = HealthRegistry(service_id=settings.service_name, version="0.1.0")
    registry.add(
        Check(
            "websocket",
            state.hub.check,
            timeout=settings.health_timeout_s,
            interval=settings.health_interval_s,
            required=False,
        )
    )

    def add_database_check() -> None:
        # With a connection, the check uses the service's own pool (its statistics are the
        # interesting ones, and the pool's graceful close waits for a check cut short at
        # shutdown); without one, the check's own lazy pool keeps trying and says why it fails.
        check = (
            PostgresCheck(pool=state.db.pool)
            if state.db is not None
            else PostgresCheck(dsn=settings.database_url)
        )
        registry.add(
            Check(
                "postgresql",
                check,
                timeout=settings.health_timeout_s,
                interval=settings.health_interval_s,
                # Optional: without the database the demo runs degraded (warn), and says why.
                required=False,
                component_type="datastore",
                breaker=CircuitBreaker("postgresql", settings.database_breaker),
                close=check.close,
            )
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            state.db = await Database.connect(
                settings.database_url, settings.table_prefix, settings.database_connect_timeout_s
            )
            await state.db.create_schema(settings.seed_users)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            state.db_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            _log.warning(
                "PostgreSQL at %s unavailable, database parts are off: %s",
                settings.database_url,
                state.db_error,
            )
            if state.db is not None:
                await state.db.close()
                state.db = None
        provider = app.state.instrumentation.meter_provider
        meters = Meters(provider.get_meter("demo", "0.1.0"), namespace=namespace)
        app.state.meters = meters
        meters.observe_plan_distribution(lambda: state.plan_counts)
        stop_refresh = asyncio.Event()
        refresher = asyncio.create_task(_refresh_plans(state, stop_refresh), name="plan-refresh")
        add_database_check()
        registry.add_listener(HealthMetrics(provider, namespace=namespace))
        state.hub.accepting = True
        await registry.start()
        registry.set_accepting(True)
        try:
            yield
        finally:
            registry.set_accepting(False)
            state.hub.accepting = False
            stop_refresh.set()
            await refresher
            await registry.shutdown()
            if state.db is not None:
                await state.db.close()

    app = FastAPI(title="coderunner demo", lifespan=lifespan)
    app.state.demo = state
    app.include_router(health_router(registry, details="always"))
    if instrumentation is None:
        named = None if os.environ.get("OTEL_SERVICE_NAME") else settings.service_name
        instrumentation = InstrumentationSettings(service_name=named)
    instrument_app(app, instrumentation, exclude_paths=("/live", "/ready"))

    @app.get("/")
    async def index() -> dict[str, Any]:
        return {
            "service": settings.service_name,
            "database": "connected" if state.db is not None else f"off ({state.db_error})",
            "endpoints": [
                "POST /api/deploy",
                "GET /api/deployments",
                "GET /api/users/{user_id}",
                "WS /ws?token=...",
                "GET /api/simulate-error",
                "GET /health",
                "GET /api/health",
            ],
        }

    @app.post("/api/deploy", status_code=201)
    async def deploy(body: DeployRequest, request: Request) -> dict[str, Any]:
        meters = _meters(request)
        user = await _find_user(state, body.user_id)
        if user is None:
            raise HTTPException(404, f"user {body.user_id} not found")
        deployment_id = await state.db.start_deployment(user.id, body.runtime) if state.db else None
        low, high = settings.build_seconds
        build_s = (
            body.build_seconds if body.build_seconds is not None else state.rng.uniform(low, high)
        )
        await asyncio.sleep(build_s)  # the "build"
        outcome = body.outcome or (
            "failed" if state.rng.random() < settings.failure_rate else "success"
        )
        cost = round(build_s * _PRICE_PER_SECOND[user.plan], 6)
        if state.db is not None and deployment_id is not None:
            await state.db.finish_deployment(deployment_id, outcome, build_s, cost)
        meters.deployment(status=outcome, type=body.runtime, duration_s=build_s)
        meters.resource_cost(resource_type="compute", plan=user.plan, amount_usd=cost)
        meters.user_activity(action="deploy", plan_type=user.plan)
        meters.feature_used(feature=f"runtime_{body.runtime}", user_type=user.plan)
        if outcome == "failed":
            meters.error(type="BuildFailed", service="builder", severity="warning")
        return {
            "id": deployment_id,
            "user_id": user.id,
            "runtime": body.runtime,
            "status": outcome,
            "duration_s": round(build_s, 4),
            "cost_usd": cost,
            "stored": deployment_id is not None,
        }

    @app.get("/api/deployments")
    async def deployments(
        request: Request, limit: int = Query(20, ge=1, le=200)
    ) -> list[dict[str, Any]]:
        if state.db is None:
            raise _db_unavailable(request)
        _meters(request).feature_used(feature="deployment_history", user_type="any")
        return await state.db.recent_deployments(limit)

    @app.get("/api/users/{user_id}")
    async def user(user_id: int, request: Request) -> dict[str, Any]:
        found = await _find_user(state, user_id)
        if found is None:
            raise HTTPException(404, f"user {user_id} not found")
        _meters(request).user_activity(action="view_profile", plan_type=found.plan)
        return {"id": found.id, "name": found.name, "plan": found.plan}

    @app.get("/api/simulate-error")
    async def simulate_error(request: Request) -> None:
        _meters(request).error(type="SimulatedError", service="api", severity="error")
        raise SimulatedError("simulated failure (the traffic generator asks for these)")

    @app.exception_handler(OSError)
    @app.exception_handler(asyncpg.PostgresError)
    @app.exception_handler(asyncpg.InterfaceError)
    async def database_failed(request: Request, exc: Exception) -> JSONResponse:
        # The database went away mid-request (connection reset, refused, timed out): a 503
        # that says so and counts the error, not a 500 with a traceback per request.
        _meters(request).error(type="DatabaseUnavailable", service="api", severity="critical")
        return JSONResponse({"detail": f"database unavailable: {type(exc).__name__}"}, 503)

    @app.exception_handler(SimulatedError)
    async def simulated(request: Request, exc: SimulatedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=500)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, token: str = "") -> None:
        meters = _meters(websocket)
        auth = websocket.headers.get("authorization", "")
        found = await _authenticate(state, token or auth.removeprefix("Bearer "))
        if found is None:
            meters.websocket_rejected()
            await websocket.close(code=1008)  # policy violation: bad or missing token
            return
        if not state.hub.admit():
            meters.websocket_rejected()
            await _refuse_busy(websocket)
            return
        try:
            await websocket.accept()
            meters.websocket_accepted()
            meters.feature_used(feature="websocket", user_type=found.plan)
            try:
                while True:
                    text = await websocket.receive_text()
                    meters.user_activity(action="websocket_message", plan_type=found.plan)
                    await websocket.send_json({"echo": text, "user_id": found.id})
            except WebSocketDisconnect:
                pass
            finally:
                meters.websocket_closed()
        finally:
            state.hub.leave()

    return app


def create_app_from_env() -> FastAPI:
    """For `uvicorn demo.app:create_app_from_env --factory`: settings from DATABASE_URL and
    DEMO_*; telemetry from OTEL_* (OTEL_SERVICE_NAME, when set, names the service)."""
    return create_app(DemoSettings.from_env(os.environ))
