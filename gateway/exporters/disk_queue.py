"""`DiskQueue`: the forwarder's durable queue, one SQLite file in WAL mode.

Why SQLite and not a hand-written segment log: a table of (id, payload, points, attempts) in a
WAL-mode database gives atomic appends, atomic removal of delivered entries and recovery after
a crash with no code of our own; `sqlite3` is in the standard library.

Durability. `synchronous=NORMAL` in WAL mode: every commit is written to the WAL file before
`offer` returns, so a killed process (SIGKILL, OOM killer) loses nothing; only an operating
system crash or power loss may lose the last commits, which a sync per request (`FULL`) would
avoid at about a millisecond per request. One offer is one small transaction: an INSERT into
the WAL, no fsync.

At-least-once. The forwarder `peek`s the oldest entries, `mark_attempted` them, sends, and
`ack`s them only after the upstream accepted them (or refused them for good). A crash between
send and ack leaves the entries in place with `attempts > 0`; after the restart they are sent
again, and the forwarder counts their points as possible duplicates.

Bound. `max_bytes` bounds the payload bytes held (the file is a little larger: SQLite pages, the
WAL, which `journal_size_limit` trims after checkpoints). When full, the `refuse` policy makes
`has_room()` false, so the receivers answer "retry later" before reading a body. Requests that
passed that check while there was room are still being read and decoded; they were promised
delivery, so `offer` takes them into a headroom of a tenth of `max_bytes` and only refuses
(the caller counts a drop) beyond it. The `drop_oldest` policy deletes the oldest entries that
are not being sent and counts their points.

One process per file. An exclusive `flock` on `<path>.lock` is taken at open and held until
`close`: two gateways on one file once saw each other's rows as phantom entries, counted a
negative length and stopped forwarding. The second one now refuses to start (`QueueInUse`).

Damage. At open, `PRAGMA quick_check` reads every page: a file SQLite cannot open, or one with a
damaged page, is renamed `<path>.corrupt-<time>` with an error in the log, counted
(`corrupt_files`, the `gateway.forward.queue.corrupt` self-metric), and the queue starts
empty, rather than the gateway failing at every start. A path that is a directory is a
configuration error, not damage.

A full disk. When an append fails (SQLITE_FULL, an I/O error), the entry is not taken (the
caller counts its points as dropped), `write_error` says why, and `has_room()` is false, so the
receivers answer 503 + Retry-After *before* the next request touches the series store: a client
that retries then does not count its points twice. `has_room()` probes with a small write at
most once a second and clears the error when it succeeds.

Example, with max_bytes=100 and refuse:
    offer(60 B) -> True, has_room() -> True (60 < 100)
    offer(45 B) -> True, has_room() -> False (105 >= 100)
    offer(10 B) -> True (admitted earlier: 105 < 110, the headroom's end)
    offer(10 B) -> False (115 >= 110)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal

from gateway.exporters.queue import Entry

__all__ = ["DiskQueue", "QueueInUse", "QueuePathError"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload BLOB NOT NULL,
    points INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
)
"""
# Rows fetched per step while peeking; peek stops at max_points anyway.
_PEEK_STEP = 256
# After a failed write, how often `has_room` tries a small write to see if space came back.
_PROBE_SECONDS = 1.0


class QueueInUse(Exception):
    """Another process holds the queue file's lock."""


class QueuePathError(Exception):
    """The queue path cannot be a queue file (a directory, say)."""


class DiskQueue:
    """A `ForwardQueue` that survives restarts. Not thread-safe: the event loop's thread only."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int,
        full_policy: Literal["refuse", "drop_oldest"] = "refuse",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.capacity = max_bytes
        #: what `offer` takes in the refuse policy: room for requests admitted before full
        self._hard_cap = max_bytes + max_bytes // 10
        self._policy = full_policy
        self._clock = clock
        #: damaged files moved aside at open (0 or 1 per queue)
        self.corrupt_files = 0
        #: why the last append failed, until a write succeeds again
        self.write_error: str | None = None
        self._last_probe = 0.0
        if self.path.is_dir():
            raise QueuePathError(f"queue.path {str(self.path)!r} is a directory, not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock()
        try:
            self._db = self._open()
            row = self._totals()
        except BaseException:
            self._lock.close()
            raise
        self._count, self._bytes, self._points = row
        self._evicted = 0
        #: (id, bytes, points) of the entries the last `peek` handed out, oldest first
        self._inflight: list[tuple[int, int, int]] = []
        if self._count:
            log.info(
                "disk queue %s: %d entries (%d points, %d bytes) from before the restart",
                self.path,
                self._count,
                self._points,
                self._bytes,
            )

    def _take_lock(self) -> IO[bytes]:
        lock = open(f"{self.path}.lock", "ab")  # noqa: SIM115 - held open until close()
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise QueueInUse(
                f"queue.path {str(self.path)!r} is in use by another process (its lock "
                f"{self.path}.lock is held): give each gateway its own queue file"
            ) from None
        return lock

    def _totals(self) -> tuple[int, int, int]:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(SUM(points), 0) "
            "FROM entries"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def _open(self) -> sqlite3.Connection:
        existed = self.path.exists()
        if existed and self.path.stat().st_size == 0:
            log.warning("disk queue %s is an empty file (0 bytes): starting a new queue", self.path)
        try:
            return self._connect(check=existed)
        except sqlite3.DatabaseError as exc:
            # A file that is not a database, or has a damaged page: keep it for inspection and
            # start empty, rather than failing at every start.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error(
                "disk queue %s is damaged (%s): moved to %s, starting with an empty queue "
                "(its entries are not forwarded)",
                self.path,
                exc,
                aside,
            )
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            self.corrupt_files += 1
            return self._connect(check=False)

    def _connect(self, *, check: bool) -> sqlite3.Connection:
        # isolation_level=None: autocommit, transactions are explicit where several statements
        # must be atomic.
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA journal_size_limit=67108864")
            db.execute(_SCHEMA)
            if check:
                # Reads every page: a damaged one found now is set aside; found later, it would
                # fail every start at the first query that touches it.
                result = db.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {result}")
            db.execute("SELECT COUNT(*), SUM(LENGTH(payload)), SUM(points) FROM entries").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    # ------------------------------------------------------------------ ForwardQueue

    def __len__(self) -> int:
        return self._count

    @property
    def bytes_used(self) -> int:
        return self._bytes

    @property
    def points(self) -> int:
        return self._points

    def has_room(self) -> bool:
        if self.write_error is not None and not self._probe():
            return False
        return self._policy == "drop_oldest" or self._bytes < self.capacity

    def _probe(self) -> bool:
        """After a failed write: whether a small write succeeds now (at most once a second)."""
        now = self._clock()
        if now - self._last_probe < _PROBE_SECONDS:
            return False
        self._last_probe = now
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO entries (payload, points) VALUES (zeroblob(4096), 0)")
                self._db.execute(
                    "DELETE FROM entries WHERE points = 0 AND id = last_insert_rowid()"
                )
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self.write_error = f"{exc}"
            return False
        log.warning("disk queue %s: writes succeed again", self.path)
        self.write_error = None
        return True

    def fill_ratio(self) -> float:
        return min(1.0, self._bytes / self.capacity)

    def evicted_points(self) -> int:
        return self._evicted

    def offer(self, entry: Entry) -> bool:
        size = len(entry.payload)
        if self._policy == "refuse":
            if self._bytes >= self._hard_cap:
                return False
        elif self._bytes + size > self.capacity:
            self._evict(self._bytes + size - self.capacity)
        try:
            self._db.execute(
                "INSERT INTO entries (payload, points) VALUES (?, ?)", (entry.payload, entry.points)
            )
        except sqlite3.Error as exc:
            if self.write_error is None:
                log.error(
                    "disk queue %s cannot write (%s): refusing ingest until it can", self.path, exc
                )
            self.write_error = str(exc)
            self._last_probe = self._clock()
            return False
        self._count += 1
        self._bytes += size
        self._points += entry.points
        return True

    def _evict(self, need: int) -> None:
        """Delete the oldest entries not being sent until `need` bytes are free."""
        after = self._inflight[-1][0] if self._inflight else 0
        freed = 0
        victims: list[tuple[int, int, int]] = []
        for row in self._db.execute(
            "SELECT id, LENGTH(payload), points FROM entries WHERE id > ? ORDER BY id", (after,)
        ):
            if freed >= need:
                break
            victims.append(row)
            freed += row[1]
        if not victims:
            return
        self._delete(victims)
        self._evicted += sum(v[2] for v in victims)

    def peek(self, max_points: int) -> list[Entry]:
        out: list[Entry] = []
        self._inflight = []
        total = 0
        last = 0
        while True:
            rows = self._db.execute(
                "SELECT id, payload, points, attempts FROM entries WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (last, _PEEK_STEP),
            ).fetchall()
            for row_id, payload, points, attempts in rows:
                if out and total + points > max_points:
                    return out
                out.append(Entry(payload, points, attempts))
                self._inflight.append((row_id, len(payload), points))
                total += points
            if len(rows) < _PEEK_STEP:
                return out
            last = rows[-1][0]

    def mark_attempted(self, count: int) -> None:
        ids = [(i,) for i, _, _ in self._inflight[:count]]
        if ids:
            self._db.executemany("UPDATE entries SET attempts = attempts + 1 WHERE id = ?", ids)

    def ack(self, count: int) -> None:
        """Remove the first `count` entries of the last peek (the oldest)."""
        done, self._inflight = self._inflight[:count], self._inflight[count:]
        if len(done) < count:  # acked without a peek: the oldest rows
            done += self._db.execute(
                "SELECT id, LENGTH(payload), points FROM entries WHERE id > ? ORDER BY id LIMIT ?",
                (done[-1][0] if done else 0, count - len(done)),
            ).fetchall()
        self._delete(done)

    def _delete(self, rows: list[tuple[int, int, int]]) -> None:
        if not rows:
            return
        self._db.execute("BEGIN")
        try:
            removed = 0
            for row_id, size, points in rows:
                cur = self._db.execute("DELETE FROM entries WHERE id = ?", (row_id,))
                if cur.rowcount:
                    removed += 1
                    self._bytes -= size
                    self._points -= points
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._count -= removed
        if not self._count:
            self._bytes = self._points = 0

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        self._lock.close()  # releases the flock
