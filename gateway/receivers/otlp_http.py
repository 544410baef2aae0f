"""OTLP/HTTP receiver: `POST /v1/metrics` with protobuf or JSON bodies, optionally gzip.

Responses follow the OTLP/HTTP specification: 200 with an `ExportMetricsServiceResponse` in
the request's encoding (with `partial_success` when points were refused), and for errors a
`google.rpc.Status` body, 400 (undecodable), 413 (too large, before or after decompression, or
costing more memory to parse than `limits.max_decoded_bytes`),
415 (unsupported content type), 429/503 with `Retry-After` (overload), 401 (no valid bearer
token, when auth is on).

Order of the checks, cheapest first: the token, admission (memory limiter, forward queue room),
the declared size; only then is the body read, inflated and decoded, and the input limits
applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.errors import GatewayError, PermanentError, RetryableError
from gateway.pipeline.batch import MetricsBatch, count_points
from gateway.pipeline.consumer import Consumer
from gateway.receivers.auth import TokenAuth
from gateway.receivers.decode import JSON, PROTOBUF, decode_body, inflate, media_type
from gateway.receivers.limits import InputLimits
from gateway.receivers.status import http_status, reason, rpc_status_body
from gateway.selftelemetry import SelfTelemetry

__all__ = ["OtlpHttpReceiver"]


def _encode(message: Message, content_type: str) -> bytes:
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


class _Held:
    """Bytes one request holds against the receiver's in-flight budget."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


class OtlpHttpReceiver:
    def __init__(
        self,
        consumer: Consumer,
        telemetry: SelfTelemetry,
        *,
        max_body_bytes: int,
        auth: TokenAuth | None = None,
        admission: Sequence[Callable[[], None]] = (),
        limits: InputLimits | None = None,
        max_inflight_bytes: int = 0,
    ) -> None:
        """`max_inflight_bytes`: request bytes (as received, plus decompressed) that all
        requests in progress may hold together; past it, 503 + Retry-After. 0: no limit."""
        self._consumer = consumer
        self._telemetry = telemetry
        self._max_body_bytes = max_body_bytes
        self._auth = auth
        #: checks that raise `RetryableError` while the gateway cannot take data
        self._admission = tuple(admission)
        self._limits = limits
        self._max_inflight = max_inflight_bytes
        self._inflight = 0

    def _hold(self, held: _Held, n: int) -> None:
        """Count `n` more bytes against the in-flight budget, or refuse the request: without a
        budget, many clients uploading large bodies at once could exhaust memory before the
        memory limiter's next sample."""
        self._inflight += n
        held.bytes += n
        if self._max_inflight and self._inflight > self._max_inflight:
            raise RetryableError(
                f"more than {self._max_inflight} bytes of requests in progress "
                "(limits.max_inflight_bytes); retry later",
                retry_after_seconds=1.0,
            )

    async def _read_body(self, request: Request, held: _Held) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise PermanentError(
                f"body of {declared} bytes exceeds the limit of {self._max_body_bytes} bytes",
                http_status=413,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            self._hold(held, len(chunk))
            size += len(chunk)
            if size > self._max_body_bytes:
                raise PermanentError(
                    f"body exceeds the limit of {self._max_body_bytes} bytes", http_status=413
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        content_type = media_type(request.headers.get("content-type"))
        reply_type = JSON if content_type == JSON else PROTOBUF
        tenant = ""
        held = _Held()
        try:
            if self._auth is not None:
                tenant = self._auth.tenant(request.headers.get("authorization"))
            for check in self._admission:
                check()
            if content_type not in (PROTOBUF, JSON):
                raise PermanentError(
                    f"unsupported Content-Type {content_type!r}: use {PROTOBUF} or {JSON}",
                    http_status=415,
                )
            raw = await self._read_body(request, held)
            body = inflate(raw, request.headers.get("content-encoding", ""), self._max_body_bytes)
            if body is not raw:  # decompressed: both copies are alive until decoding ends
                self._hold(held, len(body))
            # The parse's memory (at most limits.max_decoded_bytes) is not charged to the
            # in-flight budget: decoding and consuming run without an await, so one parse at a
            # time sits beside the bodies still arriving; a charge of the bound (10-25x a
            # realistic body's size) would refuse bodies that fit.
            limits = self._limits
            decoded = decode_body(
                body,
                content_type,
                limits.shape if limits is not None else None,
                limits.max_decoded if limits is not None else 0,
            )
            batch = MetricsBatch(decoded, source="http", tenant=tenant)
            points = count_points(batch.request)
            if self._limits is not None:
                self._limits.apply(batch, points)
            self._consumer.consume(batch)
        except ClientDisconnect:
            return Response(status_code=400)
        except GatewayError as exc:
            return self._error(exc, reply_type)
        finally:
            self._inflight -= held.bytes
        response = ExportMetricsServiceResponse()
        if batch.rejected_points:
            response.partial_success.rejected_data_points = batch.rejected_points
            response.partial_success.error_message = batch.error_message
        self._telemetry.record_request("http", points, time.perf_counter() - started)
        return Response(_encode(response, reply_type), media_type=reply_type)

    def _error(self, exc: GatewayError, reply_type: str) -> Response:
        self._telemetry.record_refused("http", reason(exc))
        headers = {}
        if isinstance(exc, RetryableError):
            headers["Retry-After"] = str(max(1, round(exc.retry_after_seconds)))
        elif http_status(exc) == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="otlp"'
        return Response(
            _encode(rpc_status_body(exc), reply_type),
            status_code=http_status(exc),
            media_type=reply_type,
            headers=headers,
        )
