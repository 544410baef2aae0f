"""`HealthMetrics`: a service's health-check results and breaker transitions as OTel metrics.

The gateway writes its own health metrics straight into its pipeline
(`gateway.health.PipelineHealthMetrics`); a service that mounts the health module has no
pipeline, only its MeterProvider, so this listener records the same catalogue metrics with the
provider's instruments and they reach the gateway with everything else the service exports:

    registry.add_listener(HealthMetrics(handle.meter_provider, namespace="coderunner"))

    health.check.status{component}          observable gauge: 1 pass, 0.5 warn, 0 fail
    health.check.duration{component}        observable gauge: seconds the last run took
    circuit_breaker.state{component,state}  observable gauge: 1 for the current state, else 0
    circuit_breaker.transitions{component,from,to}  counter

The gauges are observable: the registry's listener calls (on the event loop) store the latest
values and the SDK reads them at each collection (on the exporter's thread, hence the lock).
A state held for less than one export interval (a half-open trial that passes at once) may not
appear in the state gauge, but its transitions are always counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from gateway.catalogue import DEFAULT_NAMESPACE, Kind, Metric, by_name
from gateway.health.breaker import BreakerState
from gateway.health.model import CheckResult

__all__ = ["HealthMetrics"]

_METER_NAME = "demo.health"
_VERSION = "0.1.0"

#: the transitions a breaker can make (gateway/health/breaker.py's state machine); each is
#: counted from 0 as soon as a breaker is seen, so a rate over the counter sees the first one
_EDGES: tuple[tuple[BreakerState, BreakerState], ...] = (
    (BreakerState.CLOSED, BreakerState.OPEN),
    (BreakerState.OPEN, BreakerState.HALF_OPEN),
    (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    (BreakerState.HALF_OPEN, BreakerState.OPEN),
)


def _entry(name: str, kind: Kind) -> Metric:
    metric = by_name(name)
    if metric.kind is not kind:
        raise RuntimeError(f"catalogue entry {name} is a {metric.kind}, expected {kind}")
    return metric


class HealthMetrics:
    """A `gateway.health.HealthListener` that records with OTel instruments.

    >>> registry.add_listener(HealthMetrics(handle.meter_provider, namespace="coderunner"))
    """

    def __init__(
        self, meter_provider: MeterProvider, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        meter = meter_provider.get_meter(_METER_NAME, _VERSION)
        status = _entry("health.check.status", Kind.GAUGE)
        duration = _entry("health.check.duration", Kind.GAUGE)
        state = _entry("circuit_breaker.state", Kind.GAUGE)
        transitions = _entry("circuit_breaker.transitions", Kind.COUNTER)
        # Label names come from the catalogue entries, never typed here.
        (self._component,) = status.labels
        self._state_labels = state.labels  # (component, state)
        self._edge_labels = transitions.labels  # (component, from, to)
        self._lock = threading.Lock()
        self._status: dict[str, float] = {}
        self._duration: dict[str, float] = {}
        self._breakers: dict[str, BreakerState] = {}
        for entry, values in ((status, self._status), (duration, self._duration)):
            meter.create_observable_gauge(
                entry.otel_name(namespace),
                callbacks=[self._observer(values)],
                unit=entry.unit,
                description=entry.help,
            )
        meter.create_observable_gauge(
            state.otel_name(namespace),
            callbacks=[self._observe_breakers],
            unit=state.unit,
            description=state.help,
        )
        self._transitions = meter.create_counter(
            transitions.otel_name(namespace), unit=transitions.unit, description=transitions.help
        )

    # -- HealthListener (called on the event loop) -----------------------------------------

    def on_result(self, result: CheckResult) -> None:
        with self._lock:
            self._status[result.name] = result.status.metric_value
            self._duration[result.name] = result.duration_seconds
        if result.breaker_state is not None:
            self._set_breaker(result.name, result.breaker_state)

    def on_transition(self, component: str, old: BreakerState, new: BreakerState) -> None:
        self._set_breaker(component, new)
        self._transitions.add(1, self._edge(component, old, new))

    # -- internals -------------------------------------------------------------------------

    def _set_breaker(self, component: str, state: BreakerState) -> None:
        with self._lock:
            first = component not in self._breakers
            self._breakers[component] = state
        if first:
            for old, new in _EDGES:
                self._transitions.add(0, self._edge(component, old, new))

    def _edge(self, component: str, old: BreakerState, new: BreakerState) -> dict[str, str]:
        return dict(zip(self._edge_labels, (component, old.value, new.value), strict=True))

    def _observer(
        self, values: dict[str, float]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                snapshot = list(values.items())
            return [Observation(v, {self._component: name}) for name, v in snapshot]

        return observe

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            snapshot = list(self._breakers.items())
        return [
            Observation(
                1.0 if state is current else 0.0,
                dict(zip(self._state_labels, (component, state.value), strict=True)),
            )
            for component, current in snapshot
            for state in BreakerState
        ]
