"""A recording OTLP/HTTP upstream and a numbered point stream, for the fault-injection tests:
every point carries its own sequence number, so a test can say exactly which ones arrived."""

from __future__ import annotations

import collections
import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from tests.support.gateway_client import PB
from tests.support.otlp import Req
from tests.support.servers import free_port
from tests.support.waiting import eventually

METRIC = "fault.seq"


LANES = 50  # points per request, one series each


class Recorder:
    """An OTLP/HTTP upstream that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: collections.Counter[int] = collections.Counter()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":  # the Collector's exporter
                    body = gzip.decompress(body)
                request = ExportMetricsServiceRequest.FromString(body)
                seqs = [
                    int(p.as_double)
                    for rm in request.resource_metrics
                    for sm in rm.scope_metrics
                    for m in sm.metrics
                    if m.name == METRIC
                    for p in m.sum.data_points
                ]
                with recorder.lock:
                    recorder.seen.update(seqs)
                reply = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def missing(self, accepted: set[int]) -> set[int]:
        with self.lock:
            return accepted - set(self.seen)

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.seen.values() if n > 1)


@contextmanager
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def request_body(i: int) -> bytes:
    """Request i: lane j carries sequence number i * LANES + j at time i seconds."""
    return (
        Req(service="fault")
        .sum(METRIC, [({"lane": j}, float(i * LANES + j), 0, 1 + i) for j in range(LANES)])
        .bytes()
    )


class Stream:
    """Sends request 0, 1, 2, ... to whichever gateway is current, in a thread. A request counts
    as accepted on HTTP 200; on a connection error or 503 it is sent again (to the same or the
    next gateway), as an OTLP exporter would."""

    def __init__(self, total: int, pause: float = 0.005) -> None:
        self.total = total
        self.pause = pause
        self.url = ""
        self.accepted: set[int] = set()
        self.resent_points = 0  # sent again after an unknown outcome (connection lost)
        self.statuses: collections.Counter[int] = collections.Counter()
        self.done = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, url: str) -> None:
        self.url = url
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            i = 0
            unknown = False
            while i < self.total and not self.stopped.is_set():
                try:
                    r = client.post(self.url, content=request_body(i), headers=PB)
                except httpx.HTTPError as exc:
                    if not isinstance(exc, httpx.ConnectError) and not unknown:
                        unknown = True
                        self.resent_points += LANES
                    time.sleep(0.05)
                    continue
                self.statuses[r.status_code] += 1
                if r.status_code == 200:
                    with self.lock:
                        self.accepted.update(range(i * LANES, (i + 1) * LANES))
                    i += 1
                    unknown = False
                    time.sleep(self.pause)
                elif r.status_code in (429, 503):
                    time.sleep(0.05)
                else:
                    raise AssertionError(f"request {i}: HTTP {r.status_code} {r.text}")
        self.done.set()

    def snapshot(self) -> set[int]:
        with self.lock:
            return set(self.accepted)

    def wait_accepted(self, requests: int, timeout: float = 30.0) -> None:
        eventually(lambda: len(self.accepted) >= requests * LANES, timeout, "stream stalled")
