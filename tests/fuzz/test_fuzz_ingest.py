"""Fuzzing the receivers of a real gateway: at least 10,000 malformed requests over OTLP/HTTP
and OTLP/gRPC (the fixed corpus in `corpus.py` plus hypothesis-generated payloads), while two
good clients (one per transport) keep sending valid data.

Must hold: no 5xx and no gRPC INTERNAL/UNKNOWN answer, the process stays up, its RSS stays
under `RSS_BOUND`, and the good clients lose nothing (every request 200 without refused points,
and the last value of each of their series is what /metrics shows).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from tests.support.fuzz_corpus import PROTOBUF, Payload, bad_payloads, fixed_corpus
from tests.support.otlp import Req
from tests.support.promtext import parse
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

#: the gateway's RSS must stay under this during and after the attack (it idles at ~80 MiB)
RSS_BOUND = 300 * 1024 * 1024
BAD_REQUESTS = 10_000
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
GRPC_OK = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
CONFIG = """
observers: {enabled: false}
limits: {max_body_bytes: 4194304}
"""


class BadSender:
    """Sends payloads over one keep-alive HTTP connection and one gRPC channel."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.port = gw.http_port
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.channel = grpc.insecure_channel(gw.grpc_target)
        self.export = self.channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportMetricsServiceResponse.FromString,
        )
        self.http_statuses: Counter[int] = Counter()
        self.grpc_codes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.reconnects = 0

    @property
    def sent(self) -> int:
        return sum(self.http_statuses.values()) + sum(self.grpc_codes.values())

    def http(self, p: Payload) -> None:
        headers = {"Content-Type": p.content_type}
        if p.encoding:
            headers["Content-Encoding"] = p.encoding
        for attempt in range(2):
            try:
                self.conn.request("POST", "/v1/metrics", body=p.body, headers=headers)
                resp = self.conn.getresponse()
                resp.read()
                break
            except (http.client.HTTPException, ConnectionError) as exc:
                # The server may close a connection after refusing a body it did not read.
                self.reconnects += 1
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    self.failures.append(f"HTTP {p.note}: {exc!r}")
                    return
        self.http_statuses[resp.status] += 1
        if resp.status >= 500:
            self.failures.append(f"HTTP {resp.status} for {p.note}: {p.body[:80]!r}")

    def grpc(self, p: Payload) -> None:
        try:
            self.export(p.body, timeout=10)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
        self.grpc_codes[code.name] += 1
        if code not in GRPC_OK:
            self.failures.append(f"gRPC {code.name} for {p.note}: {p.body[:80]!r}")

    def send(self, p: Payload) -> None:
        self.http(p)
        if p.content_type == PROTOBUF and not p.encoding:
            self.grpc(p)

    def close(self) -> None:
        self.conn.close()
        self.channel.close()


class GoodClient(threading.Thread):
    """Valid cumulative counters, 5 lanes; request i sets every lane to i."""

    LANES = 5

    def __init__(self, gw: GatewayProcess, transport: str) -> None:
        super().__init__(daemon=True)
        self.gw = gw
        self.transport = transport
        self.service = f"good-{transport}"
        self.stop = threading.Event()
        self.sent = 0
        self.problems: list[str] = []

    def body(self, i: int) -> bytes:
        return (
            Req(service=self.service)
            .sum("fuzz.good", [({"lane": j}, i, 0, i + 1) for j in range(self.LANES)])
            .bytes()
        )

    def run(self) -> None:
        if self.transport == "http":
            client = httpx.Client(timeout=30)
            send = lambda b: client.post(  # noqa: E731
                self.gw.otlp_http, content=b, headers={"Content-Type": PROTOBUF}
            )
        else:
            channel = grpc.insecure_channel(self.gw.grpc_target)
            call = channel.unary_unary(
                EXPORT,
                request_serializer=None,
                response_deserializer=ExportMetricsServiceResponse.FromString,
            )
        while not self.stop.is_set():
            i = self.sent + 1
            try:
                if self.transport == "http":
                    r = send(self.body(i))
                    if r.status_code != 200:
                        self.problems.append(f"request {i}: HTTP {r.status_code}")
                    reply = ExportMetricsServiceResponse.FromString(r.content)
                else:
                    reply = call(self.body(i), timeout=30)
            except Exception as exc:  # any failure is a lost request
                self.problems.append(f"request {i}: {exc!r}")
                continue
            if reply.partial_success.rejected_data_points:
                self.problems.append(f"request {i}: {reply.partial_success.error_message}")
            self.sent = i
            time.sleep(0.01)
        if self.transport == "http":
            client.close()
        else:
            channel.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with run_gateway(tmp, config=CONFIG) as gw:
        yield gw


def test_malformed_requests_do_no_harm(gateway: GatewayProcess) -> None:
    proc = psutil.Process(gateway.proc.pid)
    bad = BadSender(gateway)
    good = [GoodClient(gateway, "http"), GoodClient(gateway, "grpc")]
    for client in good:
        client.start()
    peak_rss = [proc.memory_info().rss]

    def watch_rss() -> None:
        peak_rss[0] = max(peak_rss[0], proc.memory_info().rss)

    try:
        corpus = fixed_corpus()
        for _ in range(10):
            for payload in corpus:
                bad.send(payload)
            watch_rss()

        @settings(
            max_examples=130,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(bad_payloads, min_size=50, max_size=50))
        def attack(payloads: list[Payload]) -> None:
            for payload in payloads:
                bad.send(payload)
            watch_rss()

        attack()
        while bad.sent < BAD_REQUESTS:  # top up with the corpus if hypothesis made fewer
            for payload in corpus:
                bad.send(payload)
    finally:
        for client in good:
            client.stop.set()
        for client in good:
            client.join(30)
        bad.close()

    watch_rss()
    assert gateway.proc.poll() is None, "the gateway died"
    assert not bad.failures, sorted({f[:100] for f in bad.failures})[:20]
    assert bad.sent >= BAD_REQUESTS
    assert peak_rss[0] < RSS_BOUND, f"peak RSS {peak_rss[0] >> 20} MiB"
    # Most bad payloads were refused; some hostile-but-valid ones were accepted in part.
    assert bad.http_statuses[400] > 1000 and bad.http_statuses[413] >= 10
    assert bad.http_statuses[415] >= 10 and bad.grpc_codes["INVALID_ARGUMENT"] > 500

    text = httpx.get(gateway.url + "/metrics").text
    samples = parse(text)
    for client in good:
        assert not client.problems, client.problems[:5]
        assert client.sent > 10
        values = samples.all("fuzz_good_total", job=client.service)
        assert len(values) == GoodClient.LANES
        assert {v for _, v in values} == {client.sent}, f"{client.service} lost updates"
    print(
        f"\n{bad.sent} bad requests (HTTP {dict(bad.http_statuses)}, gRPC "
        f"{dict(bad.grpc_codes)}, {bad.reconnects} reconnects); peak RSS "
        f"{peak_rss[0] / 2**20:.0f} MiB (bound {RSS_BOUND >> 20} MiB); good clients sent "
        f"{good[0].sent} + {good[1].sent} requests, none lost"
    )
