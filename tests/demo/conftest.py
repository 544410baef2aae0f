from __future__ import annotations

import os

import pytest

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def table_prefix() -> str:
    # One prefix per test process and test, so concurrent runs never share tables.
    return f"t{os.getpid()}_{os.urandom(3).hex()}_"
