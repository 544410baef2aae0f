"""The names this package emits and the gateway's views read: written once, here.

Both sides import this module: the instrumentation to create its instruments, the gateway's
catalogue and tests to match them (`gateway.catalogue.DEFAULT_NAMESPACE` is this one). It
imports nothing, so importing it pulls in neither the OpenTelemetry SDK nor the gateway.

The HTTP and database names are OpenTelemetry's stable semantic conventions (HTTP 1.23+,
database 1.33+); the bucket boundaries are the conventions' advisory ones.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DB_CLIENT_OPERATION_DURATION",
    "DB_DURATION_BUCKETS",
    "DB_OPERATION_NAME",
    "DB_SYSTEM_NAME",
    "DEFAULT_NAMESPACE",
    "ERROR_TYPE",
    "HTTP_DURATION_BUCKETS",
    "HTTP_REQUEST_METHOD",
    "HTTP_RESPONSE_STATUS_CODE",
    "HTTP_ROUTE",
    "HTTP_SERVER_ACTIVE_REQUESTS",
    "HTTP_SERVER_REQUEST_DURATION",
    "URL_SCHEME",
]

#: the metric namespace (prefix) of the project's own metrics, and the default
#: `service.namespace` of an instrumented service's resource
DEFAULT_NAMESPACE: Final = "coderunner"

# --- HTTP server ---
HTTP_SERVER_REQUEST_DURATION: Final = "http.server.request.duration"  # histogram, unit "s"
HTTP_SERVER_ACTIVE_REQUESTS: Final = "http.server.active_requests"  # up-down, "{request}"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_SCHEME: Final = "url.scheme"
ERROR_TYPE: Final = "error.type"
HTTP_DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

# --- database client ---
DB_CLIENT_OPERATION_DURATION: Final = "db.client.operation.duration"  # histogram, unit "s"
DB_SYSTEM_NAME: Final = "db.system.name"
DB_OPERATION_NAME: Final = "db.operation.name"
DB_DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
