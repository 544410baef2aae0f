"""Typed errors: their type, not their text, decides the HTTP and gRPC status.

The mapping lives in one place, `gateway.receivers.status`.
"""

from __future__ import annotations

__all__ = ["GatewayError", "PermanentError", "QueueWriteError", "RetryableError"]


class GatewayError(Exception):
    """Base of the errors a consumer may raise for a whole batch."""


class PermanentError(GatewayError):
    """The data can never be accepted (undecodable, too large, invalid): HTTP 4xx, gRPC
    INVALID_ARGUMENT. The client must not retry."""

    def __init__(self, message: str, *, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status


class RetryableError(GatewayError):
    """The data may be accepted later (memory pressure, full queue): HTTP 429/503 with
    Retry-After, gRPC UNAVAILABLE or RESOURCE_EXHAUSTED with RetryInfo."""

    def __init__(
        self, message: str, *, retry_after_seconds: float = 1.0, http_status: int = 503
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.http_status = http_status


class QueueWriteError(RetryableError):
    """The forward queue cannot write (disk full, read-only file system, I/O error): 503 like
    a full queue, but a fault of this host to fix, not load, so it is counted under its own
    reason (`queue_write_error`) in gateway.requests.refused."""
