"""Polling for a condition that real servers reach in their own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["eventually", "settled"]

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    timeout: float = 15.0,
    what: str | Callable[[], str] = "condition not met in time",
    interval: float = 0.1,
) -> T:
    """Calls `check` until it returns something truthy and returns that; after `timeout` seconds
    fails the test with `what` (a callable is called then, to describe the state at the end).

    >>> eventually(lambda: 42)
    42
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(what() if callable(what) else what)
        time.sleep(interval)


def settled(
    sample: Callable[[], T],
    ready: Callable[[T], bool],
    timeout: float = 15.0,
    settle: float = 0.8,
    interval: float = 0.2,
) -> T:
    """Samples until `ready` holds, waits `settle` seconds more and samples again (an exact
    count must stay exact: nothing may arrive late). After `timeout` it returns the last sample
    instead of failing, so the test's own assertions say what is missing."""
    deadline = time.monotonic() + timeout
    while True:
        value = sample()
        if ready(value):
            time.sleep(settle)
            return sample()
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)
