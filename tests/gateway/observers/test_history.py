from __future__ import annotations

import gc
import tracemalloc

import pytest

from gateway.observers.history import History
from gateway.observers.reading import Reading


def reading(i: int) -> Reading:
    # distinct float objects every time, as real readings have
    return Reading(i * 10**9, (), 10.0 + i / 7, 0.5 + i / 1e6, i / 3)


def test_ring_never_exceeds_maxlen_and_keeps_the_newest() -> None:
    h = History(maxlen=5)
    for i in range(1, 23):
        h.record(reading(i))
        assert len(h) == min(i, 5)
    assert [p.time_unix_nano for p in h.points()] == [i * 10**9 for i in range(18, 23)]
    assert h.latest is not None and h.latest.time_unix_nano == 22 * 10**9


def test_points_since() -> None:
    h = History(maxlen=10)
    for i in range(10):
        h.record(reading(i))
    assert [p.time_unix_nano for p in h.points(since_unix_nano=7 * 10**9)] == [
        7 * 10**9,
        8 * 10**9,
        9 * 10**9,
    ]


def test_size_estimate_is_bounded_by_maxlen() -> None:
    h = History(maxlen=181)  # 15 minutes at 5 s
    for i in range(181):
        h.record(reading(i))
    full = h.size_bytes()
    for i in range(181, 2000):
        h.record(reading(i))
    assert h.size_bytes() <= full * 1.05
    # four fields a point: well under 200 bytes each, plus the deque itself
    assert full < 181 * 200 + 4096


def test_real_memory_stops_growing_once_full() -> None:
    h = History(maxlen=200)
    for i in range(200):
        h.record(reading(i))
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(200, 400):  # every entry now allocated while traced
            h.record(reading(i))
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        for i in range(400, 5400):
            h.record(reading(i))
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 5000 more records, and the ring holds what it held: growth is noise, not 5000 points
    assert after - before < 20_000


def test_maxlen_must_be_positive() -> None:
    with pytest.raises(ValueError):
        History(maxlen=0)


def test_network_totals_are_summed_over_interfaces_by_direction() -> None:
    from gateway.catalogue import by_name
    from gateway.observers.reading import Series

    net = Series(
        by_name("system.network.io"),
        [
            ({"interface": "eth0", "direction": "receive"}, 100.0),
            ({"interface": "eth0", "direction": "transmit"}, 40.0),
            ({"interface": "eth1", "direction": "receive"}, 5.0),
            ({"interface": "eth1", "direction": "transmit"}, 2.0),
        ],
    )
    h = History(maxlen=3)
    h.record(Reading(10**9, (net,), 1.0, 0.5, 0.1))
    h.record(reading(2))  # a cycle whose network read failed
    first, second = h.points()
    assert (first.network_receive_bytes, first.network_transmit_bytes) == (105.0, 42.0)
    assert (second.network_receive_bytes, second.network_transmit_bytes) == (None, None)
