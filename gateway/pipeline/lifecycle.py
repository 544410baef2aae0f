"""One lifecycle for every component: `start()`, then `shutdown(deadline)`, where `deadline`
is a `time.monotonic()` instant the whole gateway must be down by. `Lifecycle` starts a list
in order (consumers first: what a producer hands data to must already run) and stops it in
reverse (producers first, so that nothing is dropped on the way down), each component within
the deadline, one failing component not keeping the others from stopping.

Components whose own `shutdown` takes no deadline, or a grace period in seconds, join the list
through `Untimed` and `Graceful`; a new component implements `Timed` directly.

Worked example, a 10 s deadline: the gRPC receiver (`Graceful(share=0.25)`) gets a quarter of
the 10 s for its in-flight calls, say it uses 2 s; the forwarder (`Graceful(margin=1.0)`) then
gets the 8 s left minus 1 s for closing its connections, 7 s to flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["Graceful", "Lifecycle", "Timed", "Untimed", "cancel"]

log = logging.getLogger(__name__)


@runtime_checkable
class Timed(Protocol):
    """The lifecycle contract: shutdown is safe twice and without start, and flushes
    downstream what the component still holds, by `deadline` (monotonic seconds)."""

    async def start(self) -> None: ...

    async def shutdown(self, deadline: float) -> None: ...


class _Startable(Protocol):
    async def start(self) -> None: ...


class _Untimed(_Startable, Protocol):
    async def shutdown(self) -> None: ...


class _Graceful(_Startable, Protocol):
    async def shutdown(self, grace_seconds: float = ...) -> None: ...


class Untimed:
    """A component whose shutdown is quick and takes no deadline (a timer task to cancel)."""

    def __init__(self, component: _Untimed) -> None:
        self.component = component

    async def start(self) -> None:
        await self.component.start()

    async def shutdown(self, deadline: float) -> None:
        await self.component.shutdown()


class Graceful:
    """A component whose shutdown takes a grace period in seconds: it gets `share` of the time
    left until the deadline, less `margin` seconds kept for what stops after it."""

    def __init__(self, component: _Graceful, *, share: float = 1.0, margin: float = 0.0) -> None:
        self.component = component
        self.share = share
        self.margin = margin

    async def start(self) -> None:
        await self.component.start()

    async def shutdown(self, deadline: float) -> None:
        left = max(0.0, deadline - time.monotonic())
        await self.component.shutdown(max(0.0, left * self.share - self.margin))


class Lifecycle:
    """Starts components in order, stops them in reverse within one deadline."""

    def __init__(
        self, components: Sequence[Timed], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.components = tuple(components)
        self._clock = clock
        self._started: list[Timed] = []

    async def start(self) -> None:
        """Starts each component in order; if one fails, those already started are stopped
        (with no time to spare) and the error is raised."""
        for component in self.components:
            try:
                await component.start()
            except BaseException:
                await self.shutdown(self._clock())
                raise
            self._started.append(component)

    async def shutdown(self, deadline: float) -> None:
        """Stops the started components in reverse order. A component that raises is logged
        and the others still stop."""
        while self._started:
            component = self._started.pop()
            await _quietly(component.shutdown(deadline), component)


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancels a component's background task (a poll loop) and waits until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _quietly(stopping: Awaitable[None], component: object) -> None:
    try:
        await stopping
    except Exception:
        log.exception("shutdown of %s failed", type(component).__name__)
