"""Zero-code start: what `opentelemetry-instrument` loads from this package's entry points.

    OTEL_SERVICE_NAME=billing OTEL_EXPORTER_OTLP_ENDPOINT=http://gw:4318 \\
        opentelemetry-instrument uvicorn app:app --workers 2
    ... opentelemetry-instrument gunicorn -k uvicorn.workers.UvicornWorker -w 2 app:app

The launcher puts its `sitecustomize` on PYTHONPATH, so every Python process it starts (the
server's supervisor and each spawned or forked worker) runs, before the application is
imported: the distro (`opentelemetry_distro`: `GatewayDistro`), the configurator
(`opentelemetry_configurator`: `GatewayConfigurator`) and each instrumentor
(`opentelemetry_instrumentor`: `AppInstrumentor`).

`AppInstrumentor` wraps `Starlette.__init__` and `FastAPI.__init__`, so every app built
afterwards gets exactly what `instrument_app(app)` gives it: the middleware, and `setup()` in
the app's lifespan startup. The provider is therefore created in each worker after the fork,
never in the supervisor or a gunicorn master (the OpenTelemetry docs' gunicorn `post_fork` hook
is not needed), and flushed at lifespan shutdown. An app that calls `instrument_app()` itself
is configured by that call. A worker run with `--lifespan off` exports nothing. Paths the stock
instrumentors' `OTEL_PYTHON_FASTAPI_EXCLUDED_URLS` (or `OTEL_PYTHON_EXCLUDED_URLS`) excludes
are not measured either (`instrumentation/_excluded.py`).

`GatewayDistro` keeps the stock FastAPI, Starlette and asyncpg instrumentors out when they are
installed too: without a TracerProvider their spans are discarded, and their metrics would count
every request a second time (they would record into the global provider this package sets).
`GatewayConfigurator` validates the `OTEL_*` settings this package reads itself
(OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL), so a typo fails the process at start, not at the first
request; it configures metrics only (no TracerProvider, no logging).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator
from opentelemetry.util._importlib_metadata import EntryPoint

from instrumentation._settings import InstrumentationSettings

__all__ = ["AppInstrumentor", "GatewayConfigurator", "GatewayDistro"]

_log = logging.getLogger("instrumentation")

#: stock instrumentors whose metrics this package replaces (entry point names)
REPLACED = frozenset({"fastapi", "starlette", "asyncpg"})

#: what the configurator decided, for the apps the instrumentor instruments
_settings: InstrumentationSettings | None = None


class GatewayDistro(BaseDistro):  # type: ignore[misc]
    """The `opentelemetry_distro` entry point."""

    def _configure(self, **kwargs: Any) -> None:
        pass  # the defaults are this package's own (setup()); nothing to set in the environment

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        if entry_point.name in REPLACED:
            _log.info(
                "instrumentation: the stock %r instrumentor is not loaded; this package "
                "records the same metrics",
                entry_point.name,
            )
            return
        super().load_instrumentor(entry_point, **kwargs)


class GatewayConfigurator(_BaseConfigurator):
    """The `opentelemetry_configurator` entry point."""

    def _configure(self, **kwargs: Any) -> None:
        global _settings
        from instrumentation._setup import _protocol

        _protocol(None)  # raises ValueError on an unsupported OTEL_EXPORTER_OTLP_*PROTOCOL
        _settings = InstrumentationSettings()


def _instrumenting(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        from instrumentation._app import instrument_automatically

        instrument_automatically(self, _settings)

    __init__.__instrumentation_original__ = original  # type: ignore[attr-defined]
    return __init__


class AppInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """The `opentelemetry_instrumentor` entry point: instruments every Starlette or FastAPI
    app built after `instrument()` (see the module doc)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("starlette >= 0.27",)

    def _classes(self) -> list[type]:
        from starlette.applications import Starlette

        classes: list[type] = [Starlette]
        try:
            from fastapi import FastAPI
        except ImportError:
            pass
        else:
            classes.append(FastAPI)  # its __init__ does not call Starlette's
        return classes

    def _instrument(self, **kwargs: Any) -> None:
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return
        for cls in self._classes():
            if not hasattr(cls.__init__, "__instrumentation_original__"):  # type: ignore[misc]
                cls.__init__ = _instrumenting(cls.__init__)  # type: ignore[misc]

    def _uninstrument(self, **kwargs: Any) -> None:
        for cls in self._classes():
            original = getattr(cls.__init__, "__instrumentation_original__", None)  # type: ignore[misc]
            if original is not None:
                cls.__init__ = original  # type: ignore[misc]
