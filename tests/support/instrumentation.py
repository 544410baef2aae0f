"""Helpers for the instrumentation tests: read an InMemoryMetricReader, and a real OTLP/HTTP
receiver (stdlib HTTP server + the OTLP protobuf messages) that records what exporters send."""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

Points = dict[str, list[tuple[dict[str, Any], Any]]]


def collect(reader: InMemoryMetricReader) -> tuple[Points, dict[str, Any]]:
    """Data points by metric name as (attributes, point), plus name -> Metric (unit, data)."""
    points: Points = {}
    metrics: dict[str, Any] = {}
    data = reader.get_metrics_data()
    if data is None:
        return points, metrics
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                metrics[m.name] = m
                for p in m.data.data_points:
                    points.setdefault(m.name, []).append((dict(p.attributes), p))
    return points, metrics


def value_of(points: Points, name: str, **attrs: Any) -> Any:
    """The one point of `name` whose attributes are exactly `attrs`."""
    matches = [p for a, p in points.get(name, []) if a == attrs]
    assert len(matches) == 1, f"{name}{attrs}: {len(matches)} matches in {points.get(name)}"
    return matches[0]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    request: ExportMetricsServiceRequest


@dataclass
class OtlpHttpReceiver:
    url: str
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Event = field(default_factory=threading.Event)

    def resource_attributes(self) -> list[dict[str, str]]:
        with self.lock:
            return [
                {kv.key: kv.value.string_value for kv in rm.resource.attributes}
                for r in self.received
                for rm in r.request.resource_metrics
            ]


@contextlib.contextmanager
def otlp_http_receiver() -> Iterator[OtlpHttpReceiver]:
    holder: list[OtlpHttpReceiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            req = ExportMetricsServiceRequest.FromString(body)
            rec = holder[0]
            with rec.lock:
                rec.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, req)
                )
            rec.arrived.set()
            payload = ExportMetricsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(OtlpHttpReceiver(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
