"""db.client.operation.duration against the real PostgreSQL (127.0.0.1:5432, db `test`)."""

from __future__ import annotations

import os

import asyncpg
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentation import Instrumentation
from instrumentation._asyncpg import operation_name
from tests.support.instrumentation import collect, value_of
from tests.support.postgres import DSN

pytestmark = pytest.mark.anyio

METRIC = "db.client.operation.duration"


@pytest.mark.parametrize(
    ("sql", "op"),
    [
        ("select 1", "SELECT"),
        ("  INSERT INTO t VALUES ($1)", "INSERT"),
        ("-- note\n/* block\n comment */ update t set a=1", "UPDATE"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
        ("", "OTHER"),
        (None, "OTHER"),
    ],
)
def test_operation_name(sql: object, op: str) -> None:
    assert operation_name(sql) == op


@pytest.mark.integration
async def test_operations_counted_by_verb_and_outcome(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    try:
        conn = await asyncpg.connect(DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {DSN} is required for this test: {exc}")
    table = f"instr_test_{os.getpid()}"
    try:
        await conn.execute(f"CREATE TEMP TABLE {table} (id int primary key, name text)")
        await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2)", [(1, "a"), (2, "b")])
        for _ in range(3):
            await conn.fetch(f"SELECT * FROM {table}")
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2
        await conn.fetchrow(f"SELECT name FROM {table} WHERE id = $1", 1)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(f"INSERT INTO {table} VALUES (1, 'dup')")
    finally:
        await conn.close()
    points, metrics = collect(reader)
    pg = {"db.system.name": "postgresql"}
    assert value_of(points, METRIC, **pg, **{"db.operation.name": "CREATE"}).count == 1
    assert value_of(points, METRIC, **pg, **{"db.operation.name": "INSERT"}).count == 1
    assert value_of(points, METRIC, **pg, **{"db.operation.name": "SELECT"}).count == 5
    failed = value_of(
        points,
        METRIC,
        **pg,
        **{"db.operation.name": "INSERT", "error.type": "UniqueViolationError"},
    )
    assert failed.count == 1
    assert metrics[METRIC].unit == "s"


@pytest.mark.integration
async def test_pool_queries_are_counted_once(
    handle: Instrumentation, reader: InMemoryMetricReader
) -> None:
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2, timeout=5)
    try:
        for _ in range(4):
            await pool.fetchval("SELECT 1")
    finally:
        await pool.close()
    points, _ = collect(reader)
    select = {"db.system.name": "postgresql", "db.operation.name": "SELECT"}
    assert value_of(points, METRIC, **select).count == 4


@pytest.mark.integration
async def test_after_shutdown_queries_are_not_recorded(reader: InMemoryMetricReader) -> None:
    from instrumentation import InstrumentationSettings, setup

    h = setup(InstrumentationSettings(export=False, set_global=False), readers=[reader])
    h.shutdown()
    conn = await asyncpg.connect(DSN, timeout=5)
    try:
        assert await conn.fetchval("SELECT 41 + 1") == 42
    finally:
        await conn.close()
