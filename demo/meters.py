"""The demo platform's typed application and business metrics, named from the catalogue.

These are the coderunner platform's own events (deployments, WebSockets, plans), so they live
with the demo service, not in the `instrumentation` package every service installs; a service
builds its meters the same way on `handle.meter_provider`:

    meters = Meters(handle.meter_provider.get_meter("demo"), namespace="coderunner")


Each instrument is created from its catalogue entry (`otel_name(namespace)`, `unit`, `help`), and
each method's keyword arguments are exactly the entry's labels, so these metrics reach the gateway
under their catalogue names and need no view. Attribute dicts are cached per value tuple: the SDK
hashes the dict on every measurement, but building it is the part we can skip.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from gateway.catalogue import DEFAULT_NAMESPACE, Kind, Metric, by_name

__all__ = ["Meters"]

_log = logging.getLogger("demo")
_MAX_CACHED = 4096  # attribute sets per instrument kept pre-built; beyond it they are built anew

# Build durations span seconds to minutes; the SDK's default buckets (ms-oriented) do not.
_DEPLOYMENT_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _Bound:
    """One instrument plus its catalogue labels and a cache of pre-built attribute dicts."""

    __slots__ = ("_cache", "instrument", "labels", "metric")

    def __init__(self, metric: Metric, instrument: Any) -> None:
        self.metric = metric
        self.instrument = instrument
        self.labels = metric.labels
        self._cache: dict[tuple[str, ...], dict[str, str]] = {}

    def attrs(self, values: tuple[str, ...]) -> dict[str, str]:
        cached = self._cache.get(values)
        if cached is None:
            for label, value in zip(self.labels, values, strict=True):
                if not isinstance(value, str) or not value:
                    raise ValueError(
                        f"{self.metric.name}: label {label!r} needs a non-empty string, "
                        f"got {value!r}"
                    )
            cached = dict(zip(self.labels, values, strict=True))
            if len(self._cache) < _MAX_CACHED:
                self._cache[values] = cached
        return cached


def _check_amount(metric: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{metric}: amount must be a finite number >= 0, got {value!r}")
    return float(value)


class Meters:
    """Application and business metrics.

    >>> meters.deployment(status="success", type="python", duration_s=12.5)
    >>> meters.resource_cost(resource_type="compute", plan="premium", amount_usd=0.03)
    >>> meters.observe_plan_distribution(lambda: {"free": 10, "premium": 3, "team": 1})
    """

    def __init__(self, meter: Meter, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.namespace = namespace
        self._plan_source: Callable[[], Mapping[str, int]] | None = None

        def make(name: str, kind: Kind, **extra: Any) -> _Bound:
            m = by_name(name)
            if m.kind is not kind:
                raise RuntimeError(f"catalogue entry {name} is a {m.kind}, expected {kind}")
            create = {
                Kind.COUNTER: meter.create_counter,
                Kind.UPDOWN: meter.create_up_down_counter,
                Kind.HISTOGRAM: meter.create_histogram,
            }[kind]
            instrument = create(m.otel_name(namespace), unit=m.unit, description=m.help, **extra)
            return _Bound(m, instrument)

        self._deployments = make("deployments", Kind.COUNTER)
        self._deployment_duration = make(
            "deployment.duration",
            Kind.HISTOGRAM,
            explicit_bucket_boundaries_advisory=_DEPLOYMENT_BUCKETS,
        )
        self._ws_events = make("websocket.connections", Kind.COUNTER)
        self._ws_active = make("websocket.active_connections", Kind.UPDOWN)
        self._errors = make("errors", Kind.COUNTER)
        self._activity = make("user.activity", Kind.COUNTER)
        self._features = make("feature.usage", Kind.COUNTER)
        self._costs = make("resource.costs", Kind.COUNTER)
        plan = by_name("plan.distribution")
        self._plan_metric = plan
        meter.create_observable_gauge(
            plan.otel_name(namespace),
            callbacks=[self._observe_plans],
            unit=plan.unit,
            description=plan.help,
        )

    # --- application ---

    def deployment(self, *, status: str, type: str, duration_s: float) -> None:
        """One finished deployment: counted by (status, type), its duration by (type, status)."""
        duration = _check_amount("deployment.duration", duration_s)
        self._deployments.instrument.add(1, self._deployments.attrs((status, type)))
        self._deployment_duration.instrument.record(
            duration, self._deployment_duration.attrs((type, status))
        )

    def websocket_accepted(self) -> None:
        """A connection passed authentication: counted as `authenticated`, and now active."""
        self._ws_events.instrument.add(1, self._ws_events.attrs(("authenticated",)))
        self._ws_active.instrument.add(1)

    def websocket_rejected(self) -> None:
        """A connection refused (bad or missing token); it never became active."""
        self._ws_events.instrument.add(1, self._ws_events.attrs(("rejected",)))

    def websocket_closed(self) -> None:
        """An accepted connection ended (either side closed it)."""
        self._ws_events.instrument.add(1, self._ws_events.attrs(("closed",)))
        self._ws_active.instrument.add(-1)

    def error(self, *, type: str, service: str, severity: str) -> None:
        self._errors.instrument.add(1, self._errors.attrs((type, service, severity)))

    # --- business ---

    def user_activity(self, *, action: str, plan_type: str) -> None:
        self._activity.instrument.add(1, self._activity.attrs((action, plan_type)))

    def feature_used(self, *, feature: str, user_type: str) -> None:
        self._features.instrument.add(1, self._features.attrs((feature, user_type)))

    def resource_cost(self, *, resource_type: str, plan: str, amount_usd: float) -> None:
        amount = _check_amount("resource.costs", amount_usd)
        self._costs.instrument.add(amount, self._costs.attrs((resource_type, plan)))

    def observe_plan_distribution(self, source: Callable[[], Mapping[str, int]]) -> None:
        """`source()` returns users per plan; it is called at each collection (export), on the
        exporter's thread, so it must be quick and thread-safe (return a cached count)."""
        self._plan_source = source

    def _observe_plans(self, options: CallbackOptions) -> Iterable[Observation]:
        source = self._plan_source
        if source is None:
            return []
        try:
            counts = source()
        except Exception:
            _log.exception("plan distribution callback failed; skipping this collection")
            return []
        label = self._plan_metric.labels[0]
        return [Observation(int(n), {label: plan}) for plan, n in counts.items()]
