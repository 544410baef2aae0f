"""The probe routes: status codes, application/health+json per the IETF draft, details policy."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from gateway.health.breaker import CircuitBreaker
from gateway.health.config import BreakerConfig
from gateway.health.http import health_router
from gateway.health.model import Check, CheckOutcome, Observation, Status
from gateway.health.registry import HealthRegistry

# The field rules of draft-inadarei-api-health-check (Health Check Response Format for HTTP
# APIs), sections 3 and 4: what a response may hold and of what type; `output` is left out for
# `pass`; checks are keyed "componentName:measurementName" (or a bare component name).
_STATUS = {"enum": ["pass", "fail", "warn"]}
_RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
_NO_OUTPUT_ON_PASS = {
    "if": {"properties": {"status": {"const": "pass"}}, "required": ["status"]},
    "then": {"not": {"required": ["output"]}},
}
CHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "componentId": {"type": "string"},
        "componentType": {
            "anyOf": [
                {"enum": ["component", "datastore", "system"]},
                {"type": "string", "format": "uri", "pattern": "^[a-z][a-z0-9+.-]*:"},
            ]
        },
        "observedValue": {},
        "observedUnit": {"type": "string"},
        "status": _STATUS,
        "affectedEndpoints": {"type": "array", "items": {"type": "string", "format": "uri"}},
        "time": {"type": "string", "format": "date-time", "pattern": _RFC3339},
        "output": {"type": "string"},
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    **_NO_OUTPUT_ON_PASS,
}
HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "additionalProperties": False,
    "properties": {
        "status": _STATUS,
        "version": {"type": "string"},
        "releaseId": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "output": {"type": "string"},
        "checks": {
            "type": "object",
            "propertyNames": {"pattern": "^[^:]+(:[^:]+)?$"},
            "additionalProperties": {"type": "array", "minItems": 1, "items": CHECK_SCHEMA},
        },
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
        "serviceId": {"type": "string"},
        "description": {"type": "string"},
    },
    **_NO_OUTPUT_ON_PASS,
}


def validate(body: dict[str, Any]) -> None:
    jsonschema.validate(body, HEALTH_SCHEMA, format_checker=jsonschema.FormatChecker())


def test_the_schema_can_fail() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate({"status": "ok"})
    with pytest.raises(jsonschema.ValidationError):
        validate({"status": "pass", "output": "must not be here"})
    with pytest.raises(jsonschema.ValidationError):
        validate({"status": "warn", "checks": {"a:b:c": [{"status": "warn"}]}})
    with pytest.raises(jsonschema.ValidationError):
        validate({"status": "warn", "checks": {"db": [{"status": "warn", "time": "yesterday"}]}})


TOKEN = "s3cret-token"
State = dict[str, Status]


def build(details: str, state: State) -> tuple[FastAPI, HealthRegistry]:
    registry = HealthRegistry(service_id="gw-1", version="0.1.0", description="test gateway")

    async def db() -> CheckOutcome:
        if state["postgresql"] is Status.FAIL:
            raise ConnectionRefusedError("connection refused")
        return CheckOutcome.of(
            Observation("responseTime", 1.5, "ms"),
            Observation("connections", 1, "connections", component_id="in_use"),
            Observation("connections", 4, "connections", component_id="idle"),
        )

    async def cache() -> Status:
        return state["redis"]

    async def system() -> CheckOutcome:
        return CheckOutcome.of(
            Observation("cpuUtilization", 12.5, "percent", Status.PASS),
            Observation("diskUtilization", 88.0, "percent", Status.WARN, "disk 88.0% >= 85%"),
        )

    registry.add(
        Check(
            "postgresql",
            db,
            required=True,
            component_type="datastore",
            breaker=CircuitBreaker("postgresql", BreakerConfig(failure_threshold=1)),
        )
    )
    registry.add(Check("redis", cache, component_type="datastore"))
    registry.add(Check("system", system, component_type="system"))
    app = FastAPI()
    app.include_router(
        health_router(registry, details=details, token=TOKEN)  # type: ignore[arg-type]
    )
    return app, registry


async def run_all(registry: HealthRegistry) -> None:
    for name in registry.checks:
        await registry.run_once(name)


async def get(app: FastAPI, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path, headers=headers)


def test_api_health_details_validate_against_the_draft() -> None:
    async def scenario() -> None:
        state = {"postgresql": Status.PASS, "redis": Status.PASS}
        app, registry = build("always", state)
        await run_all(registry)
        r = await get(app, "/api/health")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/health+json"
        assert "no-store" in r.headers["cache-control"]
        body = r.json()
        validate(body)
        assert body["status"] == "warn"  # the disk observation warns
        assert (body["serviceId"], body["version"]) == ("gw-1", "0.1.0")
        assert set(body["checks"]) == {
            "postgresql:responseTime",
            "postgresql:connections",
            "redis",
            "system:cpuUtilization",
            "system:diskUtilization",
        }
        conns = body["checks"]["postgresql:connections"]
        assert [(c["componentId"], c["observedValue"]) for c in conns] == [
            ("in_use", 1),
            ("idle", 4),
        ]
        rt = body["checks"]["postgresql:responseTime"][0]
        assert rt["componentType"] == "datastore"
        assert (rt["observedValue"], rt["observedUnit"], rt["status"]) == (1.5, "ms", "pass")
        assert "output" not in rt
        disk = body["checks"]["system:diskUtilization"][0]
        assert (disk["status"], disk["output"]) == ("warn", "disk 88.0% >= 85%")
        cpu = body["checks"]["system:cpuUtilization"][0]
        assert cpu["status"] == "pass"  # the disk warning is not the CPU's
        assert "output" not in cpu

        state["postgresql"] = Status.FAIL
        await registry.run_once("postgresql")
        r = await get(app, "/api/health")
        assert r.status_code == 503
        body = r.json()
        validate(body)
        assert body["status"] == "fail"
        (entry,) = body["checks"]["postgresql:responseTime"]
        assert entry["status"] == "fail"
        assert "connection refused" in entry["output"]
        assert "postgresql: fail" in body["output"]

    asyncio.run(scenario())


def test_before_the_first_run_the_body_still_validates() -> None:
    async def scenario() -> None:
        app, _ = build("always", {"postgresql": Status.PASS, "redis": Status.PASS})
        r = await get(app, "/api/health")
        body = r.json()
        validate(body)
        assert body["checks"]["postgresql"][0] == {
            "componentType": "datastore",
            "status": "warn",
            "output": "not run yet",
        }

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("policy", "token", "shown"),
    [
        ("never", None, False),
        ("never", TOKEN, False),
        ("when-authorized", None, False),
        ("when-authorized", "wrong", False),
        ("when-authorized", TOKEN, True),
        ("always", None, True),
    ],
)
def test_details_policy(policy: str, token: str | None, shown: bool) -> None:
    async def scenario() -> None:
        app, registry = build(policy, {"postgresql": Status.FAIL, "redis": Status.PASS})
        await run_all(registry)
        r = await get(app, "/api/health", token)
        assert r.status_code == 503
        body = r.json()
        validate(body)
        assert body["status"] == "fail"
        assert ("checks" in body) is shown
        assert ("output" in body) is shown
        ready = (await get(app, "/ready", token)).json()
        assert ready["status"] == "fail"
        assert ("output" in ready) is shown
        if shown:
            assert re.search(r"required checks not passing: postgresql", ready["output"])

    asyncio.run(scenario())


def test_health_is_summary_only_warn_200_fail_503() -> None:
    async def scenario() -> None:
        state = {"postgresql": Status.PASS, "redis": Status.FAIL}
        app, registry = build("always", state)
        await run_all(registry)
        r = await get(app, "/health")
        assert (r.status_code, r.json()) == (
            200,
            {
                "status": "warn",
                "version": "0.1.0",
                "serviceId": "gw-1",
                "description": "test gateway",
            },
        )
        validate(r.json())
        state["postgresql"] = Status.FAIL
        await registry.run_once("postgresql")
        r = await get(app, "/health")
        assert (r.status_code, r.json()["status"]) == (503, "fail")

    asyncio.run(scenario())


def test_ready_and_live() -> None:
    async def scenario() -> None:
        app, registry = build("always", {"postgresql": Status.PASS, "redis": Status.PASS})
        assert (await get(app, "/ready")).status_code == 503  # starting: not accepting yet
        registry.set_accepting(True)
        assert (await get(app, "/ready")).status_code == 503  # required check not run yet
        await run_all(registry)
        r = await get(app, "/ready")
        assert (r.status_code, r.json()) == (200, {"status": "pass"})
        assert r.headers["content-type"] == "application/health+json"
        registry.set_accepting(False)
        r = await get(app, "/ready")
        assert r.status_code == 503
        assert r.json()["output"] == "not accepting data (starting or stopping)"
        r = await get(app, "/live")
        assert (r.status_code, r.json()) == (200, {"status": "pass"})

    asyncio.run(scenario())


def test_when_authorized_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a token"):
        health_router(HealthRegistry(), details="when-authorized", token="")


def test_the_openapi_document_lists_each_probe_once_under_get() -> None:
    """HEAD is served but not documented (HTTP implies it with GET): one function under both
    methods would give two operations the same id, and FastAPI warns (an error here)."""
    app = FastAPI()
    app.include_router(health_router(HealthRegistry()))
    paths = app.openapi()["paths"]
    probes = ("/live", "/ready", "/health", "/api/health")
    assert {path: sorted(paths[path]) for path in probes} == {path: ["get"] for path in probes}

    async def heads() -> dict[str, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return {path: (await c.head(path)).status_code for path in probes}

    # Served all the same (503: the registry is not accepting data yet; /live is 200).
    assert asyncio.run(heads()) == {"/live": 200, "/ready": 503, "/health": 200, "/api/health": 200}
