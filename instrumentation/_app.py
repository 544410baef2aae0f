"""`instrument_app()`: HTTP metrics middleware now, the provider in each worker's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Collection
from typing import Any

import anyio.to_thread
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import TracerProvider
from starlette.applications import Starlette

from instrumentation._http import HttpInstruments, HttpMetricsMiddleware, MiddlewareBinding
from instrumentation._setup import Instrumentation, setup

__all__ = ["instrument_app"]

_log = logging.getLogger("instrumentation")


def _bind(app: Starlette, binding: MiddlewareBinding, handle: Instrumentation) -> None:
    binding.instruments = HttpInstruments(handle.meter_provider)
    app.state.instrumentation = handle


def instrument_app(
    app: Starlette,
    instrumentation: Instrumentation | None = None,
    *,
    tracing: bool = False,
    tracer_provider: TracerProvider | None = None,
    exclude_paths: Collection[str] = (),
    **setup_kwargs: Any,
) -> None:
    """Instrument a FastAPI (or Starlette) app: HTTP server metrics, asyncpg metrics, and
    `app.state.instrumentation` (the handle, with `.meters`) for the app's own metrics.

    Without `instrumentation`, `setup(**setup_kwargs)` runs in the app's lifespan startup, i.e.
    in each worker after the server forks or spawns it, and the handle is shut down (flushed) at
    lifespan shutdown; the app's own lifespan runs inside, so it can use the handle. Pass an
    existing handle to bind it now instead (tests, or a service that calls `setup()` itself).

    `tracing=True` adds the stock OpenTelemetry FastAPI and asyncpg instrumentors for spans
    (with `tracer_provider`, default the global one); their metrics are switched off, since this
    package records the same semconv metrics at a fraction of the cost.
    `exclude_paths`: exact paths not measured (e.g. "/health" polled by a load balancer).
    """
    if getattr(app.state, "_instrumentation_binding", None) is not None:
        raise RuntimeError("instrument_app() was already called for this app")
    if instrumentation is not None and setup_kwargs:
        raise TypeError(
            f"pass either an Instrumentation or setup() arguments, not both: {sorted(setup_kwargs)}"
        )
    binding = MiddlewareBinding()
    app.state._instrumentation_binding = binding
    app.add_middleware(HttpMetricsMiddleware, binding=binding, exclude_paths=exclude_paths)
    # FastAPI >= 0.160 records the same HTTP metrics natively as soon as a global
    # MeterProvider exists; ours replace them on this app, so switch those off (there is no
    # public setter after construction; `FastAPI(telemetry={"metrics": False})` is the same).
    native = getattr(app, "_telemetry", None)
    if isinstance(native, dict):
        native["metrics"] = False
    if tracing:
        _instrument_tracing(app, tracer_provider)

    if instrumentation is not None:
        _bind(app, binding, instrumentation)
        return

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        handle = setup(**setup_kwargs)
        _bind(app, binding, handle)
        try:
            async with inner(a) as state:
                yield state
        finally:
            binding.instruments = None
            # shutdown() exports over the network; keep the event loop free meanwhile.
            await anyio.to_thread.run_sync(handle.shutdown)

    app.router.lifespan_context = lifespan


def _instrument_tracing(app: Starlette, tracer_provider: TracerProvider | None) -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,  # type: ignore[arg-type]
        tracer_provider=tracer_provider,
        meter_provider=NoOpMeterProvider(),
    )
    asyncpg_instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not asyncpg_instrumentor.is_instrumented_by_opentelemetry:
        asyncpg_instrumentor.instrument(tracer_provider=tracer_provider)
