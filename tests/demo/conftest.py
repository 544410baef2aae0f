from __future__ import annotations

import os

import pytest


@pytest.fixture
def table_prefix() -> str:
    # One prefix per test process and test, so concurrent runs never share tables.
    return f"t{os.getpid()}_{os.urandom(3).hex()}_"
