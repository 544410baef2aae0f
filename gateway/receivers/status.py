"""One place that maps the pipeline's typed errors to HTTP and gRPC statuses."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, status_pb2

from gateway.errors import GatewayError, PermanentError, QueueWriteError, RetryableError

__all__ = ["grpc_code", "http_status", "reason", "rpc_status_body"]


def http_status(error: GatewayError) -> int:
    if isinstance(error, PermanentError | RetryableError):
        return error.http_status
    return 500


def grpc_code(error: GatewayError) -> grpc.StatusCode:
    if isinstance(error, RetryableError):
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED
            if error.http_status == 429
            else grpc.StatusCode.UNAVAILABLE
        )
    if isinstance(error, PermanentError):
        if error.http_status == 413:
            return grpc.StatusCode.RESOURCE_EXHAUSTED
        if error.http_status == 401:
            return grpc.StatusCode.UNAUTHENTICATED
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def reason(error: GatewayError) -> str:
    """A short label value for self-metrics."""
    if isinstance(error, QueueWriteError):
        # the same word as the points it drops (gateway.points.dropped): one cause, one name
        return "queue_write_error"
    status = http_status(error)
    return {
        400: "invalid",
        401: "unauthenticated",
        413: "too_large",
        415: "unsupported_media_type",
        429: "overloaded",
        503: "unavailable",
    }.get(status, "error")


_RPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def rpc_status_body(error: GatewayError) -> status_pb2.Status:
    """The `google.rpc.Status` body OTLP/HTTP requires for error responses."""
    return status_pb2.Status(
        code=_RPC_CODES.get(http_status(error), code_pb2.INTERNAL), message=str(error)
    )
