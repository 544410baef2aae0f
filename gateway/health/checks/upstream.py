"""The OTLP upstream: did the forwarder get data through recently, and how full is its queue.

The check reads a forwarder through `UpstreamStatus`, two methods the forwarder implements; it
never calls the upstream itself, so it costs nothing and cannot hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from gateway.health.breaker import CircuitBreaker
from gateway.health.checks._configured import configured_check
from gateway.health.config import UpstreamCheckConfig
from gateway.health.model import Check, CheckOutcome, Observation, Status

__all__ = ["COMPONENT", "UpstreamCheck", "UpstreamStatus", "upstream_check"]

COMPONENT = "otlp_upstream"


@runtime_checkable
class UpstreamStatus(Protocol):
    """What the check needs from the forwarder."""

    def last_success_unix(self) -> float | None:
        """Wall-clock time (seconds since the epoch) of the last batch the upstream accepted;
        None if none yet."""
        ...

    def queue_fill_ratio(self) -> float:
        """Batches waiting as a share of the queue's capacity, 0-1."""
        ...


class UpstreamCheck:
    """Queue fill warns / fails at the configured ratios. A stale last success only counts while
    batches wait: an idle forwarder with an empty queue has nothing to send."""

    def __init__(
        self,
        upstream: UpstreamStatus,
        config: UpstreamCheckConfig,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._upstream = upstream
        self._config = config
        self._wall = wall_clock
        self._started = wall_clock()

    async def __call__(self) -> CheckOutcome:
        cfg = self._config
        fill = float(self._upstream.queue_fill_ratio())
        if fill >= cfg.queue_fail_ratio:
            fill_status = Status.FAIL
        elif fill >= cfg.queue_warn_ratio:
            fill_status = Status.WARN
        else:
            fill_status = Status.PASS
        last = self._upstream.last_success_unix()
        age = self._wall() - (last if last is not None else self._started)
        age_status = Status.PASS
        if fill > 0:
            if age >= cfg.stale_fail_seconds:
                age_status = Status.FAIL
            elif age >= cfg.stale_warn_seconds:
                age_status = Status.WARN
        never = " (no success yet)" if last is None else ""
        # Optional in the protocol: a forwarder whose send loop keeps failing says why.
        failure_of = getattr(self._upstream, "failure", None)
        failure = failure_of() if callable(failure_of) else None
        extra: tuple[Observation, ...] = ()
        if failure:
            extra = (Observation("sendLoop", 1, None, status=Status.FAIL, output=failure),)
        return CheckOutcome.of(
            *extra,
            Observation(
                "queueFill",
                round(fill * 100, 2),
                "percent",
                status=fill_status,
                output=f"forward queue {fill:.0%} full" if fill_status is not Status.PASS else "",
            ),
            Observation(
                "lastSuccessAge",
                round(age, 3),
                "s",
                status=age_status,
                output=f"no successful send for {age:.0f}s{never} while batches wait"
                if age_status is not Status.PASS
                else "",
            ),
        )


def upstream_check(
    config: UpstreamCheckConfig,
    upstream: UpstreamStatus,
    *,
    breaker: CircuitBreaker | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> Check:
    return configured_check(
        COMPONENT,
        UpstreamCheck(upstream, config, wall_clock=wall_clock),
        config,
        component_type="component",
        breaker=breaker or CircuitBreaker(COMPONENT, config.breaker),
    )
