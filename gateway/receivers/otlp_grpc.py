"""OTLP/gRPC receiver: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`.

The same semantics as OTLP/HTTP, in gRPC codes: INVALID_ARGUMENT for bad data,
RESOURCE_EXHAUSTED for a message over the size limit (grpc enforces it after decompression),
UNAVAILABLE for retryable overload; `partial_success` for refused points.
"""

from __future__ import annotations

import time

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from gateway.errors import GatewayError, PermanentError
from gateway.pipeline.batch import MetricsBatch, count_points
from gateway.pipeline.consumer import Consumer
from gateway.receivers.status import grpc_code, reason
from gateway.selftelemetry import SelfTelemetry

__all__ = ["OtlpGrpcReceiver"]


_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"


class _Export:
    """The `Export` method. It takes the raw request bytes and parses them itself, so that an
    undecodable message is INVALID_ARGUMENT with a message (grpc's own deserializer would
    answer INTERNAL)."""

    def __init__(self, consumer: Consumer, telemetry: SelfTelemetry) -> None:
        self._consumer = consumer
        self._telemetry = telemetry

    async def export(
        self, body: bytes, context: grpc.aio.ServicerContext
    ) -> ExportMetricsServiceResponse:
        started = time.perf_counter()
        try:
            request = ExportMetricsServiceRequest.FromString(body)
        except DecodeError as exc:
            error = PermanentError(f"message is not a valid OTLP metrics request: {exc}")
            self._telemetry.record_refused("grpc", reason(error))
            await context.abort(grpc_code(error), str(error))
        batch = MetricsBatch(request, source="grpc")
        points = count_points(request)
        try:
            self._consumer.consume(batch)
        except GatewayError as exc:
            self._telemetry.record_refused("grpc", reason(exc))
            await context.abort(grpc_code(exc), str(exc))
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
    ) -> None:
        self._export = _Export(consumer, telemetry)
        self._address = f"{host}:{port}"
        self._max = max_message_bytes
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        if self._server is not None:
            return
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max),
                ("grpc.so_reuseport", 0),
            ]
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
        self.port = server.add_insecure_port(self._address)
        if self.port == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {self._address}")
        await server.start()
        self._server = server

    async def shutdown(self, grace_seconds: float = 5.0) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        await server.stop(grace_seconds)
