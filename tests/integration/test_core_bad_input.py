"""OTLP/HTTP and gRPC over real connections: JSON and gzip equal protobuf; every kind of bad
payload gets its documented status and a message, and the gateway keeps serving others."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from tests.support.gateway_client import PB
from tests.support.otlp import Req
from tests.support.promtext import parse
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

LIMIT = 1024 * 1024
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = f"limits:\n  max_body_bytes: {LIMIT}\n"
    with run_gateway(tmp_path_factory.mktemp("gw"), config=config) as gw:
        yield gw


def sample_request(service: str) -> Req:
    return (
        Req(service=service)
        .sum("jobs.done", [({"queue": "a"}, 7, 0, 10), ({"queue": "b"}, 2.5, 0, 10)])
        .gauge("temp", [({"room": "x"}, 21.5, 10)], unit="Cel")
        .histogram("lat", [({"op": "get"}, [0.1, 1.0], [1, 2, 3], 9.5, 0, 10)], unit="s")
    )


def metrics(gw: GatewayProcess) -> str:
    r = httpx.get(gw.url + "/metrics")
    assert r.status_code == 200
    return r.text


def values_of(text: str, service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for name, labels, value in parse(text).rows:
        if labels.get("job") == service:
            rest = tuple(sorted((k, v) for k, v in labels.items() if k not in ("job",)))
            out[(name, rest)] = value
    return out


def test_json_and_gzip_give_the_same_result_as_protobuf(gateway: GatewayProcess) -> None:
    pb = sample_request("enc-pb")
    r = httpx.post(gateway.otlp_http, content=pb.bytes(), headers=PB)
    assert r.status_code == 200
    assert ExportMetricsServiceResponse.FromString(r.content) == ExportMetricsServiceResponse()

    js = sample_request("enc-json")
    doc = json_format.MessageToDict(js.request)  # lowerCamelCase, int64 as strings
    # OTLP JSON: enums as integers, 64-bit integers as strings or numbers, unknown fields ignored.
    metric = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    metric["sum"]["aggregationTemporality"] = 2
    metric["sum"]["dataPoints"][0]["asInt"] = 7
    metric["someFutureField"] = {"x": 1}
    r = httpx.post(
        gateway.otlp_http, content=json.dumps(doc), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {}

    gz = sample_request("enc-gzip")
    r = httpx.post(
        gateway.otlp_http,
        content=gzip.compress(gz.bytes()),
        headers={**PB, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200

    text = metrics(gateway)
    reference = values_of(text, "enc-pb")
    # 8 samples, and target_info: written for every resource, as the Collector writes it
    assert len(reference) == 9
    for service in ("enc-json", "enc-gzip"):
        got = values_of(text, service)
        assert {
            (n, tuple(x for x in lab if x[0] != "instance")): v for (n, lab), v in got.items()
        } == {
            (n, tuple(x for x in lab if x[0] != "instance")): v for (n, lab), v in reference.items()
        }


def rpc_status(response: httpx.Response) -> status_pb2.Status:
    return status_pb2.Status.FromString(response.content)


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"\xff\xfe garbage \x00\x01", PB, 400, "not a valid OTLP protobuf"),
        (sample_request("t").bytes()[:-7], PB, 400, "not a valid OTLP protobuf"),
        (b"{not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "must be an object"),
        (b'{"resourceMetrics": 5}', {"Content-Type": "application/json"}, 400, "OTLP JSON"),
        (b"x", {"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
        (b"\x1f\x8b\x08garbage", {**PB, "Content-Encoding": "gzip"}, 400, "not valid gzip"),
        (b"abc", {**PB, "Content-Encoding": "br"}, 415, "Content-Encoding"),
        (b"\x00" * (LIMIT + 1), PB, 413, "exceeds the limit"),
        (
            gzip.compress(b"\x00" * (50 * LIMIT)),
            {**PB, "Content-Encoding": "gzip"},
            413,
            "decompressed body exceeds",
        ),
    ],
    ids=[
        "garbage",
        "truncated",
        "bad-json",
        "json-array",
        "json-wrong-type",
        "content-type",
        "bad-gzip",
        "unknown-encoding",
        "oversized",
        "gzip-bomb",
    ],
)
def test_bad_payloads_get_their_status_and_a_message(
    gateway: GatewayProcess, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    r = httpx.post(gateway.otlp_http, content=body, headers=headers)
    assert r.status_code == status, r.content[:200]
    if headers.get("Content-Type") == "application/json":
        assert message in r.json()["message"]
    else:
        assert message in rpc_status(r).message
    # ... and the gateway still serves a good client.
    good = httpx.post(gateway.otlp_http, content=sample_request("after-bad").bytes(), headers=PB)
    assert good.status_code == 200
    assert parse(metrics(gateway)).value("jobs_done_total", job="after-bad", queue="a") == 7


def test_refused_points_are_reported_as_partial_success(gateway: GatewayProcess) -> None:
    req = Req(service="partial").sum(
        "c", [({"k": "ok"}, 1.0, 0, 10), ({"k": "nan"}, float("nan"), 0, 10)]
    )
    r = httpx.post(gateway.otlp_http, content=req.bytes(), headers=PB)
    assert r.status_code == 200
    response = ExportMetricsServiceResponse.FromString(r.content)
    assert response.partial_success.rejected_data_points == 1
    assert "NaN" in response.partial_success.error_message
    text = metrics(gateway)
    assert parse(text).value("c_total", job="partial", k="ok") == 1
    assert parse(text).all("c_total", job="partial", k="nan") == []
    assert (
        parse(text).value("coderunner_gateway_points_rejected_total", reason="invalid_value") >= 1
    )


def test_refused_requests_are_counted(gateway: GatewayProcess) -> None:
    httpx.post(gateway.otlp_http, content=b"x", headers={"Content-Type": "text/plain"})
    s = parse(metrics(gateway))
    assert (
        s.value(
            "coderunner_gateway_requests_refused_total",
            transport="http",
            reason="unsupported_media_type",
        )
        >= 1
    )


def test_grpc_statuses(gateway: GatewayProcess) -> None:
    with grpc.insecure_channel(
        gateway.grpc_target, options=[("grpc.max_send_message_length", 10 * LIMIT)]
    ) as channel:
        export = channel.unary_unary(
            EXPORT,
            request_serializer=lambda b: b,
            response_deserializer=ExportMetricsServiceResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            export(b"\xff\xfe garbage", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid OTLP metrics request" in info.value.details()

        with pytest.raises(grpc.RpcError) as info:
            export(b"\x0a" + b"\xff" * 9 + b"\x01" * (2 * LIMIT), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        partial = Req(service="grpc-partial").sum(
            "c", [({"k": "ok"}, 1.0, 0, 10), ({"k": "neg"}, -1.0, 0, 10)]
        )
        response = export(partial.bytes(), timeout=10)
        assert response.partial_success.rejected_data_points == 1

        good = export(sample_request("grpc-good").bytes(), timeout=10)
        assert good == ExportMetricsServiceResponse()
    assert parse(metrics(gateway)).value("jobs_done_total", job="grpc-good", queue="b") == 2.5


def test_empty_request_is_accepted(gateway: GatewayProcess) -> None:
    r = httpx.post(
        gateway.otlp_http, content=ExportMetricsServiceRequest().SerializeToString(), headers=PB
    )
    assert r.status_code == 200
