"""The instrumentation package's real output -> a real gateway with the default views -> every
application and business metric of the catalogue on /metrics, with exactly the catalogue's
labels and exact values; and the OTLP the gateway forwards, translated by a second gateway
without views (as a Collector would), gives the same names, labels and values.

The expected values come from an in-memory reader on the same MeterProvider, summed by hand
the way the catalogue says, not from the views' code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

from demo.meters import Meters
from gateway.catalogue import CATALOGUE, DEFAULT_NAMESPACE, Kind, Layer, Metric, by_name
from instrumentation import InstrumentationSettings, instrument_app, setup
from instrumentation import _asyncpg as asyncpg_metrics
from tests.support.gateway_config import QUIET
from tests.support.promtext import Samples, parse
from tests.support.servers import GatewayProcess, run_gateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SERVICE_LABELS = {"job", "instance"}
LAYERS = (Layer.APPLICATION, Layer.BUSINESS)


def _service_app() -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, int]:
        if user_id == 0:
            raise HTTPException(404)
        return {"id": user_id}

    @app.post("/deploy")
    async def deploy() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/boom")
    async def boom() -> None:
        raise HTTPException(503)

    return app


async def _http_traffic(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        for path, times in [("/users/1", 3), ("/users/2", 2), ("/users/0", 2), ("/nowhere", 1)]:
            for _ in range(times):
                await client.get(path)
        await client.post("/deploy")
        await client.get("/boom")


async def _database_work() -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.fetchval("SELECT 1")
        await conn.fetchval("select 2")
        await conn.execute("CREATE TEMP TABLE catalogue_e2e (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO catalogue_e2e VALUES (1)")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO catalogue_e2e VALUES (1)")
    finally:
        await conn.close()


@dataclass
class Run:
    gateway: Samples
    upstream: Samples
    data: MetricsData


def _drive(endpoint: str) -> MetricsData:
    """The service's traffic, exported once to `endpoint`; returns what an in-memory reader
    on the same provider saw."""
    memory = InMemoryMetricReader()
    handle = setup(
        InstrumentationSettings(
            service_name="catalogue-e2e",
            endpoint=endpoint,
            export_interval_s=3600,
            set_global=False,
        ),
        readers=[memory],
    )
    try:
        app = _service_app()
        instrument_app(app, handle)
        asyncio.run(_http_traffic(app))
        asyncio.run(_database_work())
        m = Meters(handle.meter_provider.get_meter("demo"))
        m.deployment(status="success", type="python", duration_s=12.5)
        m.deployment(status="failed", type="node", duration_s=3.0)
        m.deployment(status="success", type="python", duration_s=40.0)
        m.websocket_accepted()
        m.websocket_accepted()
        m.websocket_rejected()
        m.websocket_closed()
        m.error(type="BuildFailed", service="builder", severity="warning")
        m.user_activity(action="deploy", plan_type="premium")
        m.user_activity(action="deploy", plan_type="premium")
        m.feature_used(feature="runtime_python", user_type="free")
        m.resource_cost(resource_type="compute", plan="premium", amount_usd=0.125)
        m.resource_cost(resource_type="compute", plan="premium", amount_usd=0.25)
        m.observe_plan_distribution(lambda: {"free": 6, "premium": 3, "team": 1})
        data = memory.get_metrics_data()
        assert data is not None
        assert handle.force_flush()
        return data
    finally:
        handle.shutdown()
        asyncpg_metrics.unbind(handle.meter_provider)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("catalogue")
    # The upstream translates without views, as a Collector's Prometheus exporter would.
    with run_gateway(tmp, config=QUIET + "views: []\n", grpc=False) as upstream:
        config = QUIET + f"forwarder:\n  endpoint: {upstream.url}\n"
        with run_gateway(tmp, config=config, grpc=False) as gw:
            data = _drive(gw.url)
            api = by_name("api.requests").prometheus_name()

            def arrived(server: GatewayProcess) -> Callable[[], bool]:
                return lambda: bool(parse(httpx.get(server.url + "/metrics").text).all(api))

            eventually(arrived(gw))
            eventually(arrived(upstream))
            yield Run(
                parse(httpx.get(gw.url + "/metrics").text),
                parse(httpx.get(upstream.url + "/metrics").text),
                data,
            )


# ------------------------------------------------------------------ expected values by hand


def _points(data: MetricsData, name: str) -> list[Any]:
    out = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    out.extend(metric.data.data_points)
    return out


def _status_class(code: int) -> str:
    return f"{code // 100}xx"


def expected(data: MetricsData) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Catalogue Prometheus sample name -> labels -> value."""
    out: dict[str, dict[frozenset[tuple[str, str]], float]] = {}

    def add(metric: str, labels: dict[str, str], value: float, suffix: str = "") -> None:
        name = by_name(metric).prometheus_name() + suffix
        key = frozenset(labels.items())
        out.setdefault(name, {})
        out[name][key] = out[name].get(key, 0) + value

    for p in _points(data, "http.server.request.duration"):
        a = p.attributes
        method, endpoint = a["http.request.method"], a.get("http.route", "unknown")
        status = _status_class(a["http.response.status_code"])
        add("api.requests", {"method": method, "endpoint": endpoint, "status": status}, p.count)
        add("api.duration", {"method": method, "endpoint": endpoint}, p.count, "_count")
        add("api.duration", {"method": method, "endpoint": endpoint}, p.sum, "_sum")
    for p in _points(data, "http.server.active_requests"):
        add("api.active_requests", {"method": p.attributes["http.request.method"]}, p.value)
    for p in _points(data, "db.client.operation.duration"):
        a = p.attributes
        labels = {
            "operation": a["db.operation.name"],
            "outcome": "error" if "error.type" in a else "success",
        }
        add("db.operation.duration", labels, p.count, "_count")
        add("db.operation.duration", labels, p.sum, "_sum")
    for metric in CATALOGUE:
        if metric.layer not in LAYERS:
            continue
        for p in _points(data, metric.otel_name(DEFAULT_NAMESPACE)):
            labels = {k: str(v) for k, v in p.attributes.items()}
            if metric.kind is Kind.HISTOGRAM:
                add(metric.name, labels, p.count, "_count")
                add(metric.name, labels, p.sum, "_sum")
            else:
                add(metric.name, labels, p.value)
    return out


# ------------------------------------------------------------------ tests


def _catalogue() -> list[Metric]:
    return [m for m in CATALOGUE if m.layer in LAYERS]


def _sample_names(metric: Metric) -> list[str]:
    base = metric.prometheus_name()
    if metric.kind is Kind.HISTOGRAM:
        return [base + "_bucket", base + "_count", base + "_sum"]
    return [base]


def _check(samples: Samples, data: MetricsData) -> None:
    want = expected(data)
    for metric in _catalogue():
        for name in _sample_names(metric):
            found = samples.all(name)
            assert found, f"{name} missing"
            allowed = set(metric.labels) | SERVICE_LABELS | ({"le"} if "_bucket" in name else set())
            for labels, _ in found:
                assert set(labels) == allowed, (name, labels)
                assert labels["job"] == "coderunner/catalogue-e2e"
            if name in want:
                got = {
                    frozenset((k, v) for k, v in labels.items() if k not in SERVICE_LABELS): value
                    for labels, value in found
                }
                assert got.keys() == want[name].keys(), name
                for key, value in want[name].items():
                    assert got[key] == pytest.approx(value, rel=1e-12), (name, key)
    # No semantic-convention name is left over: the views replaced them.
    assert not [n for n in samples.names() if n.startswith(("http_", "db_client"))]


def test_every_catalogue_metric_arrives_with_its_labels_and_values(run: Run) -> None:
    _check(run.gateway, run.data)


def test_the_traffic_covers_the_mappings(run: Run) -> None:
    """Guards the test itself: the status classes and the unknown route were exercised."""
    requests = run.gateway.all(by_name("api.requests").prometheus_name())
    statuses = {labels["status"] for labels, _ in requests}
    assert statuses == {"2xx", "4xx", "5xx"}
    assert any(labels["endpoint"] == "unknown" for labels, _ in requests)
    db = run.gateway.all(by_name("db.operation.duration").prometheus_name() + "_count")
    assert {(lb["operation"], lb["outcome"]) for lb, _ in db} >= {
        ("SELECT", "success"),
        ("INSERT", "success"),
        ("INSERT", "error"),
    }


def test_forwarded_otlp_translates_to_the_same_catalogue(run: Run) -> None:
    _check(run.upstream, run.data)
    for metric in _catalogue():
        for name in _sample_names(metric):
            ours = {frozenset(lb.items()): v for lb, v in run.gateway.all(name)}
            theirs = {frozenset(lb.items()): v for lb, v in run.upstream.all(name)}
            assert ours == theirs, name
