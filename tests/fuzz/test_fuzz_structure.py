"""Fuzzing the *shape* of export requests against a real gateway (issue 17): how many resources,
scopes, metrics and points, how many attributes and how long their keys and values, empty
containers, over both transports, while a good client keeps sending.

The gateway runs with small limits, so hypothesis reaches past every one of them cheaply. For
each request the test knows the answer the gateway owes:

- more resources, scopes, metrics or points than the limits: refused whole (HTTP 400 / gRPC
  INVALID_ARGUMENT) with the limit named;
- otherwise 200, and `partial_success.rejected_data_points` is exactly the points whose own
  attributes, or whose resource's or scope's attributes, break the attribute limits.

Must also hold: `/live` answers all along (within 2 s here; the attack tests hold it to 1 s),
the process's RSS stays bounded, and the good client's series end exactly where it left them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from tests.support.hostile import LiveProbe
from tests.support.otlp import Req
from tests.support.promtext import parse
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
MAX_RESOURCES, MAX_SCOPES, MAX_METRICS, MAX_POINTS = 4, 8, 16, 64
MAX_ATTRIBUTES, MAX_KEY, MAX_VALUE = 6, 24, 48
CONFIG = f"""
observers: {{enabled: false}}
limits:
  max_resources_per_request: {MAX_RESOURCES}
  max_scopes_per_request: {MAX_SCOPES}
  max_metrics_per_request: {MAX_METRICS}
  max_points_per_request: {MAX_POINTS}
  max_attributes_per_point: {MAX_ATTRIBUTES}
  max_attribute_key_length: {MAX_KEY}
  max_attribute_value_length: {MAX_VALUE}
"""
RSS_BOUND = 400 * 1024 * 1024
_services = itertools.count()


@dataclass
class Shape:
    request: ExportMetricsServiceRequest
    over_limit: bool  # refused whole
    rejected: int  # points the gateway must report in partial_success


def _bad(attributes: list[tuple[str, str]]) -> bool:
    return (
        len(attributes) > MAX_ATTRIBUTES
        or any(len(k) > MAX_KEY for k, _ in attributes)
        or any(len(v) > MAX_VALUE for _, v in attributes)
    )


def _attributes(prefix: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    keys = st.integers(1, MAX_KEY + 8).map(lambda n: (prefix + "k" * n)[: max(n, 1)])
    values = st.integers(0, MAX_VALUE + 8).map(lambda n: "v" * n)
    return st.lists(
        st.tuples(keys, values), max_size=MAX_ATTRIBUTES + 2, unique_by=lambda kv: kv[0]
    )


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    req = ExportMetricsServiceRequest()
    resources = draw(st.integers(0, MAX_RESOURCES + 1))
    scopes_total = metrics_total = points_total = rejected = 0
    for r in range(resources):
        rm = req.resource_metrics.add()
        service = f"shape-{next(_services)}"
        rm.resource.attributes.add(key="service.name").value.string_value = service
        r_attrs = draw(_attributes("r")) if draw(st.booleans()) else []
        for k, v in r_attrs:
            rm.resource.attributes.add(key=k).value.string_value = v
        for s in range(draw(st.integers(0, 3))):
            sm = rm.scope_metrics.add()
            sm.scope.name = f"scope{s}"
            s_attrs = draw(_attributes("s")) if draw(st.booleans()) else []
            for k, v in s_attrs:
                sm.scope.attributes.add(key=k).value.string_value = v
            scopes_total += 1
            for m in range(draw(st.integers(0, 6))):
                metric = sm.metrics.add()
                metric.name = f"shape.m{r}.{m}"
                metrics_total += 1
                if draw(st.booleans()):
                    continue  # a metric without data: nothing to store, nothing to refuse
                n = draw(st.integers(0, 24))
                points_total += n
                for i in range(n):
                    p = metric.gauge.data_points.add()
                    p.as_double = float(i)
                    p.time_unix_nano = 1_700_000_000_000_000_000 + i
                    attrs = draw(_attributes("p")) if draw(st.integers(0, 3)) == 0 else []
                    p.attributes.add(key="i").value.int_value = i  # distinct series
                    for k, v in attrs:
                        p.attributes.add(key=k).value.string_value = v
                    # The resource's limit counts every attribute, service.name included
                    # (found by this test: 6 drawn + service.name is 7 > 6).
                    resource_attrs = [("service.name", service), *r_attrs]
                    if _bad(resource_attrs) or _bad(s_attrs) or _bad([("i", ""), *attrs]):
                        rejected += 1
    over = (
        resources > MAX_RESOURCES
        or scopes_total > MAX_SCOPES
        or metrics_total > MAX_METRICS
        or points_total > MAX_POINTS
    )
    return Shape(req, over, rejected)


class GoodClient(threading.Thread):
    """One service, three lanes of a cumulative counter; request i sets every lane to i."""

    def __init__(self, gw: GatewayProcess) -> None:
        super().__init__(daemon=True)
        self.gw = gw
        self.stop = threading.Event()
        self.sent = 0
        self.problems: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                i = self.sent + 1
                body = Req(service="good").sum("good", [({"lane": j}, i, 0, i) for j in range(3)])
                try:
                    r = client.post(self.gw.otlp_http, content=body.bytes(), headers=PROTOBUF)
                    reply = ExportMetricsServiceResponse.FromString(r.content)
                except Exception as exc:
                    self.problems.append(repr(exc))
                    continue
                if r.status_code != 200 or reply.partial_success.rejected_data_points:
                    self.problems.append(f"request {i}: {r.status_code} {r.text[:100]}")
                    continue
                self.sent = i
                time.sleep(0.02)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with run_gateway(tmp_path_factory.mktemp("shape"), config=CONFIG) as gw:
        yield gw


def test_every_request_shape_gets_the_answer_it_is_owed(gateway: GatewayProcess) -> None:
    proc = psutil.Process(gateway.proc.pid)
    channel = grpc.insecure_channel(gateway.grpc_target)
    export = channel.unary_unary(
        EXPORT,
        request_serializer=None,
        response_deserializer=ExportMetricsServiceResponse.FromString,
    )
    http = httpx.Client(timeout=30)
    good = GoodClient(gateway)
    seen = {"over": 0, "partial": 0, "clean": 0}
    peak = [0]

    @settings(
        max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(shapes(), st.sampled_from(["http", "grpc"]))
    def check(shape: Shape, transport: str) -> None:
        body = shape.request.SerializeToString()
        if transport == "http":
            r = http.post(gateway.otlp_http, content=body, headers=PROTOBUF)
            if shape.over_limit:
                assert r.status_code == 400 and "limits.max_" in r.text, r.text
                seen["over"] += 1
                return
            assert r.status_code == 200, r.text
            reply = ExportMetricsServiceResponse.FromString(r.content)
        else:
            try:
                reply = export(body, timeout=30)
            except grpc.RpcError as exc:
                assert shape.over_limit, exc
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
                seen["over"] += 1
                return
            assert not shape.over_limit, "an over-limit request was accepted over gRPC"
        got = reply.partial_success.rejected_data_points
        assert got == shape.rejected, reply.partial_success.error_message
        seen["partial" if got else "clean"] += 1
        peak[0] = max(peak[0], proc.memory_info().rss)

    good.start()
    try:
        with LiveProbe(gateway) as probe:
            check()
            # and the amplifiers, just past each limit and far past it
            for body in (b"\x0a\x00" * 500_000, b"\x0a\x04\x12\x02\x12\x00" * 200_000):
                r = http.post(gateway.otlp_http, content=body, headers=PROTOBUF)
                assert r.status_code == 400 and "limits.max_" in r.text
    finally:
        good.stop.set()
        good.join(30)
        http.close()
        channel.close()
    assert gateway.proc.poll() is None
    # 2 s, not the 1 s of the attack tests (tests/integration/test_hardening_*.py): this test
    # runs a good client and hypothesis in the same process as the probe, beside the suite
    assert probe.worst < 2.0 and probe.failures == 0, f"/live took {probe.worst:.2f}s"
    assert peak[0] < RSS_BOUND, f"peak RSS {peak[0] >> 20} MiB"
    assert seen["over"] > 10 and seen["partial"] > 10 and seen["clean"] > 10, seen
    assert not good.problems, good.problems[:5]
    values = parse(httpx.get(gateway.url + "/metrics").text).all("good_total", job="good")
    assert {v for _, v in values} == {good.sent} and len(values) == 3
