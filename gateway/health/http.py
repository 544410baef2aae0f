"""`health_router`: /live, /ready, /health and /api/health for any FastAPI app.

- `/live`: the process and its event loop respond (the heartbeat task ticks); nothing external,
  so a database outage never restarts the pod.
- `/ready`: the app accepts data (`registry.set_accepting`) and no required check fails.
- `/health`: overall status only (`pass` / `warn` 200, `fail` 503).
- `/api/health`: the same status with per-check details as `application/health+json`
  (IETF draft "Health Check Response Format for HTTP APIs"), details shown by policy:
  `never`, `when-authorized` (`Authorization: Bearer <token>`), `always`.

All four answer from memory; none waits for a check. Each answers GET and HEAD (same status
and headers, no body).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.health.breaker import BreakerState
from gateway.health.config import DetailsPolicy
from gateway.health.model import CheckResult, Status
from gateway.health.registry import HealthRegistry

__all__ = ["HEALTH_JSON", "health_router", "render_health"]

HEALTH_JSON = "application/health+json"
_NO_CACHE = {"Cache-Control": "no-cache, no-store"}


class _HealthResponse(JSONResponse):
    media_type = HEALTH_JSON


_Endpoint = Callable[..., Awaitable[_HealthResponse]]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _entries(result: CheckResult) -> dict[str, list[dict[str, Any]]]:
    """One result as draft check entries, keyed `component:measurement` (or `component`)."""

    def entry(
        status: Status, output: str, value: object = None, unit: str | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"componentType": result.component_type, "status": status.value}
        if value is not None:
            out["observedValue"] = value
        if unit is not None:
            out["observedUnit"] = unit
        if result.ran:
            out["time"] = _iso(result.time_unix)
        if output and status is not Status.PASS:  # the draft: omit output on pass
            out["output"] = output
        return out

    if not result.observations:
        return {result.name: [entry(result.status, result.output)]}
    checks: dict[str, list[dict[str, Any]]] = {}
    breaker_says_fail = result.breaker_state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
    for obs in result.observations:
        # An observation with its own status keeps it (a check that warns on disk use does not
        # make its memory reading a warning), unless the dependency's breaker is not closed.
        if obs.status is None or breaker_says_fail:
            status, output = result.status, result.output
        else:
            status, output = obs.status, obs.output or result.output
        e = entry(status, output, obs.value, obs.unit)
        if obs.component_id is not None:
            e["componentId"] = obs.component_id
        checks.setdefault(f"{result.name}:{obs.measurement}", []).append(e)
    return checks


def render_health(registry: HealthRegistry, *, details: bool) -> dict[str, Any]:
    """The /api/health body; per-check details only when `details`."""
    status = registry.status()
    body: dict[str, Any] = {"status": status.value}
    if registry.version:
        body["version"] = registry.version
    if registry.service_id:
        body["serviceId"] = registry.service_id
    if registry.description:
        body["description"] = registry.description
    if not details:
        return body
    results = registry.results()
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results.values():
        checks.update(_entries(result))
    body["checks"] = checks
    troubled = [
        f"{r.name}: {r.status.value}" for r in results.values() if r.status is not Status.PASS
    ]
    if troubled and status is not Status.PASS:
        body["output"] = "; ".join(troubled)
    return body


def health_router(
    registry: HealthRegistry, *, details: DetailsPolicy = "never", token: str = ""
) -> APIRouter:
    """The four probe routes over `registry` (mount with `app.include_router(...)`)."""
    if details == "when-authorized" and not token:
        raise ValueError("details policy when-authorized needs a token")
    expected = f"Bearer {token}".encode()

    def allowed(request: Request) -> bool:
        if details == "always":
            return True
        if details == "never":
            return False
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    router = APIRouter(tags=["health"])

    def probe(path: str) -> Callable[[_Endpoint], _Endpoint]:
        """GET and HEAD on `path`. Kubernetes probes send GET, load balancers and uptime
        checkers often HEAD; the server (uvicorn) drops a HEAD response's body and keeps its
        status and headers. HEAD is left out of the OpenAPI document: HTTP implies it with GET,
        and one function under two methods would give two operations the same id."""

        def register(endpoint: _Endpoint) -> _Endpoint:
            router.get(path, response_class=_HealthResponse)(endpoint)
            router.head(path, response_class=_HealthResponse, include_in_schema=False)(endpoint)
            return endpoint

        return register

    @probe("/live")
    async def live(request: Request) -> _HealthResponse:
        state = registry.liveness()
        body: dict[str, Any] = {"status": "pass" if state.alive else "fail"}
        if not state.alive and allowed(request):
            body["output"] = f"event loop heartbeat {state.heartbeat_age_seconds:.1f}s old"
        return _HealthResponse(body, 200 if state.alive else 503, headers=_NO_CACHE)

    @probe("/ready")
    async def ready(request: Request) -> _HealthResponse:
        state = registry.readiness()
        body: dict[str, Any] = {"status": "pass" if state.ready else "fail"}
        if not state.ready and allowed(request):
            reasons = [] if state.accepting else ["not accepting data (starting or stopping)"]
            if state.failing:
                reasons.append("required checks not passing: " + ", ".join(state.failing))
            body["output"] = "; ".join(reasons)
        return _HealthResponse(body, 200 if state.ready else 503, headers=_NO_CACHE)

    @probe("/health")
    async def health() -> _HealthResponse:
        body = render_health(registry, details=False)
        code = 503 if body["status"] == Status.FAIL.value else 200
        return _HealthResponse(body, code, headers=_NO_CACHE)

    @probe("/api/health")
    async def api_health(request: Request) -> _HealthResponse:
        body = render_health(registry, details=allowed(request))
        code = 503 if body["status"] == Status.FAIL.value else 200
        return _HealthResponse(body, code, headers=_NO_CACHE)

    return router
