"""Fixtures shared by tests/instrumentation and tests/demo. Tests that start a server or a
subprocess carry `@pytest.mark.integration` in their own module; `make unit` fails one that
does not (tests/support/unit_guard.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentation import Instrumentation, InstrumentationSettings, setup

# Shared by tests/instrumentation and tests/demo: anyio on asyncio, and the instrumentation
# with an in-memory reader.


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def handle(reader: InMemoryMetricReader) -> Iterator[Instrumentation]:
    h = setup(
        InstrumentationSettings(service_name="test-service", export=False, set_global=False),
        readers=[reader],
    )
    yield h
    h.shutdown()
