"""`CircuitBreaker`: one per dependency, shared by its health check and any code that calls it.

Why hand-written (pybreaker 1.4, aiobreaker 1.2 and purgatory 3.0 were evaluated): none has
resilience4j's failure-rate trip over a sliding window, and each misses more. pybreaker trips on
consecutive failures only (`fail_max`), reads the wall clock itself and does async only through
Tornado; aiobreaker, its asyncio fork, has had no release since 2021 and shares those limits;
purgatory is asyncio-first with state-change hooks but trips on a failure count only, lets one
half-open trial through and has no injectable clock. The state machine is small, so it lives
here, with an injected clock for tests.

States and transitions (resilience4j's model, count-based window):

    closed --(N consecutive failures, or failure rate >= R over the last W calls)--> open
    open --(cooldown elapsed; noticed on the next `state` / `allow()`)--> half_open
    half_open --(K trial calls all succeed)--> closed
    half_open --(any trial fails)--> open (the cooldown starts again)

Worked example, `failure_threshold=3, failure_rate_threshold=0.5, window_size=4,
minimum_calls=4, cooldown_seconds=30, half_open_trials=1`:

    t=0   fail, ok, fail     window [F, T, F]: 3 calls < minimum 4, streak 1 -> closed
    t=1   fail               window [F, T, F, F]: rate 3/4 >= 0.5 -> open (opened at t=1)
    t=10  allow() -> False   still cooling down, the call is refused without reaching the dependency
    t=31  allow() -> True    cooldown over: half_open, this is the one trial
    t=31  success            1 of 1 trials succeeded -> closed, window and streak cleared

Every transition is handed to the listeners as `(breaker name, old state, new state)`;
listeners run synchronously inside the call that caused the transition and must not block.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.health.config import BreakerConfig

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpenError", "TransitionListener"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


TransitionListener = Callable[[str, BreakerState, BreakerState], None]


class CircuitOpenError(Exception):
    """The breaker refused the call: the dependency is presumed down."""

    def __init__(self, name: str, retry_in_seconds: float) -> None:
        super().__init__(f"circuit breaker {name!r} is open; next trial in {retry_in_seconds:.1f}s")
        self.name = name
        self.retry_in_seconds = retry_in_seconds


class CircuitBreaker:
    """Guards calls to one dependency.

    Two ways to use it: `await breaker.call(fn)` (raises `CircuitOpenError` when refused), or
    `allow()` then exactly one of `record_success()` / `record_failure()` / `release()` for a
    call that was allowed.
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        listeners: tuple[TransitionListener, ...] = (),
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self._clock = clock
        self._listeners: list[TransitionListener] = list(listeners)
        self._state = BreakerState.CLOSED
        # True = success, over the last window_size calls made while closed
        self._window: deque[bool] = deque(maxlen=self.config.window_size)
        self._streak = 0  # consecutive failures while closed
        self._opened_at = 0.0
        self._trials_started = 0
        self._trials_succeeded = 0

    # -- observation ----------------------------------------------------------------------

    def add_listener(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        """The current state; moves open -> half_open once the cooldown is over."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.config.cooldown_seconds
        ):
            self._trials_started = 0
            self._trials_succeeded = 0
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when it is not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.config.cooldown_seconds - self._clock())

    @property
    def consecutive_failures(self) -> int:
        return self._streak

    def failure_rate(self) -> float | None:
        """Share of failures in the window, or None while it holds fewer than minimum_calls."""
        if len(self._window) < self.config.minimum_calls:
            return None
        return self._window.count(False) / len(self._window)

    # -- the call protocol ----------------------------------------------------------------

    def allow(self) -> bool:
        """May a call go to the dependency now? In half_open this takes one of the K trials."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        if self._trials_started < self.config.half_open_trials:
            self._trials_started += 1
            return True
        return False

    def record_success(self) -> None:
        state = self._state
        if state is BreakerState.CLOSED:
            self._streak = 0
            self._window.append(True)
        elif state is BreakerState.HALF_OPEN:
            self._trials_succeeded += 1
            if self._trials_succeeded >= self.config.half_open_trials:
                self._reset_counts()
                self._transition(BreakerState.CLOSED)
        # OPEN: a call allowed before the breaker opened came back late; it proves little.

    def record_failure(self) -> None:
        state = self._state
        if state is BreakerState.CLOSED:
            self._streak += 1
            self._window.append(False)
            if self._should_trip():
                self._open()
        elif state is BreakerState.HALF_OPEN:
            self._open()
        # OPEN: already open; a late failure must not extend the cooldown.

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` through the breaker. An exception (a timeout included) is a failure; a
        cancellation (the caller went away) proves nothing about the dependency and only gives
        back the half-open trial it may have held."""
        if not self.allow():
            raise CircuitOpenError(self.name, self.retry_in())
        try:
            result = await fn()
        except asyncio.CancelledError:
            self.release()
            raise
        except Exception:
            self.record_failure()
            raise
        self.record_success()
        return result

    def release(self) -> None:
        """An allowed call ended without an outcome: in half_open its trial slot is free again."""
        if self._state is BreakerState.HALF_OPEN and self._trials_started > self._trials_succeeded:
            self._trials_started -= 1

    # -- internals ------------------------------------------------------------------------

    def _should_trip(self) -> bool:
        cfg = self.config
        if cfg.failure_threshold is not None and self._streak >= cfg.failure_threshold:
            return True
        rate = self.failure_rate()
        return (
            cfg.failure_rate_threshold is not None
            and rate is not None
            and rate >= cfg.failure_rate_threshold
        )

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._reset_counts()
        self._transition(BreakerState.OPEN)

    def _reset_counts(self) -> None:
        self._window.clear()
        self._streak = 0
        self._trials_started = 0
        self._trials_succeeded = 0

    def _transition(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if old is new:
            return
        for listener in self._listeners:
            try:
                listener(self.name, old, new)
            except Exception:
                # A broken metrics hook must not change how the breaker behaves.
                _log.exception("circuit breaker listener failed on %s %s->%s", self.name, old, new)
