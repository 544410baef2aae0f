"""`PipelineHealthMetrics`: turns check results and breaker transitions into OTLP batches.

A `HealthListener` that writes the catalogue's health metrics with `BatchBuilder` and hands each
batch to a pipeline `Consumer` (source "health"), so health data takes the same path as a
service's. After every check run it sends `health.check.status` and `health.check.duration`, and
for a check with a breaker `circuit_breaker.state` (one point per state, 1 for the current one)
and the cumulative `circuit_breaker.transitions`; on every breaker transition it sends the
breaker's state and transitions at once, so even a half-open phase that lasts one trial call
shows up in the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.catalogue import DEFAULT_NAMESPACE, by_name
from gateway.health.breaker import BreakerState
from gateway.health.model import CheckResult
from gateway.pipeline import Consumer
from gateway.pipeline.builder import Attributes, BatchBuilder

__all__ = ["PipelineHealthMetrics"]

_log = logging.getLogger(__name__)

_STATUS = by_name("health.check.status")
_DURATION = by_name("health.check.duration")
_STATE = by_name("circuit_breaker.state")
_TRANSITIONS = by_name("circuit_breaker.transitions")

#: the transitions a breaker can make; each is sent from the start (at 0) so that a rate over
#: the counter sees the first increment
_EDGES: tuple[tuple[BreakerState, BreakerState], ...] = (
    (BreakerState.CLOSED, BreakerState.OPEN),
    (BreakerState.OPEN, BreakerState.HALF_OPEN),
    (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    (BreakerState.HALF_OPEN, BreakerState.OPEN),
)

_SCOPE = "gateway.health"


class PipelineHealthMetrics:
    """Health metrics into the pipeline.

    `resource` is the OTLP resource of the batches (the gateway's own `service.name`, or the
    service mounting the health module).
    """

    def __init__(
        self,
        consumer: Consumer,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        resource: Attributes | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._namespace = namespace
        self._resource: Attributes = dict(resource or {"service.name": "telemetry-gateway"})
        self._wall = wall_clock
        self._start_nanos = int(wall_clock() * 1e9)
        # component -> (from, to) -> count, for components that have a breaker
        self._transitions: dict[str, dict[tuple[BreakerState, BreakerState], int]] = {}
        self._states: dict[str, BreakerState] = {}

    def on_result(self, result: CheckResult) -> None:
        now = int(self._wall() * 1e9)
        builder = self._builder()
        attrs = {"component": result.name}
        builder.gauge(
            _STATUS.otel_name(self._namespace),
            _STATUS.unit,
            _STATUS.help,
            [(attrs, result.status.metric_value)],
            now,
        )
        builder.gauge(
            _DURATION.otel_name(self._namespace),
            _DURATION.unit,
            _DURATION.help,
            [(attrs, result.duration_seconds)],
            now,
        )
        if result.breaker_state is not None:
            self._states[result.name] = result.breaker_state
            self._add_breaker(builder, result.name, now)
        self._send(builder)

    def on_transition(self, component: str, old: BreakerState, new: BreakerState) -> None:
        counts = self._transitions.setdefault(component, dict.fromkeys(_EDGES, 0))
        counts[(old, new)] = counts.get((old, new), 0) + 1
        self._states[component] = new
        builder = self._builder()
        self._add_breaker(builder, component, int(self._wall() * 1e9))
        self._send(builder)

    def _builder(self) -> BatchBuilder:
        return BatchBuilder(self._resource, scope=_SCOPE)

    def _add_breaker(self, builder: BatchBuilder, component: str, now: int) -> None:
        current = self._states[component]
        builder.gauge(
            _STATE.otel_name(self._namespace),
            _STATE.unit,
            _STATE.help,
            [
                ({"component": component, "state": s.value}, 1.0 if s is current else 0.0)
                for s in BreakerState
            ],
            now,
        )
        counts = self._transitions.setdefault(component, dict.fromkeys(_EDGES, 0))
        builder.sum(
            _TRANSITIONS.otel_name(self._namespace),
            _TRANSITIONS.unit,
            _TRANSITIONS.help,
            [
                ({"component": component, "from": old.value, "to": new.value}, float(n))
                for (old, new), n in counts.items()
            ],
            start_time_unix_nano=self._start_nanos,
            time_unix_nano=now,
            monotonic=True,
        )

    def _send(self, builder: BatchBuilder) -> None:
        try:
            self._consumer.consume(builder.build(source="health"))
        except Exception:
            # The pipeline refusing health metrics (memory pressure, say) must not stop checks.
            _log.warning("the pipeline refused a health metrics batch", exc_info=True)
