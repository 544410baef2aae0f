"""`instrument_app()`: HTTP metrics middleware now, the provider in each worker's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from opentelemetry.metrics import NoOpMeterProvider

from instrumentation._excluded import excluded_urls_from_env
from instrumentation._http import HttpMetricsMiddleware, MiddlewareBinding
from instrumentation._settings import InstrumentationSettings
from instrumentation._setup import Instrumentation, setup

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from starlette.applications import Starlette

__all__ = ["instrument_app"]

_log = logging.getLogger("instrumentation")


@dataclass(eq=False)
class _AppInstrumentation:
    """Per app: the middleware's binding and what its lifespan sets up."""

    binding: MiddlewareBinding
    #: installed by the zero-code start (`opentelemetry-instrument`); an explicit
    #: `instrument_app()` may still configure it
    automatic: bool
    #: a handle the caller passed: bound at once, never shut down by us
    handle: Instrumentation | None = None
    #: what the lifespan's `setup()` gets when no handle was passed
    settings: InstrumentationSettings | None = None


def _bind(app: Starlette, binding: MiddlewareBinding, handle: Instrumentation) -> None:
    binding.metrics = handle.http
    app.state.instrumentation = handle


def _framework(app: Starlette) -> str:
    """Whose stock instrumentor's variable names the app's excluded URLs."""
    try:
        from fastapi import FastAPI
    except ImportError:
        return "STARLETTE"
    return "FASTAPI" if isinstance(app, FastAPI) else "STARLETTE"


def _install(app: Starlette, *, automatic: bool) -> _AppInstrumentation:
    binding = MiddlewareBinding()
    # Read when the app is built, as the stock instrumentors do: a bad value fails at start.
    binding.excluded_urls = excluded_urls_from_env(_framework(app))
    config = _AppInstrumentation(binding, automatic)
    app.state._instrumentation_app = config
    app.add_middleware(HttpMetricsMiddleware, binding=binding)
    # FastAPI >= 0.160 records the same HTTP metrics natively as soon as a global
    # MeterProvider exists; ours replace them on this app, so switch those off (there is no
    # public setter after construction; `FastAPI(telemetry={"metrics": False})` is the same).
    native = getattr(app, "_telemetry", None)
    if isinstance(native, dict):
        native["metrics"] = False

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        if config.handle is not None:  # the caller owns the provider
            async with inner(a) as state:
                yield state
            return
        handle = setup(config.settings)
        _bind(app, binding, handle)
        try:
            async with inner(a) as state:
                yield state
        finally:
            binding.metrics = None
            # shutdown() exports over the network; keep the event loop free meanwhile.
            await anyio.to_thread.run_sync(handle.shutdown)

    app.router.lifespan_context = lifespan
    return config


def instrument_app(
    app: Starlette,
    instrumentation: Instrumentation | InstrumentationSettings | None = None,
    *,
    tracing: bool = False,
    tracer_provider: TracerProvider | None = None,
    exclude_paths: Collection[str] = (),
) -> None:
    """Instrument a FastAPI (or Starlette) app: HTTP server metrics, asyncpg metrics, and
    `app.state.instrumentation` (the handle; `.meter_provider` for the app's own metrics).

    With settings (or None: all from `OTEL_*`), `setup(settings)` runs in the app's lifespan
    startup, i.e. in each worker after the server forks or spawns it, and the handle is shut
    down (flushed) at lifespan shutdown; the app's own lifespan runs inside, so it can use the
    handle. Pass an existing handle to bind it now instead (tests, or a service that calls
    `setup()` itself).

    `tracing=True` adds the stock OpenTelemetry FastAPI and asyncpg instrumentors for spans
    (with `tracer_provider`, default the global one; the package's `tracing` extra); their
    metrics are switched off, since this package records the same semconv metrics at a
    fraction of the cost.
    `exclude_paths`: exact paths not measured (e.g. "/health" polled by a load balancer), on
    top of the URLs the stock instrumentor's variable excludes: `OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`
    (a Starlette app: `OTEL_PYTHON_STARLETTE_EXCLUDED_URLS`), else `OTEL_PYTHON_EXCLUDED_URLS`,
    comma-separated regexes searched in `scheme://host/path`, read when the app is built.

    An app the zero-code start (`opentelemetry-instrument`) already instrumented is
    configured by this call instead; calling it twice yourself is an error.
    """
    if not isinstance(instrumentation, Instrumentation | InstrumentationSettings | None):
        raise TypeError(
            "instrument_app() takes an Instrumentation handle or InstrumentationSettings, "
            f"got {type(instrumentation).__name__}"
        )
    config: _AppInstrumentation | None = getattr(app.state, "_instrumentation_app", None)
    if config is None:
        config = _install(app, automatic=False)
    elif config.automatic:
        config.automatic = False
    else:
        raise RuntimeError("instrument_app() was already called for this app")
    config.binding.exclude_paths = frozenset(exclude_paths)
    if tracing:
        _instrument_tracing(app, tracer_provider)
    if isinstance(instrumentation, Instrumentation):
        config.handle = instrumentation
        _bind(app, config.binding, instrumentation)
    else:
        config.settings = instrumentation


def instrument_automatically(app: Starlette, settings: InstrumentationSettings | None) -> None:
    """The zero-code start's hook: instrument `app` unless it already is."""
    if getattr(app.state, "_instrumentation_app", None) is None:
        _install(app, automatic=True).settings = settings


def _instrument_tracing(app: Starlette, tracer_provider: TracerProvider | None) -> None:
    try:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError as exc:
        raise RuntimeError(
            "instrument_app(tracing=True) needs the stock instrumentors: "
            "pip install 'telemetry-gateway-instrumentation[tracing]'"
        ) from exc

    FastAPIInstrumentor.instrument_app(
        app,  # type: ignore[arg-type]
        tracer_provider=tracer_provider,
        meter_provider=NoOpMeterProvider(),
    )
    asyncpg_instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not asyncpg_instrumentor.is_instrumented_by_opentelemetry:
        asyncpg_instrumentor.instrument(tracer_provider=tracer_provider)
