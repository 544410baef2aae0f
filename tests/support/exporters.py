"""Debian's PostgreSQL and Redis exporters on free ports, pointed at the test machine's real
PostgreSQL (127.0.0.1:5432, user postgres, database test) and Redis (127.0.0.1:6379), as
compose runs them beside prometheus/prometheus.yml's `postgres` and `redis` jobs."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import ServerProcess, _spawn, free_port

__all__ = ["POSTGRES_DSN", "REDIS_URL", "postgres_exporter", "redis_exporter"]

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"
REDIS_URL = "redis://127.0.0.1:6379"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make system-deps`")
    return path


@contextlib.contextmanager
def postgres_exporter(tmp: Path, dsn: str = POSTGRES_DSN) -> Iterator[ServerProcess]:
    """prometheus-postgres-exporter; yields once /metrics answers (pg_up says whether it
    reaches the database)."""
    port = free_port()
    argv = [_binary("prometheus-postgres-exporter"), f"--web.listen-address=127.0.0.1:{port}"]
    env = {**os.environ, "DATA_SOURCE_NAME": dsn}
    log = tmp / f"postgres-exporter-{port}.log"
    with _spawn(argv, log, f"http://127.0.0.1:{port}", "/metrics", env=env) as server:
        yield server


@contextlib.contextmanager
def redis_exporter(tmp: Path, url: str = REDIS_URL) -> Iterator[ServerProcess]:
    """prometheus-redis-exporter; yields once /metrics answers."""
    port = free_port()
    argv = [
        _binary("prometheus-redis-exporter"),
        f"-redis.addr={url}",
        f"-web.listen-address=127.0.0.1:{port}",
    ]
    log = tmp / f"redis-exporter-{port}.log"
    with _spawn(argv, log, f"http://127.0.0.1:{port}", "/metrics") as server:
        yield server
