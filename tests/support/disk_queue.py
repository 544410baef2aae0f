"""For the disk-queue tests: an upstream nothing listens on, requests that make the queue
grow, and a queue file damaged on purpose."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.otlp import DELTA, Req
from tests.support.servers import free_port


def dead_upstream() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def padded_delta_request(i: int) -> bytes:
    """A delta +1 on `hits`, plus 300 gauge points that make the queue grow (~15 KB)."""
    req = Req(service="disk").sum("hits", [({}, 1, i, i + 1)], temporality=DELTA, monotonic=True)
    req.gauge("pad", [({"k": f"{j:03d}" + "x" * 20}, float(i), i + 1) for j in range(300)])
    return req.bytes()


def damaged_queue(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE entries (id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL, "
        "points INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)"
    )
    db.executemany(
        "INSERT INTO entries (payload, points) VALUES (?, 1)",
        [(bytes([n]) * 3000,) for n in range(200)],
    )
    db.commit()
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[20 * page : 21 * page] = b"\xde\xad" * (page // 2)
    path.write_bytes(bytes(data))
