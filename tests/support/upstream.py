"""A real OTLP/HTTP upstream for forwarding tests: records every request it accepts and can be
told to answer with an error status (and Retry-After) for the next N requests, or with a
partial success that rejects some points. Like the
Collector it answers 404 on any path but `path` (/v1/metrics) and, with `token` set, 401 to a
request without `Authorization: Bearer <token>`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from gateway.pipeline.batch import count_points

__all__ = ["Upstream", "run_upstream"]


class Upstream:
    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.failures: list[tuple[int, str | None]] = []  # (status, Retry-After) to answer next
        self.attempts = 0
        #: answer this many more accepted requests with 200 and a body that is not OTLP
        self.garbage = 0
        #: points to report rejected (partial_success) in the answers to the next requests
        #: taken, one count per request; what was sent is still recorded, like a real upstream
        #: that keeps the rest
        self.rejections: list[int] = []
        self.lock = threading.Lock()
        self.url = ""
        #: required bearer token (None: none required)
        self.token: str | None = None
        #: the one path that takes data; any other answers 404
        self.path = "/v1/metrics"

    @property
    def points(self) -> int:
        with self.lock:
            return sum(count_points(r) for r in self.requests)

    def points_of(self, service: str) -> int:
        """Points received from resources whose service.name is `service`."""
        total = 0
        with self.lock:
            for request in self.requests:
                for rm in request.resource_metrics:
                    names = [
                        a.value.string_value
                        for a in rm.resource.attributes
                        if a.key == "service.name"
                    ]
                    if names == [service]:
                        one = ExportMetricsServiceRequest()
                        one.resource_metrics.append(rm)
                        total += count_points(one)
        return total

    def fail_next(self, status: int, times: int, retry_after: str | None = None) -> None:
        with self.lock:
            self.failures.extend([(status, retry_after)] * times)


@contextmanager
def run_upstream() -> Iterator[Upstream]:
    upstream = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with upstream.lock:
                upstream.attempts += 1
                token = upstream.token
                if self.path != upstream.path:
                    failure: tuple[int, str | None] | None = (404, None)
                elif token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                    failure = (401, None)
                else:
                    failure = upstream.failures.pop(0) if upstream.failures else None
                if failure is None:
                    upstream.requests.append(ExportMetricsServiceRequest.FromString(body))
            if failure is not None:
                status, retry_after = failure
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            answer = ExportMetricsServiceResponse()
            with upstream.lock:
                if upstream.rejections:
                    answer.partial_success.rejected_data_points = upstream.rejections.pop(0)
                    answer.partial_success.error_message = "data point too old"
            reply = answer.SerializeToString()
            with upstream.lock:
                if upstream.garbage:
                    upstream.garbage -= 1
                    reply = b"<html><body>proxy says hello</body></html>\xff\xff"
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
