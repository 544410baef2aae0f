"""tracing=True: spans from the stock instrumentors, metrics still only from ours (no doubles)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrumentation import Instrumentation, instrument_app
from tests.support.instrumentation import collect, value_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    AsyncPGInstrumentor().uninstrument()
    provider.shutdown()


async def test_tracing_adds_spans_without_double_metrics(
    handle: Instrumentation,
    reader: InMemoryMetricReader,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    instrument_app(app, handle, tracing=True, tracer_provider=provider)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for i in range(3):
            assert (await c.get(f"/things/{i}")).status_code == 200
    server_spans = [s for s in exporter.get_finished_spans() if s.name == "GET /things/{thing_id}"]
    assert len(server_spans) == 3
    points, _ = collect(reader)
    attrs = {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.route": "/things/{thing_id}",
        "http.response.status_code": 200,
    }
    assert value_of(points, "http.server.request.duration", **attrs).count == 3
    assert "http.server.duration" not in points  # the stock instrumentor's, switched off
