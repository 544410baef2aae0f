"""`HealthRegistry`: runs the checks in the background and answers the probes from memory.

Each check has its own asyncio task: run, store the result, sleep `interval`, again. A probe only
reads the stored results, so it never waits on a dependency; a run that exceeds its `timeout` is
recorded as a failure at the timeout and left to finish its cleanup on its own (a cancelled
asyncpg query, for one, may still be talking to the server).

How a dependency's breaker shapes the status it reports, so one blip does not flap readiness:

    run fails, breaker still closed   -> warn  (failing, below the trip threshold)
    breaker open                      -> fail  (the dependency is not called until the cooldown)
    breaker half_open                 -> fail  (until the trial calls have passed)
    run passes / warns, breaker closed -> that status

A check without a breaker reports its run's status as it is. While a breaker is open the check
sleeps only until the cooldown ends, and half-open trials follow each other quickly, so recovery
takes the cooldown plus the trials, not another full interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.health.breaker import BreakerState
from gateway.health.model import Check, CheckOutcome, CheckResult, Observation, Status, worst

__all__ = ["HealthListener", "HealthRegistry", "Liveness", "Readiness"]

_log = logging.getLogger(__name__)

#: how often the event-loop heartbeat ticks (at most; a quarter of the stall limit when smaller)
_HEARTBEAT_SECONDS = 0.5
#: pause between half-open trials (short: recovery should not wait a whole interval)
_TRIAL_SPACING_SECONDS = 0.1
#: how long shutdown waits for timed-out runs still cleaning up
_ORPHAN_GRACE_SECONDS = 1.0


def _placeholders(previous: CheckResult) -> tuple[Observation, ...]:
    seen: dict[str, Observation] = {}
    for obs in previous.observations:
        seen.setdefault(obs.measurement, Observation(obs.measurement, None, obs.unit))
    return tuple(seen.values())


class HealthListener(Protocol):
    """Told about every check result and every breaker transition (metrics, logs, a service's
    own OTel meters). Called on the event loop; must not block."""

    def on_result(self, result: CheckResult) -> None: ...

    def on_transition(self, component: str, old: BreakerState, new: BreakerState) -> None: ...


@dataclass(frozen=True, slots=True)
class Liveness:
    alive: bool
    #: seconds since the event-loop heartbeat last ticked (0 before start)
    heartbeat_age_seconds: float
    #: how late the last heartbeat tick was: the event loop's recent lag
    loop_lag_seconds: float


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    #: the pipeline accepts data (set by the app: false while starting and shutting down)
    accepting: bool
    #: required checks that have not passed (not run yet, or failing)
    failing: tuple[str, ...]


class HealthRegistry:
    """Checks by name, their background schedule, their last results, and the readiness flag.

    >>> registry = HealthRegistry(service_id="demo", version="1.0")
    >>> registry.add(Check("postgresql", ping_db, timeout=2, required=True))  # doctest: +SKIP
    >>> await registry.start(); registry.set_accepting(True)                  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        service_id: str = "",
        version: str = "",
        description: str = "",
        live_stall_seconds: float = 10.0,
        listeners: Iterable[HealthListener] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service_id = service_id
        self.version = version
        self.description = description
        self._live_stall = live_stall_seconds
        self._beat_every = min(_HEARTBEAT_SECONDS, live_stall_seconds / 4)
        self._listeners: list[HealthListener] = list(listeners)
        self._clock = clock
        self._wall = wall_clock
        self._checks: dict[str, Check] = {}
        self._results: dict[str, CheckResult] = {}
        #: output of each check's last failed run, quoted while its breaker refuses calls
        self._last_error: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._orphans: set[asyncio.Task[object]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._heartbeat = 0.0
        self._loop_lag = 0.0
        self._accepting = False
        self._started = False

    # -- setup ----------------------------------------------------------------------------

    def add(self, check: Check) -> None:
        """Register a check; scheduled at once when the registry is already running."""
        if check.name in self._checks:
            raise ValueError(f"a check named {check.name!r} is already registered")
        self._checks[check.name] = check
        self._results[check.name] = CheckResult(
            check.name,
            Status.WARN,
            check.required,
            check.component_type,
            output="not run yet",
            breaker_state=check.breaker.state if check.breaker else None,
            ran=False,
        )
        if check.breaker is not None:
            check.breaker.add_listener(self._on_transition)
        if self._started:
            self._schedule(check)

    def add_listener(self, listener: HealthListener) -> None:
        self._listeners.append(listener)

    def check(self, name: str) -> Check:
        return self._checks[name]

    @property
    def checks(self) -> Mapping[str, Check]:
        return dict(self._checks)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the heartbeat and every check's schedule; returns at once (checks run in the
        background, so a slow dependency does not delay startup)."""
        if self._started:
            return
        self._started = True
        self._heartbeat = self._clock()
        self._heartbeat_task = asyncio.create_task(self._beat(), name="health-heartbeat")
        for check in self._checks.values():
            self._schedule(check)

    async def shutdown(self) -> None:
        """Not ready any more; stop the schedules; free what the checks hold. Safe twice."""
        self._accepting = False
        tasks = [*self._tasks.values()]
        if self._heartbeat_task is not None:
            tasks.append(self._heartbeat_task)
        self._tasks.clear()
        self._heartbeat_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._orphans:
            for orphan in self._orphans:
                orphan.cancel()
            await asyncio.wait(self._orphans, timeout=_ORPHAN_GRACE_SECONDS)
        if self._started:
            for check in self._checks.values():
                if check.close is not None:
                    try:
                        await asyncio.wait_for(check.close(), _ORPHAN_GRACE_SECONDS)
                    except Exception:
                        _log.exception("closing health check %s failed", check.name)
        self._started = False

    def set_accepting(self, accepting: bool) -> None:
        """The app says whether its pipeline takes data: true once started, false on shutdown."""
        self._accepting = accepting

    # -- results --------------------------------------------------------------------------

    def results(self) -> dict[str, CheckResult]:
        return dict(self._results)

    def status(self) -> Status:
        """Overall: fail if a required check fails; a failing optional check only warns."""
        return worst(
            r.status if r.required or r.status is not Status.FAIL else Status.WARN
            for r in self._results.values()
        )

    def readiness(self) -> Readiness:
        failing = tuple(
            r.name
            for r in self._results.values()
            if r.required and (not r.ran or r.status is Status.FAIL)
        )
        return Readiness(self._accepting and not failing, self._accepting, failing)

    def liveness(self) -> Liveness:
        if self._heartbeat_task is None:
            return Liveness(True, 0.0, 0.0)
        age = self._clock() - self._heartbeat
        alive = age <= self._live_stall and not self._heartbeat_task.done()
        return Liveness(alive, age, self._loop_lag)

    # -- running checks -------------------------------------------------------------------

    async def run_once(self, name: str) -> CheckResult:
        """Run one check now (through its breaker), store and publish the result."""
        check = self._checks[name]
        breaker = check.breaker
        started = self._clock()
        wall = self._wall()
        if breaker is not None and not breaker.allow():
            reason = self._last_error.get(name, "dependency failing")
            outcome = CheckOutcome(
                Status.FAIL,
                output=f"circuit breaker {breaker.state.value}, not calling the dependency "
                f"(next trial in {breaker.retry_in():.1f}s); last error: {reason}",
            )
            duration = 0.0
            called = False
        else:
            outcome = await self._call(check)
            duration = self._clock() - started
            called = True
        if not outcome.observations:
            # Keep the response keys stable ("postgresql:responseTime" does not turn into
            # "postgresql" while it fails): the measurements of the last run, without values.
            outcome = replace(outcome, observations=_placeholders(self._results[name]))
        if called and outcome.status is Status.FAIL:
            self._last_error[name] = outcome.output
        if breaker is not None and called:
            if outcome.status is Status.FAIL:
                breaker.record_failure()
            else:
                breaker.record_success()
        status, output = self._with_breaker(check, outcome)
        result = CheckResult(
            name,
            status,
            check.required,
            check.component_type,
            outcome.observations,
            output,
            duration,
            wall,
            breaker.state if breaker is not None else None,
        )
        previous = self._results[name]
        self._results[name] = result
        self._log_change(previous, result)
        for listener in self._listeners:
            try:
                listener.on_result(result)
            except Exception:
                _log.exception("health listener failed on the result of %s", name)
        return result

    @staticmethod
    def _log_change(previous: CheckResult, result: CheckResult) -> None:
        """One line per change of a check's status, none while it stays the same: a failing
        dependency used to change /ready with nothing in the log (issue 19)."""
        was = previous.status if previous.ran else Status.PASS
        if result.status is was:
            return
        if result.status is Status.PASS:
            _log.info("health: %s recovered (was %s)", result.name, was.value)
            return
        if result.status is Status.FAIL:
            effect = (
                "required: /ready and /health now answer 503"
                if result.required
                else "informational: readiness unaffected"
            )
        else:
            effect = "readiness unaffected"
        level = logging.WARNING if result.status is Status.FAIL else logging.INFO
        # A check that says why only per observation (system: cpu, memory, disk) is
        # described by the observations that are not pass.
        detail = result.output or "; ".join(
            f"{o.measurement}{f' ({o.component_id})' if o.component_id else ''}: "
            f"{o.output or o.value}"
            for o in result.observations
            if o.status is not None and o.status is not Status.PASS
        )
        _log.log(
            level,
            "health: %s %s (%s): %s",
            result.name,
            result.status.value,
            effect,
            detail or "no detail",
        )

    async def _call(self, check: Check) -> CheckOutcome:
        async def run() -> object:
            return await check.fn()

        task: asyncio.Task[object] = asyncio.create_task(run(), name=f"check-{check.name}")
        try:
            done, _ = await asyncio.wait({task}, timeout=check.timeout)
        except asyncio.CancelledError:  # shutdown: let the run clean up within the grace
            task.cancel()
            self._adopt(task)
            raise
        if not done:
            # Do not wait for the cancellation to finish: it may talk to the slow dependency.
            task.cancel()
            self._adopt(task)
            return CheckOutcome(Status.FAIL, output=f"timed out after {check.timeout:g}s")
        exc = task.exception()
        if exc is not None:
            return CheckOutcome(Status.FAIL, output=f"{type(exc).__name__}: {exc}".rstrip(": "))
        value = task.result()
        if value is None:
            return CheckOutcome(Status.PASS)
        if isinstance(value, Status):
            return CheckOutcome(value)
        if isinstance(value, CheckOutcome):
            return value
        return CheckOutcome(
            Status.FAIL, output=f"check returned {type(value).__name__}, not CheckOutcome"
        )

    def _adopt(self, task: asyncio.Task[object]) -> None:
        self._orphans.add(task)
        task.add_done_callback(self._orphan_done)

    def _orphan_done(self, task: asyncio.Task[object]) -> None:
        self._orphans.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.debug("timed-out health check ended with %r", task.exception())

    @staticmethod
    def _with_breaker(check: Check, outcome: CheckOutcome) -> tuple[Status, str]:
        breaker = check.breaker
        if breaker is None:
            return outcome.status, outcome.output
        state = breaker.state
        if state is BreakerState.CLOSED:
            if outcome.status is Status.FAIL:
                return Status.WARN, (
                    f"{outcome.output} ({breaker.consecutive_failures} consecutive failures; "
                    "circuit breaker still closed)"
                )
            return outcome.status, outcome.output
        if outcome.status is Status.FAIL:
            return Status.FAIL, outcome.output
        return Status.FAIL, f"recovering: circuit breaker {state.value}, trial calls pending"

    def _schedule(self, check: Check) -> None:
        self._tasks[check.name] = asyncio.create_task(
            self._loop(check), name=f"health-{check.name}"
        )

    async def _loop(self, check: Check) -> None:
        while True:
            try:
                await self.run_once(check.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("health check %s could not run", check.name)
            await asyncio.sleep(self._next_delay(check))

    @staticmethod
    def _next_delay(check: Check) -> float:
        breaker = check.breaker
        if breaker is None:
            return check.interval
        state = breaker.state
        if state is BreakerState.OPEN:
            return min(check.interval, max(breaker.retry_in(), 0.01))
        if state is BreakerState.HALF_OPEN:
            return min(check.interval, _TRIAL_SPACING_SECONDS)
        return check.interval

    async def _beat(self) -> None:
        while True:
            expected = self._clock() + self._beat_every
            await asyncio.sleep(self._beat_every)
            now = self._clock()
            self._loop_lag = max(0.0, now - expected)
            self._heartbeat = now

    def _on_transition(self, component: str, old: BreakerState, new: BreakerState) -> None:
        for listener in self._listeners:
            try:
                listener.on_transition(component, old, new)
            except Exception:
                _log.exception("health listener failed on a transition of %s", component)
