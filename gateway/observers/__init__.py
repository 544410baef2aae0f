"""System observers: host and own-process metrics on an adaptive interval, fed into the same
pipeline as OTLP data, plus the recent history behind `GET /api/metrics/current`."""

from gateway.observers.config import ObserversConfig
from gateway.observers.history import History
from gateway.observers.http import metrics_current_router
from gateway.observers.sampler import Clock, PsutilSampler, Sampler, SystemClock
from gateway.observers.system import SystemObserver, default_resource

__all__ = [
    "Clock",
    "History",
    "ObserversConfig",
    "PsutilSampler",
    "Sampler",
    "SystemClock",
    "SystemObserver",
    "default_resource",
    "metrics_current_router",
]
