"""OTLP/gRPC receiver: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`.

The same semantics as OTLP/HTTP, in gRPC codes: INVALID_ARGUMENT for bad data,
RESOURCE_EXHAUSTED for a message over the size limit (grpc enforces it after decompression) or
one that could take more memory to parse than `limits.max_decoded_bytes`,
UNAVAILABLE for retryable overload (with `google.rpc.RetryInfo` in the trailing metadata, as
`google.rpc.retryinfo-bin`, which the OTel SDK exporters read, and inside
`grpc-status-details-bin`), UNAUTHENTICATED without a valid bearer token in the `authorization`
metadata; `partial_success` for refused points. TLS when certificate files are given.

Checks run cheapest first: token, admission (memory limiter, forward queue room), parsing,
input limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from gateway.errors import GatewayError, PermanentError, RetryableError
from gateway.pipeline.batch import MetricsBatch, count_points
from gateway.pipeline.consumer import Consumer
from gateway.receivers.auth import TokenAuth
from gateway.receivers.limits import InputLimits
from gateway.receivers.status import grpc_code, reason, rpc_status_body
from gateway.receivers.wire import check_decoded, check_shape
from gateway.selftelemetry import SelfTelemetry

__all__ = ["OtlpGrpcReceiver"]


_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"


def _trailers(exc: GatewayError) -> tuple[tuple[str, bytes], ...]:
    """RetryInfo for a retryable error: the delay clients should wait."""
    if not isinstance(exc, RetryableError):
        return ()
    seconds = exc.retry_after_seconds
    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(
            seconds=int(seconds), nanos=int((seconds - int(seconds)) * 1e9)
        )
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status: status_pb2.Status = rpc_status_body(exc)
    status.details.append(detail)
    return (
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
        ("grpc-status-details-bin", status.SerializeToString()),
    )


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None


class _Export:
    """The `Export` method. It takes the raw request bytes and parses them itself, so that an
    undecodable message is INVALID_ARGUMENT with a message (grpc's own deserializer would
    answer INTERNAL)."""

    def __init__(
        self,
        consumer: Consumer,
        telemetry: SelfTelemetry,
        auth: TokenAuth | None,
        admission: Sequence[Callable[[], None]],
        limits: InputLimits | None,
    ) -> None:
        self._consumer = consumer
        self._telemetry = telemetry
        self._auth = auth
        self._admission = tuple(admission)
        self._limits = limits

    async def export(
        self, body: bytes, context: grpc.aio.ServicerContext
    ) -> ExportMetricsServiceResponse:
        started = time.perf_counter()
        try:
            tenant = self._auth.tenant(_authorization(context)) if self._auth else ""
            for check in self._admission:
                check()
            if self._limits is not None:
                check_shape(body, self._limits.shape)
                check_decoded(body, self._limits.max_decoded, self._limits.shape)
            try:
                request = ExportMetricsServiceRequest.FromString(body)
            except DecodeError as exc:
                raise PermanentError(
                    f"message is not a valid OTLP metrics request: {exc}"
                ) from None
            batch = MetricsBatch(request, source="grpc", tenant=tenant)
            points = count_points(request)
            if self._limits is not None:
                self._limits.apply(batch, points)
            self._consumer.consume(batch)
        except GatewayError as exc:
            self._telemetry.record_refused("grpc", reason(exc))
            await context.abort(grpc_code(exc), str(exc), _trailers(exc))
        response = ExportMetricsServiceResponse()
        if batch.rejected_points:
            response.partial_success.rejected_data_points = batch.rejected_points
            response.partial_success.error_message = batch.error_message
        self._telemetry.record_request("grpc", points, time.perf_counter() - started)
        return response


class OtlpGrpcReceiver:
    """A `Component`: a grpc.aio server on `host:port`."""

    def __init__(
        self,
        consumer: Consumer,
        telemetry: SelfTelemetry,
        *,
        host: str,
        port: int,
        max_message_bytes: int,
        auth: TokenAuth | None = None,
        admission: Sequence[Callable[[], None]] = (),
        limits: InputLimits | None = None,
        tls: tuple[bytes, bytes] | None = None,
        max_concurrent_rpcs: int | None = None,
        max_metadata_bytes: int = 64 * 1024,
        handshake_timeout_seconds: float = 10.0,
    ) -> None:
        """`tls`: (PEM private key, PEM certificate chain), or None for plain TCP.
        `max_metadata_bytes` bounds a call's metadata (headers); `handshake_timeout_seconds`
        how long a new connection may take to finish its handshake (a silent socket is closed
        then)."""
        self._export = _Export(consumer, telemetry, auth, admission, limits)
        self._address = f"{host}:{port}"
        self._max = max_message_bytes
        self._tls = tls
        #: the newest certificate configuration, and the one grpc last took
        self._tls_latest: grpc.ServerCertificateConfiguration | None = None
        self._tls_taken: grpc.ServerCertificateConfiguration | None = None
        self._max_rpcs = max_concurrent_rpcs
        self._max_metadata = max_metadata_bytes
        self._handshake_ms = max(1, int(handshake_timeout_seconds * 1000))
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        if self._server is not None:
            return
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max),
                ("grpc.so_reuseport", 0),
                ("grpc.max_metadata_size", self._max_metadata),
                ("grpc.absolute_max_metadata_size", self._max_metadata),
                ("grpc.server_handshake_timeout_ms", self._handshake_ms),
            ],
            maximum_concurrent_rpcs=self._max_rpcs,
        )
        handler = grpc.method_handlers_generic_handler(
            _SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export.export,
                    request_deserializer=None,  # raw bytes: _Export parses them
                    response_serializer=ExportMetricsServiceResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        try:
            if self._tls is not None:
                # Dynamic: grpc asks `_certificates` at each new connection's handshake, so
                # `replace_tls` reaches new connections without a restart.
                credentials = grpc.dynamic_ssl_server_credentials(
                    grpc.ssl_server_certificate_configuration([self._tls]), self._certificates
                )
                self.port = server.add_secure_port(self._address, credentials)
            else:
                self.port = server.add_insecure_port(self._address)
        except RuntimeError as exc:  # grpc's "Failed to bind to address ..."
            self.port = 0
            reason = str(exc)
        else:
            reason = "address in use or not available"
        if self.port == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {self._address}: {reason}")
        await server.start()
        self._server = server

    def replace_tls(self, tls: tuple[bytes, bytes]) -> None:
        """New connections' handshakes use `tls` (key, certificate chain) from now on; open
        connections keep theirs. No effect without TLS."""
        self._tls_latest = grpc.ssl_server_certificate_configuration([tls])

    def _certificates(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by grpc's core (from its own threads) before a handshake: None keeps the
        # current pair. Compared by identity rather than cleared, so that a `replace_tls`
        # racing this call is taken at the next handshake instead of lost.
        latest = self._tls_latest
        if latest is self._tls_taken:
            return None
        self._tls_taken = latest
        return latest

    async def shutdown(self, grace_seconds: float = 5.0) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        await server.stop(grace_seconds)
