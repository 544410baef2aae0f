"""Polling for a condition that real servers reach in their own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["eventually"]

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
