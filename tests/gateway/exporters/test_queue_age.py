from __future__ import annotations

import time

from gateway.exporters.queue import Entry, MemoryQueue


def test_oldest_age_follows_the_head_of_the_queue() -> None:
    q = MemoryQueue(capacity=3)
    assert q.oldest_age_seconds() is None
    q.offer(Entry(b"a", 1))
    time.sleep(0.05)
    q.offer(Entry(b"b", 1))
    first = q.oldest_age_seconds()
    assert first is not None and first >= 0.05
    q.ack(1)  # the older entry leaves: the age restarts from the second one
    second = q.oldest_age_seconds()
    assert second is not None and second < first
    q.ack(1)
    assert q.oldest_age_seconds() is None
    q.offer(Entry(b"c", 1))
    q.close()
    assert q.oldest_age_seconds() is None
