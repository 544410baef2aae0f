"""The instrumented demo service (uvicorn subprocess) -> a real gateway -> its /metrics, with the
real PostgreSQL: exact request, deployment and WebSocket counts, by route and status, for one
worker and for `uvicorn --workers 2` (each worker its own service.instance.id).

The exact-count tests run the gateway with `views: []`, so they see the raw OpenTelemetry names
the instrumentation emits; the traffic test runs it with its default views and checks the
catalogue names (coderunner_api_requests_total by status class) against what the generator did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from demo.db import token_for
from demo.runner import Samples, parse_prometheus_text
from demo.traffic import TrafficGenerator
from tests.support.servers import (
    GatewayProcess,
    ServerProcess,
    run_demo_service,
    run_gateway,
)
from tests.support.waiting import settled

pytestmark = pytest.mark.integration

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
JOB = "coderunner/coderunner-demo"
NO_VIEWS = "views: []\n"
HTTP_COUNT = "http_server_request_duration_seconds_count"


@contextlib.contextmanager
def demo_service(
    tmp: Path, gateway: GatewayProcess, prefix: str, *, workers: int = 1
) -> Iterator[ServerProcess]:
    env = {"DATABASE_URL": DSN, "DEMO_TABLE_PREFIX": prefix}
    try:
        with run_demo_service(tmp, gateway.url, env, workers=workers) as server:
            yield server
    finally:
        asyncio.run(_drop(prefix))


async def _drop(prefix: str) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}deployments, {prefix}users")
    finally:
        await conn.close()


def scrape(gateway: GatewayProcess) -> Samples:
    return parse_prometheus_text(httpx.get(gateway.url + "/metrics", timeout=5).text)


def total(samples: Samples, name: str, **match: str) -> float:
    return sum(
        v
        for labels, v in samples.get(name, [])
        if labels.get("job") == JOB and all(labels.get(k) == w for k, w in match.items())
    )


def scrape_when(
    gateway: GatewayProcess, ready: Callable[[Samples], bool], timeout: float = 15.0
) -> Samples:
    # One more export interval after `ready`: exact means no late double counting either.
    return settled(lambda: scrape(gateway), ready, timeout, settle=0.8)


async def _drive(
    base: str, n_users: int, m_deploy: int, k_ws: int, *, keepalive: bool = True
) -> None:
    ws_url = "ws" + base[4:] + "/ws"
    # Without keep-alive every request is a new connection, which either worker may accept.
    limits = httpx.Limits(max_keepalive_connections=None if keepalive else 0)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as c:
        for i in range(n_users):
            assert (await c.get(f"/api/users/{i % 30 + 1}")).status_code == 200
        for _ in range(3):
            assert (await c.get("/api/users/99999")).status_code == 404
        for i in range(m_deploy):
            outcome = "failed" if i % 3 == 0 else "success"
            r = await c.post(
                "/api/deploy", json={"user_id": 5, "runtime": "node", "outcome": outcome}
            )
            assert r.status_code == 201, r.text
    for i in range(k_ws):
        async with connect(f"{ws_url}?token={token_for(i + 1)}") as ws:
            await ws.send("ping")
            await ws.recv()
    with pytest.raises(InvalidStatus):
        async with connect(f"{ws_url}?token=bogus"):
            pass


def _check_counts(samples: Samples, n: int, m: int, k: int) -> None:
    users = {"http_route": "/api/users/{user_id}", "http_request_method": "GET"}
    assert total(samples, HTTP_COUNT, **users, http_response_status_code="200") == n
    assert total(samples, HTTP_COUNT, **users, http_response_status_code="404") == 3
    deploy = {"http_route": "/api/deploy", "http_request_method": "POST"}
    assert total(samples, HTTP_COUNT, **deploy, http_response_status_code="201") == m
    failed = len([i for i in range(m) if i % 3 == 0])
    assert total(samples, "coderunner_deployments_total", status="failed", type="node") == failed
    assert (
        total(samples, "coderunner_deployments_total", status="success", type="node") == m - failed
    )
    assert total(samples, "coderunner_deployment_duration_seconds_count", type="node") == m
    ws = "coderunner_websocket_connections_total"
    assert total(samples, ws, status="authenticated") == k
    assert total(samples, ws, status="closed") == k
    assert total(samples, ws, status="rejected") == 1
    assert total(samples, "coderunner_websocket_active_connections") == 0
    assert (
        total(samples, "db_client_operation_duration_seconds_count", db_operation_name="INSERT")
        >= m
    )


def test_exact_counts_single_worker(tmp_path: Path) -> None:
    n, m, k = 23, 7, 4
    prefix = f"e2e1_{os.getpid()}_"
    with (
        run_gateway(tmp_path, grpc=False, config=NO_VIEWS) as gw,
        demo_service(tmp_path, gw, prefix) as demo,
    ):
        asyncio.run(_drive(demo.url, n, m, k))
        samples = scrape_when(
            gw,
            lambda s: (
                total(s, "coderunner_websocket_connections_total", status="closed") >= k
                and total(s, HTTP_COUNT, http_route="/api/deploy") >= m
            ),
        )
        _check_counts(samples, n, m, k)
        instances = {
            labels["instance"] for labels, _ in samples["target_info"] if labels.get("job") == JOB
        }
        assert len(instances) == 1


def test_exact_counts_two_workers_distinct_instances(tmp_path: Path) -> None:
    n, m, k = 40, 6, 5
    prefix = f"e2e2_{os.getpid()}_"
    with (
        run_gateway(tmp_path, grpc=False, config=NO_VIEWS) as gw,
        demo_service(tmp_path, gw, prefix, workers=2) as demo,
    ):
        # Both workers export (plan gauge) as soon as they start: two target_info series.
        samples = scrape_when(
            gw,
            lambda s: (
                len({la["instance"] for la, _ in s.get("target_info", []) if la.get("job") == JOB})
                >= 2
            ),
        )
        asyncio.run(_drive(demo.url, n, m, k, keepalive=False))
        samples = scrape_when(
            gw,
            lambda s: (
                total(s, "coderunner_websocket_connections_total", status="closed") >= k
                and total(s, HTTP_COUNT, http_route="/api/deploy") >= m
            ),
        )
        _check_counts(samples, n, m, k)
        instances = {la["instance"] for la, _ in samples["target_info"] if la.get("job") == JOB}
        assert len(instances) == 2
        served: dict[str, float] = {}
        for la, v in samples[HTTP_COUNT]:
            if la.get("job") == JOB:
                served[la["instance"]] = served.get(la["instance"], 0) + v
        # Both workers served some of the 49 new connections, each under its own instance
        # label, and the exact totals above are the sums over them.
        assert set(served) == instances, served
        assert all(v > 0 for v in served.values()), served


def test_traffic_generator_matches_the_gateway_through_default_views(tmp_path: Path) -> None:
    prefix = f"e2e3_{os.getpid()}_"
    with run_gateway(tmp_path, grpc=False) as gw, demo_service(tmp_path, gw, prefix) as demo:
        gen = TrafficGenerator(demo.url, rate=60, seed=3)
        stats = asyncio.run(gen.run(duration_s=2.5))
        assert stats.transport_errors == 0
        assert stats.requests > 50
        api = "coderunner_api_requests_total"
        ws = "coderunner_websocket_connections_total"
        samples = scrape_when(
            gw,
            lambda s: (
                total(s, api) >= stats.requests
                and total(s, ws, status="closed") >= stats.ws_sessions
            ),
        )
        by_class: dict[str, int] = {}
        for code, count in stats.responses.items():
            by_class[f"{code // 100}xx"] = by_class.get(f"{code // 100}xx", 0) + count
        for status_class, count in by_class.items():
            assert total(samples, api, status=status_class) == count, status_class
        assert total(samples, api) == stats.requests
        for status, count in stats.deployments.items():
            assert total(samples, "coderunner_deployments_total", status=status) == count
        assert total(samples, ws, status="authenticated") == stats.ws_sessions
        assert total(samples, ws, status="rejected") == stats.ws_rejected
        assert (
            total(samples, "coderunner_errors_total", type="SimulatedError")
            == (stats.responses[500])
        )
        # The views replaced the semconv names with the catalogue's.
        assert HTTP_COUNT not in samples
        assert total(samples, "coderunner_db_operation_duration_seconds_count") > 0
