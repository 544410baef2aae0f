from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentation import Instrumentation, InstrumentationSettings, setup


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def table_prefix() -> str:
    # One prefix per test process and test, so concurrent runs never share tables.
    return f"t{os.getpid()}_{os.urandom(3).hex()}_"


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
