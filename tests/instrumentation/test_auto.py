"""The zero-code entry points in-process: what `opentelemetry-instrument` runs before the app is
imported (the real launcher, with uvicorn and gunicorn workers, is tested end to end in
tests/integration/test_instrumentation_distribution.py)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from starlette.applications import Starlette

from instrumentation import Instrumentation, instrument_app
from instrumentation._auto import AppInstrumentor, GatewayConfigurator, GatewayDistro
from tests.support.instrumentation import collect

pytestmark = pytest.mark.anyio


@pytest.fixture
def instrumentor() -> Iterator[AppInstrumentor]:
    inst = AppInstrumentor()
    inst.instrument()
    yield inst
    inst.uninstrument()


def test_the_package_declares_the_three_entry_points() -> None:
    found = {
        group: {ep.value for ep in entry_points(group=group)}
        for group in (
            "opentelemetry_distro",
            "opentelemetry_configurator",
            "opentelemetry_instrumentor",
        )
    }
    assert "instrumentation._auto:GatewayDistro" in found["opentelemetry_distro"]
    assert "instrumentation._auto:GatewayConfigurator" in found["opentelemetry_configurator"]
    assert "instrumentation._auto:AppInstrumentor" in found["opentelemetry_instrumentor"]


async def test_apps_built_after_instrument_are_instrumented_once(
    instrumentor: AppInstrumentor, handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    app = FastAPI()

    @app.get("/x")
    async def x() -> str:
        return "x"

    assert app.state._instrumentation_app.automatic
    assert Starlette().state._instrumentation_app.automatic
    # The app's own instrument_app() call configures it instead of failing or adding a layer.
    instrument_app(app, handle)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for _ in range(3):
            assert (await c.get("/x")).status_code == 200
    points, _ = collect(reader)
    assert sum(p.count for _, p in points["http.server.request.duration"]) == 3
    with pytest.raises(RuntimeError, match="already"):
        instrument_app(app, handle)


def test_uninstrument_restores_the_classes(instrumentor: AppInstrumentor) -> None:
    instrumentor.uninstrument()
    assert getattr(FastAPI().state, "_instrumentation_app", None) is None
    instrumentor.instrument()  # the fixture uninstruments again


def test_sdk_disabled_instruments_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    inst = AppInstrumentor()
    inst.instrument()
    try:
        assert getattr(FastAPI().state, "_instrumentation_app", None) is None
    finally:
        inst.uninstrument()


def test_the_distro_keeps_the_stock_instrumentors_out() -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    stock = EntryPoint(
        name="fastapi",
        value="opentelemetry.instrumentation.fastapi:FastAPIInstrumentor",
        group="opentelemetry_instrumentor",
    )
    GatewayDistro().load_instrumentor(stock, skip_dep_check=True)
    assert not FastAPIInstrumentor().is_instrumented_by_opentelemetry


def test_the_configurator_refuses_an_unsupported_protocol_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="http/json"):
        GatewayConfigurator().configure()
