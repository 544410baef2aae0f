"""DiskQueue: order, bounds, policies, and what survives closing and reopening the file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.exporters.disk_queue import DiskQueue, QueueInUse, QueuePathError
from gateway.exporters.queue import Entry


def entry(n: int, size: int = 10, points: int = 1) -> Entry:
    return Entry(n.to_bytes(4, "big") + b"x" * (size - 4), points)


def numbers(entries: list[Entry]) -> list[int]:
    return [int.from_bytes(e.payload[:4], "big") for e in entries]


@pytest.fixture(autouse=True)
def _close_queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every queue a test opened (its database and its lock file) when it ends."""
    opened: list[DiskQueue] = []
    original = DiskQueue.__init__

    def init(self: DiskQueue, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(DiskQueue, "__init__", init)
    yield
    for q in opened:
        q.close()


def crash(q: DiskQueue) -> None:
    """What a dying process leaves: its database as it is, its flock released."""
    q._lock.close()


def test_fifo_peek_ack(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_bytes=10_000)
    for n in range(10):
        assert q.offer(entry(n, points=2))
    assert len(q) == 10 and q.points == 20 and q.bytes_used == 100
    batch = q.peek(max_points=7)  # 3 entries of 2 points; a 4th would make 8
    assert numbers(batch) == [0, 1, 2]
    assert numbers(q.peek(max_points=7)) == [0, 1, 2], "peek does not remove"
    q.ack(3)
    assert numbers(q.peek(max_points=100)) == list(range(3, 10))
    assert len(q) == 7 and q.points == 14


def test_peek_returns_at_least_one_entry(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_bytes=10_000)
    q.offer(entry(1, points=50))
    assert numbers(q.peek(max_points=10)) == [1]


def test_peek_walks_past_one_step_of_rows(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_bytes=1_000_000)
    for n in range(600):
        q.offer(entry(n))
    assert numbers(q.peek(max_points=10_000)) == list(range(600))


def test_entries_and_attempts_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "q.db"
    q = DiskQueue(path, max_bytes=10_000)
    for n in range(5):
        q.offer(entry(n, points=3))
    q.peek(max_points=6)
    q.mark_attempted(2)  # sent, then the process died before the ack
    # no close(): a crash does not close the database, but the kernel drops its lock
    crash(q)
    again = DiskQueue(path, max_bytes=10_000)
    assert len(again) == 5 and again.points == 15 and again.bytes_used == 50
    got = again.peek(max_points=100)
    assert numbers(got) == [0, 1, 2, 3, 4]
    assert [e.attempts for e in got] == [1, 1, 0, 0, 0]
    again.ack(5)
    again.close()
    assert len(DiskQueue(path, max_bytes=10_000)) == 0


def test_refuse_policy(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_bytes=100, full_policy="refuse")
    assert q.offer(entry(1, 60)) and q.has_room()
    assert q.offer(entry(2, 45)), "a request admitted before full goes into the headroom"
    assert not q.has_room()
    assert q.offer(entry(3, 10)), "105 < 110: still in the headroom"
    assert q.offer(entry(5, 10)) is False, "115: past the headroom"
    assert q.fill_ratio() == 1.0
    q.peek(10)
    q.ack(1)
    assert q.has_room() and q.offer(entry(4, 60))
    assert numbers(q.peek(10)) == [2, 3, 4]
    assert q.evicted_points() == 0


def test_drop_oldest_policy_spares_entries_being_sent(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_bytes=100, full_policy="drop_oldest")
    for n in range(10):
        assert q.offer(entry(n, 10, points=2))
    assert q.peek(max_points=4) and q.has_room()
    q.offer(entry(10, 30, points=2))  # needs 30 bytes: entries 2, 3, 4 go (0, 1 are in flight)
    assert q.evicted_points() == 6
    assert q.bytes_used == 100
    q.ack(2)
    assert numbers(q.peek(100)) == [5, 6, 7, 8, 9, 10]


def test_ack_without_peek_removes_oldest(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_bytes=1000)
    for n in range(4):
        q.offer(entry(n))
    q.ack(2)
    assert numbers(q.peek(100)) == [2, 3]


def test_unreadable_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    path.write_bytes(b"this is not a database" * 100)
    q = DiskQueue(path, max_bytes=1000)
    assert len(q) == 0 and q.offer(entry(1))
    aside = list(tmp_path.glob("q.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")


def test_file_is_wal_mode(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_bytes=1000)
    q.offer(entry(1))
    mode = sqlite3.connect(tmp_path / "q.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


@pytest.mark.parametrize("policy", ["refuse", "drop_oldest"])
def test_counters_match_the_file_after_mixed_use(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "q.db"
    q = DiskQueue(path, max_bytes=500, full_policy=policy)  # type: ignore[arg-type]
    for n in range(100):
        q.offer(entry(n, 10 + n % 7, points=1 + n % 3))
        if n % 9 == 0:
            got = q.peek(5)
            q.ack(len(got) // 2 + 1)
    crash(q)
    reopened = DiskQueue(path, max_bytes=500)
    assert (len(reopened), reopened.points, reopened.bytes_used) == (
        len(q),
        q.points,
        q.bytes_used,
    )


def test_a_second_process_on_the_same_file_is_refused(tmp_path: Path) -> None:
    """Issue 17, finding 9: two gateways on one file saw phantom entries and a negative
    length. The lock is per open file, so a second open in this process stands for another."""
    path = tmp_path / "q.db"
    q = DiskQueue(path, max_bytes=1000)
    with pytest.raises(QueueInUse, match="in use by another process"):
        DiskQueue(path, max_bytes=1000)
    q.close()
    DiskQueue(path, max_bytes=1000).close()  # free again after close


def test_a_directory_is_not_moved_aside(tmp_path: Path) -> None:
    """Finding 10: a path that is a directory was moved aside as "corrupt"."""
    (tmp_path / "q.db").mkdir()
    with pytest.raises(QueuePathError, match="is a directory"):
        DiskQueue(tmp_path / "q.db", max_bytes=1000)
    assert (tmp_path / "q.db").is_dir() and not list(tmp_path.glob("q.db.corrupt-*"))


def test_an_empty_file_starts_a_queue_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "q.db").write_bytes(b"")
    with caplog.at_level("WARNING"):
        q = DiskQueue(tmp_path / "q.db", max_bytes=1000)
    assert len(q) == 0 and q.offer(entry(1))
    assert "empty file" in caplog.text
    q.close()


def test_a_damaged_page_is_moved_aside_not_a_crash_at_start(tmp_path: Path) -> None:
    """Finding 10: a damaged interior page crash-looped the gateway at start (the first query
    to touch it raised). quick_check finds it at open."""
    path = tmp_path / "q.db"
    q = DiskQueue(path, max_bytes=10_000_000)
    for n in range(200):
        q.offer(Entry(bytes([n % 251]) * 3000, 1))
    q.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 40 * page
    data[20 * page : 21 * page] = b"\xde\xad" * (page // 2)  # one page in the middle
    path.write_bytes(bytes(data))
    q = DiskQueue(path, max_bytes=10_000_000)
    assert len(q) == 0 and q.corrupt_files == 1 and q.offer(entry(1))
    assert len(list(tmp_path.glob("q.db.corrupt-*"))) == 1
    q.close()


def test_a_failed_write_refuses_until_a_probe_write_succeeds(tmp_path: Path) -> None:
    """Finding 8: a full disk. The failed append is not taken; has_room() stays false (so the
    receivers refuse before the store) until a probe write succeeds."""
    now = [0.0]
    q = DiskQueue(tmp_path / "q.db", max_bytes=10_000, clock=lambda: now[0])
    assert q.offer(entry(1))
    q._db.execute("PRAGMA query_only=1")  # every write fails from here, as on a full disk
    assert not q.offer(entry(2))
    assert q.write_error is not None and len(q) == 1
    now[0] += 5
    assert not q.has_room()  # the probe fails too
    q._db.execute("PRAGMA query_only=0")
    assert not q.has_room()  # within a second of the last probe: no new probe yet
    now[0] += 5
    assert q.has_room() and q.write_error is None
    assert q.offer(entry(3)) and len(q) == 2
    q.close()
