"""`configured_check`: a `Check` from a check's config section, the same way for every check."""

from __future__ import annotations

from typing import Protocol

from gateway.health.breaker import CircuitBreaker
from gateway.health.model import Check, CheckFn

__all__ = ["configured_check"]


class _Settings(Protocol):
    @property
    def interval_seconds(self) -> float: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def required(self) -> bool: ...


def configured_check(
    component: str,
    fn: CheckFn,
    config: _Settings,
    *,
    component_type: str,
    breaker: CircuitBreaker | None = None,
) -> Check:
    """`fn` run as the config says (interval, timeout, required), behind `breaker` if any.
    A check object with an async `close()` is closed at shutdown (see `Check`)."""
    return Check(
        component,
        fn,
        timeout=config.timeout_seconds,
        interval=config.interval_seconds,
        required=config.required,
        component_type=component_type,
        breaker=breaker,
    )
