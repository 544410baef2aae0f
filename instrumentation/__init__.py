"""Instrument a FastAPI + asyncpg service for the telemetry gateway with one call.

    from instrumentation import instrument_app

    app = FastAPI()
    instrument_app(app)   # settings from OTEL_* (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT)

or with typed settings:

    instrument_app(app, InstrumentationSettings(service_name="billing", endpoint="http://gw:4318"))

or without touching the code (the package's entry points do the same):

    OTEL_SERVICE_NAME=billing OTEL_EXPORTER_OTLP_ENDPOINT=http://gw:4318 \\
        opentelemetry-instrument uvicorn app:app --workers 2

The service's own metrics use the handle's provider:
`request.app.state.instrumentation.meter_provider.get_meter("billing")`. Outside an ASGI app:
`handle = setup(InstrumentationSettings(...))`, then `handle.meter_provider`,
`handle.shutdown()`. The metric names shared with the gateway are in `instrumentation.semconv`.

Importing this package is cheap: the names below load their modules (and the OpenTelemetry SDK)
on first use, so `import instrumentation.semconv` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from instrumentation._app import instrument_app
    from instrumentation._settings import InstrumentationSettings
    from instrumentation._setup import Instrumentation, setup

__all__ = ["Instrumentation", "InstrumentationSettings", "instrument_app", "setup"]

_WHERE = {
    "Instrumentation": "instrumentation._setup",
    "InstrumentationSettings": "instrumentation._settings",
    "instrument_app": "instrumentation._app",
    "setup": "instrumentation._setup",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'instrumentation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
