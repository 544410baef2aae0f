"""What a check is and what it reports: `Check`, `CheckOutcome`, `Observation`, `CheckResult`.

The vocabulary is the IETF draft "Health Check Response Format for HTTP APIs"
(draft-inadarei-api-health-check): a status of pass / warn / fail, and per component a list of
observations (`componentId`, `componentType`, `observedValue`, `observedUnit`, `status`, `time`,
`output`) keyed `component:measurement` in the response.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from gateway.health.breaker import BreakerState, CircuitBreaker

__all__ = [
    "Check",
    "CheckFn",
    "CheckOutcome",
    "CheckResult",
    "Observation",
    "Status",
    "worst",
]


class Status(enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def metric_value(self) -> float:
        """`health.check.status`: 1 pass, 0.5 warn, 0 fail."""
        return {"pass": 1.0, "warn": 0.5, "fail": 0.0}[self.value]


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status (pass for none)."""
    return max(statuses, key=_RANK.__getitem__, default=Status.PASS)


ObservedValue = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Observation:
    """One measurement of a component, e.g. `Observation("responseTime", 3.2, "ms")`."""

    #: the part after the colon in the response key: "responseTime", "connections"
    measurement: str
    value: ObservedValue = None
    #: "ms", "percent", "connections", ... (None: left out)
    unit: str | None = None
    #: this observation's own status (None: the check's)
    status: Status | None = None
    #: why it is not pass, for people (left out on pass, as the draft asks)
    output: str = ""
    #: a unique id of the component instance (None: left out)
    component_id: str | None = None


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """What a check function returns. Raising an exception is a `fail` with its message."""

    status: Status = Status.PASS
    observations: tuple[Observation, ...] = ()
    output: str = ""

    @classmethod
    def of(cls, *observations: Observation, output: str = "") -> CheckOutcome:
        """Status = the worst of the observations' statuses."""
        status = worst(o.status or Status.PASS for o in observations)
        return cls(status, observations, output)


CheckFn = Callable[[], Awaitable["CheckOutcome | Status | None"]]


@dataclass(frozen=True, slots=True)
class Check:
    """A named check, run in the background by `HealthRegistry`.

    `fn` returns a `CheckOutcome`, a bare `Status`, or None (pass); it raises to fail.
    """

    #: the component name, used as the `component` metric label: "postgresql", "redis", ...
    name: str
    fn: CheckFn
    #: a run taking longer fails; nobody waits for it
    timeout: float = 5.0
    #: seconds between runs
    interval: float = 30.0
    #: a failing required check makes /ready and /health answer 503
    required: bool = False
    #: the draft's componentType: "datastore", "system", "component" or a URI
    component_type: str = "component"
    #: the dependency's circuit breaker (None: the check has none)
    breaker: CircuitBreaker | None = None
    #: frees what the check holds (a pool, a client) at shutdown; by default the `close()`
    #: of a check object that has one (`PostgresCheck`, `RedisCheck`)
    close: Callable[[], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        if self.close is None and inspect.iscoroutinefunction(getattr(self.fn, "close", None)):
            object.__setattr__(self, "close", self.fn.close)  # type: ignore[attr-defined]
        if not self.name or ":" in self.name:
            raise ValueError(f"check name {self.name!r} must be non-empty and without ':'")
        if self.timeout <= 0 or self.interval <= 0:
            raise ValueError(f"check {self.name!r}: timeout and interval must be positive")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The last run of a check, as the probes serve it."""

    name: str
    status: Status
    required: bool
    component_type: str
    observations: tuple[Observation, ...] = ()
    output: str = ""
    #: how long the run took (the timeout when it timed out; 0 when the breaker refused it)
    duration_seconds: float = 0.0
    #: wall-clock time of the run, seconds since the epoch
    time_unix: float = 0.0
    #: the breaker's state after the run (None: no breaker)
    breaker_state: BreakerState | None = None
    #: False until the check has run once
    ran: bool = field(default=True)
