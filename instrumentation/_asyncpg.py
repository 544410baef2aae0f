"""`db.client.operation.duration` for asyncpg, as a metric.

opentelemetry-instrumentation-asyncpg produces spans only. Two ways to get the metric:
(a) run that instrumentor under a real SDK TracerProvider and derive the histogram in a span
    processor, or (b) time the same `Connection` methods it wraps and record the histogram directly.
(a) pays for a recording span per query (ids, attributes, context attach; tens of microseconds)
even when no one wants traces, and ties metrics to trace sampling. (b) costs one `perf_counter()`
pair and one histogram record (aggregated by `_exact.ExactHistogram`, not the SDK's 16 us
`Histogram.record()`), so we do (b); the stock instrumentor is still applied for spans
when tracing is on (`instrument_app(tracing=True)`), and the two wrappers compose.

Wrapped: Connection.execute, executemany, fetch, fetchval, fetchrow, fetchmany (none calls
another, and Pool's methods go through them, so each query is counted once). Attributes follow
the current database semconv: `db.system.name="postgresql"`, `db.operation.name` (the SQL verb:
SELECT, INSERT, ...), and `error.type` (exception class) when the call raised. The pool's
reset query on each connection release is housekeeping, not counted.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import Attributes

from instrumentation import semconv
from instrumentation._exact import ExactHistogram, MetricsSource

__all__ = ["bind", "operation_name", "unbind"]

METRIC = semconv.DB_CLIENT_OPERATION_DURATION
_METHODS = ("execute", "executemany", "fetch", "fetchval", "fetchrow", "fetchmany")
_VERB = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*([A-Za-z]+)", re.S)
_MAX_CACHED = 2048
_VERSION = "0.1.0"


def _attributes(key: tuple[str, str | None]) -> Attributes:
    op, error = key
    attrs = {semconv.DB_SYSTEM_NAME: "postgresql", semconv.DB_OPERATION_NAME: op}
    if error is not None:
        attrs[semconv.ERROR_TYPE] = error
    return attrs


class _Recorder:
    """The histogram of one provider, aggregated by `ExactHistogram` like the HTTP one."""

    def __init__(self, provider: MeterProvider) -> None:
        self.provider = provider
        self.histogram = ExactHistogram(
            METRIC,
            unit="s",
            description="Duration of database client operations.",
            boundaries=semconv.DB_DURATION_BUCKETS,
            attributes=_attributes,
        )
        self.source = MetricsSource(
            InstrumentationScope("instrumentation.asyncpg", _VERSION), [self.histogram]
        )
        self._ops: dict[str, str] = {}

    def record(self, query: object, seconds: float, error: str | None) -> None:
        op = self._ops.get(query) if isinstance(query, str) else None
        if op is None:
            op = operation_name(query)
            if isinstance(query, str) and len(self._ops) < _MAX_CACHED:
                self._ops[query] = op
        self.histogram.record((op, error), seconds)


_recorder: _Recorder | None = None
_patched = False
# Set while Connection.reset() runs: the pool's housekeeping query on every release (SELECT
# pg_advisory_unlock_all(); CLOSE ALL; ...) is not an operation of the application's.
_in_reset: contextvars.ContextVar[bool] = contextvars.ContextVar("_in_reset", default=False)


def operation_name(query: object) -> str:
    """The SQL verb, upper-case: `operation_name("/* x */ select 1")` is "SELECT"."""
    if isinstance(query, str):
        m = _VERB.match(query)
        if m:
            return m.group(1).upper()
    return "OTHER"


def _wrap(
    method: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(method)
    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _recorder
        if rec is None or _in_reset.get():
            return await method(self, *args, **kwargs)
        query = args[0] if args else kwargs.get("query", kwargs.get("command"))
        start = time.perf_counter()
        try:
            result = await method(self, *args, **kwargs)
        except BaseException as exc:
            rec.record(query, time.perf_counter() - start, type(exc).__qualname__)
            raise
        rec.record(query, time.perf_counter() - start, None)
        return result

    timed.__instrumentation_wrapped__ = True  # type: ignore[attr-defined]
    return timed


def _wrap_reset(
    method: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(method)
    async def reset(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _in_reset.set(True)
        try:
            return await method(self, *args, **kwargs)
        finally:
            _in_reset.reset(token)

    reset.__instrumentation_wrapped__ = True  # type: ignore[attr-defined]
    return reset


def _patch() -> None:
    global _patched
    if _patched:
        return
    try:
        from asyncpg.connection import Connection
    except ImportError:  # asyncpg is optional for services that do not use it
        return
    for name in _METHODS:
        original = getattr(Connection, name, None)
        if original is not None and not getattr(original, "__instrumentation_wrapped__", False):
            setattr(Connection, name, _wrap(original))
    if not getattr(Connection.reset, "__instrumentation_wrapped__", False):
        Connection.reset = _wrap_reset(Connection.reset)
    _patched = True


def bind(provider: MeterProvider) -> MetricsSource:
    """Record asyncpg operations for `provider` from now on (patches asyncpg once); the
    returned source is what the provider's readers must collect (`hook_reader`)."""
    global _recorder
    _patch()
    _recorder = _Recorder(provider)
    return _recorder.source


def unbind(provider: MeterProvider) -> None:
    """Stop recording into `provider` (its shutdown); the wrappers then only pass through."""
    global _recorder
    if _recorder is not None and _recorder.provider is provider:
        _recorder = None
