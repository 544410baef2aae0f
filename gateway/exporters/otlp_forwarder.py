"""`OtlpForwarder`: sends what the pipeline accepted to an upstream OTLP endpoint (the Collector).

`consume()` only serialises and enqueues; a background task drains the queue, merging queued
requests into one (concatenated serialized `ExportMetricsServiceRequest`s are one valid request:
protobuf merges repeated fields) and retrying with exponential backoff on the statuses the OTLP
specification calls retryable (HTTP 429, 502, 503, 504; gRPC UNAVAILABLE, RESOURCE_EXHAUSTED,
DEADLINE_EXCEEDED, ...), honouring `Retry-After`.

Trouble is logged per episode, not per batch: the first retry or drop of an episode at WARNING
(what happened, that it is retried or dropped and where the drops are counted), the rest at
DEBUG, and one WARNING "recovered" line when a batch gets through again (issue 19: an upstream
down logged INFO per retry and never said it recovered; a wrong token logged once per batch).
Points an upstream rejects in a partial success are such an episode too: one WARNING when a
batch first comes back with `partial_success.rejected_data_points > 0`, DEBUG for the next ones,
"recovered" when a batch is taken whole (an upstream that refuses, say, too-old points in every
batch logged one WARNING per batch, enough to fill a disk).
Answers that retrying cannot fix are dropped at once and counted in `gateway.points.dropped`
by reason: `upstream_unauthorized` (HTTP 401/403, gRPC UNAUTHENTICATED/PERMISSION_DENIED: the
token in forwarder.headers), `upstream_not_found` (HTTP 404, gRPC UNIMPLEMENTED: a wrong
endpoint path), `rejected_upstream` (any other refusal, and points an upstream's partial
success rejected); prometheus/rules/forwarding.yml alerts on the first two. Rejected points are
not counted in `gateway.points.forwarded`, so forwarded plus dropped is what was handled.

Delivery is at-least-once: entries leave the queue only after the upstream answered. A send
whose outcome is unknown (timeout, connection lost after the request went out, a crash before
the ack with the disk queue) is sent again, and its points are counted in
`counters.redelivered`: the upstream may see them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Callable

import grpc
import httpx
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from gateway.config import ForwarderConfig
from gateway.errors import QueueWriteError, RetryableError
from gateway.exporters.queue import Entry, ForwardQueue, MemoryQueue
from gateway.pipeline.batch import MetricsBatch, count_points

__all__ = ["ForwarderCounters", "OtlpForwarder"]

log = logging.getLogger(__name__)

_RETRYABLE_HTTP = frozenset((429, 502, 503, 504))
_RETRYABLE_GRPC = frozenset(
    (
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
)
#: non-retryable answers with their own drop reason: configuration errors, not bad data
_REFUSAL_REASONS_HTTP = {
    401: "upstream_unauthorized",
    403: "upstream_unauthorized",
    404: "upstream_not_found",
}
_REFUSAL_REASONS_GRPC = {
    grpc.StatusCode.UNAUTHENTICATED: "upstream_unauthorized",
    grpc.StatusCode.PERMISSION_DENIED: "upstream_unauthorized",
    grpc.StatusCode.UNIMPLEMENTED: "upstream_not_found",
}
_EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
#: the episode kind (and drop reason) of points refused inside a successful answer
_PARTIAL = "rejected_upstream"


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None, *, unknown: bool = False) -> None:
        super().__init__(reason)
        self.after = after
        #: the upstream may have received the request (timeout, connection lost mid-way)
        self.unknown = unknown


class _GiveUp(Exception):
    """Not retried: the message starts with the drop reason ("upstream_unauthorized: ...")."""

    @property
    def reason(self) -> str:
        return str(self).split(":", 1)[0]


def _hint(reason: str, where: str) -> str:
    """What to check for a refusal retrying cannot fix, for the log line."""
    if reason == "upstream_unauthorized":
        return " (check the token in forwarder.headers)"
    if reason == "upstream_not_found":
        # A Collector whose pipelines take no metrics answers so too (HTTP 404, gRPC
        # UNIMPLEMENTED "unknown service ...MetricsService"): its receiver registers only the
        # signals a pipeline consumes.
        return (
            f" (no OTLP metrics receiver at {where}: check forwarder.endpoint, and that the "
            "upstream has a metrics pipeline)"
        )
    return ""


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ForwarderCounters:
    __slots__ = (
        "bad_responses",
        "dropped",
        "errors",
        "forwarded",
        "last_success_unix",
        "redelivered",
        "rejected_upstream",
    )

    def __init__(self) -> None:
        self.forwarded = 0
        #: points sent again after an attempt with an unknown outcome: possible duplicates
        self.redelivered = 0
        self.dropped: dict[str, int] = {}
        self.rejected_upstream = 0
        self.last_success_unix: float | None = None
        #: unexpected errors the send loop survived (gateway.background.errors)
        self.errors = 0
        #: 200 answers whose body is not an OTLP response (a proxy's page, say)
        self.bad_responses = 0

    def drop(self, reason: str, n: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


class OtlpForwarder:
    """A `Consumer` and a `Component`."""

    def __init__(
        self,
        config: ForwarderConfig,
        queue: ForwardQueue | None = None,
        *,
        sleep: Callable[[float], object] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        full_retry_after_seconds: float = 5.0,
    ) -> None:
        """`sleep` and `clock` (a monotonic one) time the retries and the shutdown grace;
        `transport` carries the HTTP requests (tests pass an in-process one)."""
        self._config = config
        # not `queue or ...`: an empty queue is falsy (it has __len__)
        self._queue: ForwardQueue = queue if queue is not None else MemoryQueue(config.queue_size)
        self._full_retry_after = full_retry_after_seconds
        self._sleep = sleep
        self._clock = clock
        self._transport = transport
        self.counters = ForwarderCounters()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stopping = False
        self._failure: str | None = None
        #: the current episode of upstream trouble: what it is (a drop reason, or "retrying"),
        #: since when (monotonic), and points dropped in it; None while sends succeed
        self._trouble: str | None = None
        self._trouble_since = 0.0
        self._trouble_dropped = 0

    # ---------------------------------------------------------------- state for others

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def queue_fill_ratio(self) -> float:
        return self._queue.fill_ratio()

    def dropped(self) -> dict[str, int]:
        """Points dropped by reason, including what the queue evicted to make room."""
        out = dict(self.counters.dropped)
        evicted = self._queue.evicted_points()
        if evicted:
            out["queue_full_oldest"] = evicted
        return out

    def check_room(self) -> None:
        """Admission for the receivers: a `RetryableError` while the queue refuses data."""
        if not self._queue.has_room():
            write_error = getattr(self._queue, "write_error", None)
            if write_error:
                raise QueueWriteError(
                    f"forward queue cannot write ({write_error}); retry later",
                    retry_after_seconds=self._full_retry_after,
                )
            raise RetryableError(
                "forward queue is full (upstream slow or down); retry later",
                retry_after_seconds=self._full_retry_after,
            )

    def last_success_unix(self) -> float | None:
        return self.counters.last_success_unix

    def oldest_entry_age_seconds(self) -> float | None:
        """How long the oldest queued entry has waited, for the status page; None when the
        queue is empty or does not keep arrival times (the disk queue stores none)."""
        age = getattr(self._queue, "oldest_age_seconds", None)
        return age() if callable(age) else None

    # ---------------------------------------------------------------- consumer

    def consume(self, batch: MetricsBatch) -> None:
        points = count_points(batch.request)
        if points == 0:
            return
        entry = Entry(batch.request.SerializeToString(), points)
        if not self._queue.offer(entry):
            # A disk queue that cannot write says why; any other refusal is a full queue.
            failed = getattr(self._queue, "write_error", None) is not None
            self.counters.drop("queue_write_error" if failed else "queue_full", points)
            return
        self._wakeup.set()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._config.protocol == "grpc":
            self._channel = grpc.aio.insecure_channel(self._config.endpoint)
        else:
            self._http = httpx.AsyncClient(
                timeout=self._config.timeout_seconds, transport=self._transport
            )
        self._task = asyncio.create_task(self._run(), name="otlp-forwarder")
        if len(self._queue):
            self._wakeup.set()

    async def shutdown(self, grace_seconds: float = 5.0) -> None:
        """Try to deliver what is queued within `grace_seconds`, then stop."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        deadline = self._clock() + grace_seconds
        while len(self._queue) and self._clock() < deadline and not self._task.done():
            await self._sleep(0.05)  # type: ignore[misc]
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        left = len(self._queue)
        if left and isinstance(self._queue, MemoryQueue):
            # A memory queue dies with the process: say what it held, and count it.
            points = sum(e.points for e in self._queue.peek(1 << 62))
            self.counters.drop("shutdown", points)
            log.error(
                "forwarder: stopping with %d points (%d batches) not delivered to %s: dropped "
                "(a disk queue would keep them for the next start)",
                points,
                left,
                self._config.endpoint,
            )
        elif left:
            log.warning("forwarder: stopping; %d batches stay queued on disk", left)
        self._queue.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # ---------------------------------------------------------------- sending

    def failure(self) -> str | None:
        """The send loop's last unexpected error, while it keeps failing (None after a
        success): the upstream health check fails on it."""
        write_error = getattr(self._queue, "write_error", None)
        if write_error:
            return f"disk queue cannot write: {write_error}"
        return self._failure

    async def _run(self) -> None:
        """Send forever. An unexpected error is counted, logged once, and the loop goes on
        after a backoff: an upstream that answered 200 with a body that was not OTLP once
        killed it, and forwarding stopped for good while health said pass."""
        backoff = self._config.initial_backoff_seconds
        while True:
            try:
                await self._send_next()
            except Exception as exc:
                self.counters.errors += 1
                if self._failure is None:
                    log.exception("forwarder: unexpected error; retrying")
                self._failure = f"forwarder error: {exc!r}"
                await self._sleep(backoff * (0.5 + random.random()))  # type: ignore[misc]
                backoff = min(backoff * 2, self._config.max_backoff_seconds)
            else:
                backoff = self._config.initial_backoff_seconds

    async def _send_next(self) -> None:
        """Send the oldest queued entries once (waiting for some when the queue is empty)."""
        if not len(self._queue):
            self._wakeup.clear()
            await self._wakeup.wait()
            return
        entries = self._queue.peek(self._config.max_batch_points)
        payload = b"".join(e.payload for e in entries)
        points = sum(e.points for e in entries)
        self.counters.redelivered += sum(e.points for e in entries if e.attempts)
        self._queue.mark_attempted(len(entries))
        try:
            answer = await self._deliver(payload, points)
        except _GiveUp as exc:
            self.counters.drop(exc.reason, points)
            self._trouble_dropped += points
            if self._enter_trouble(exc.reason):
                log.warning(
                    "forwarder: dropping points the upstream %s refused: %s. Not retried: "
                    "fix the cause; drops are counted in gateway.points.dropped{reason=%r} "
                    "and logged again only when a batch gets through",
                    self._config.endpoint,
                    exc,
                    exc.reason,
                )
            else:
                log.debug("forwarder: dropping %d points: %s", points, exc)
        else:
            # never above the batch: an upstream's count is not trusted to be sane
            rejected = min(answer.partial_success.rejected_data_points, points)
            self.counters.forwarded += points - rejected
            self.counters.last_success_unix = time.time()
            self._failure = None
            if rejected:
                self._note_partial(rejected, answer.partial_success.error_message)
            else:
                self._recovered()
        self._queue.ack(len(entries))

    def _enter_trouble(self, kind: str) -> bool:
        """Note an episode of trouble; True when it is new (or of a new kind): log it then."""
        if self._trouble == kind:
            return False
        if self._trouble is None:
            self._trouble_since = self._clock()
        self._trouble = kind
        return True

    def _recovered(self) -> None:
        if self._trouble is None:
            return
        # WARNING like the line that opened the episode, so a log filtered at WARNING shows
        # both ends of it.
        log.warning(
            "forwarder: upstream %s recovered after %.1fs (last trouble: %s; %d points "
            "dropped meanwhile)",
            self._config.endpoint,
            self._clock() - self._trouble_since,
            self._trouble,
            self._trouble_dropped,
        )
        self._trouble = None
        self._trouble_dropped = 0

    def _note_partial(self, rejected: int, message: str) -> None:
        """Points the upstream refused in an answer that took the rest: dropped and counted,
        logged once per episode (a new kind of trouble opens one)."""
        self.counters.drop(_PARTIAL, rejected)
        self._trouble_dropped += rejected
        if self._enter_trouble(_PARTIAL):
            log.warning(
                "forwarder: upstream %s rejected %d points of a batch: %s. Not retried: "
                "rejections are counted in gateway.points.dropped{reason=%r} and logged again "
                "only when a batch is taken whole",
                self._config.endpoint,
                rejected,
                message or "(no message)",
                _PARTIAL,
            )
        else:
            log.debug("forwarder: upstream rejected %d points: %s", rejected, message)

    async def _deliver(self, payload: bytes, points: int) -> ExportMetricsServiceResponse:
        """The upstream's answer to `payload`, after retries (`_GiveUp` when there is none)."""
        config = self._config
        started = self._clock()
        backoff = config.initial_backoff_seconds
        while True:
            try:
                return await self._send_once(payload)
            except _Retry as exc:
                if exc.unknown:
                    self.counters.redelivered += points
                elapsed = self._clock() - started
                if config.max_elapsed_seconds and elapsed >= config.max_elapsed_seconds:
                    raise _GiveUp(f"retries_exhausted: {exc}") from None
                wait = exc.after if exc.after is not None else backoff * (0.5 + random.random())
                wait = min(wait, config.max_backoff_seconds)
                if self._enter_trouble("retrying"):
                    log.warning(
                        "forwarder: %s (%s); retrying with backoff, data waits in the queue; "
                        "logged again when it recovers",
                        exc,
                        config.endpoint,
                    )
                else:
                    log.debug("forwarder: %s; retrying in %.2fs", exc, wait)
                await self._sleep(wait)  # type: ignore[misc]
                backoff = min(backoff * 2, config.max_backoff_seconds)

    async def _send_once(self, payload: bytes) -> ExportMetricsServiceResponse:
        if self._channel is not None:
            return await self._send_grpc(payload)
        return await self._send_http(payload)

    async def _send_http(self, payload: bytes) -> ExportMetricsServiceResponse:
        assert self._http is not None
        url = self._config.endpoint.rstrip("/")
        if not url.endswith("/v1/metrics"):
            url += "/v1/metrics"
        headers = {"Content-Type": "application/x-protobuf", **self._config.headers}
        try:
            response = await self._http.post(url, content=payload, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Retry(f"upstream unreachable: {exc!r}") from None
        except httpx.HTTPError as exc:
            raise _Retry(f"upstream did not answer: {exc!r}", unknown=True) from None
        if response.status_code == 200:
            try:
                answer = ExportMetricsServiceResponse.FromString(response.content)
            except DecodeError:
                # Delivered as far as HTTP says; what the body would have said is unknown.
                self.counters.bad_responses += 1
                if self.counters.bad_responses == 1:
                    log.warning(
                        "forwarder: upstream answered 200 with a body that is not an OTLP "
                        "response (%r...): taken as delivered",
                        response.content[:80],
                    )
                return ExportMetricsServiceResponse()
            return answer
        if response.status_code in _RETRYABLE_HTTP:
            raise _Retry(
                f"upstream answered {response.status_code}",
                _retry_after(response.headers.get("Retry-After")),
            )
        self.counters.rejected_upstream += 1
        reason = _REFUSAL_REASONS_HTTP.get(response.status_code, "rejected_upstream")
        body = response.text[:200].strip()
        raise _GiveUp(f"{reason}: HTTP {response.status_code}{_hint(reason, url)} {body}".rstrip())

    async def _send_grpc(self, payload: bytes) -> ExportMetricsServiceResponse:
        assert self._channel is not None
        call = self._channel.unary_unary(
            _EXPORT_METHOD,
            request_serializer=lambda b: b,
            response_deserializer=ExportMetricsServiceResponse.FromString,
        )
        metadata = tuple(self._config.headers.items())
        try:
            response: ExportMetricsServiceResponse = await call(
                payload, timeout=self._config.timeout_seconds, metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _RETRYABLE_GRPC:
                # UNAVAILABLE before the call reached the server is the common case; a deadline
                # or a cancellation may come after the server took the data.
                unknown = exc.code() in (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED,
                )
                raise _Retry(f"upstream answered {exc.code().name}", unknown=unknown) from None
            self.counters.rejected_upstream += 1
            reason = _REFUSAL_REASONS_GRPC.get(exc.code(), "rejected_upstream")
            hint = _hint(reason, self._config.endpoint)
            raise _GiveUp(f"{reason}: {exc.code().name}{hint} {exc.details()}") from None
        return response
