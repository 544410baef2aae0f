"""Ingest auth and TLS with real clients: the OpenTelemetry SDK's OTLPMetricExporter (HTTP and
gRPC) with bearer-token headers and a CA certificate, against a gateway with TLS on both
listeners and tokens from a file and from the environment.

Certificates are made for the test with the `openssl` CLI: a throwaway CA and a server
certificate for 127.0.0.1 / localhost signed by it.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpExporter,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource

from tests.support.otlp import Req
from tests.support.promtext import parse
from tests.support.servers import REPO, free_port

pytestmark = pytest.mark.integration

TOKENS_FILE = "team-a: token-from-file\nteam-b: [old-b, new-b]\n"
ENV_TOKENS = "{team-env: token-from-env}"
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", "/CN=telemetry-gateway test CA", cwd=d)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext",
             cwd=d)  # fmt: skip
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key")


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (under the SDK's HTTP exporter) lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win
    over the exporter's `certificate_file`; this machine sets both."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@dataclass
class TlsGateway:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[TlsGateway]:
    tmp = tmp_path_factory.mktemp("tls-gateway")
    (tmp / "tokens.yaml").write_text(TOKENS_FILE)
    (tmp / "gateway.yaml").write_text(
        "observers: {enabled: false}\n"
        f"auth: {{enabled: true, tokens_file: '{tmp / 'tokens.yaml'}'}}\n"
        f"tls: {{cert_file: '{certs.cert}', key_file: '{certs.key}'}}\n"
    )
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    env["GATEWAY_AUTH__TOKENS"] = ENV_TOKENS
    log = tmp / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(tmp / "gateway.yaml"),
             "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
    gw = TlsGateway(proc, http_port, grpc_port, log)
    try:
        # wait_http speaks plain HTTP; a TLS listener answers that with a closed connection,
        # so wait for the port with an HTTPS client instead.
        answered = False
        for _ in range(200):
            if proc.poll() is not None:
                break
            try:
                httpx.get(gw.url + "/live", verify=certs.context(), timeout=1)
                answered = True
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert answered, log.read_text()[-3000:]
        yield gw
    finally:
        proc.terminate()
        proc.wait(15)


def metrics_data(service: str, value: int) -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": service})
    )
    provider.get_meter("auth-test").create_counter("auth.pushes").add(value, {"k": "v"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def pushed(gw: TlsGateway, certs: Certs, service: str) -> float | None:
    text = httpx.get(gw.url + "/metrics", verify=certs.context()).text
    found = parse(text).all("auth_pushes_total", job=service)
    return found[0][1] if found else None


def http_exporter(gw: TlsGateway, certs: Certs | None, token: str | None) -> HttpExporter:
    return HttpExporter(
        endpoint=gw.url + "/v1/metrics",
        headers={"authorization": f"Bearer {token}"} if token else None,
        certificate_file=str(certs.ca) if certs else True,
        timeout=5,
    )


def grpc_exporter(gw: TlsGateway, certs: Certs, token: str | None) -> GrpcExporter:
    return GrpcExporter(
        endpoint=f"127.0.0.1:{gw.grpc_port}",
        insecure=False,
        credentials=grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes()),
        headers={"authorization": f"Bearer {token}"} if token else None,
        timeout=5,
    )


@pytest.mark.parametrize(
    ("token", "tenant"),
    [("token-from-file", "a"), ("new-b", "b"), ("old-b", "b2"), ("token-from-env", "env")],
)
def test_sdk_http_exporter_with_token_and_ca(
    gateway: TlsGateway, certs: Certs, token: str, tenant: str
) -> None:
    service = f"http-{tenant}"
    exporter = http_exporter(gateway, certs, token)
    assert exporter.export(metrics_data(service, 7)) == MetricExportResult.SUCCESS
    exporter.shutdown()
    assert pushed(gateway, certs, service) == 7


@pytest.mark.parametrize("token", ["token-from-env", "new-b"])
def test_sdk_grpc_exporter_with_token_and_ca(gateway: TlsGateway, certs: Certs, token: str) -> None:
    service = f"grpc-{token}"
    exporter = grpc_exporter(gateway, certs, token)
    assert exporter.export(metrics_data(service, 5)) == MetricExportResult.SUCCESS
    exporter.shutdown()
    assert pushed(gateway, certs, service) == 5


@pytest.mark.parametrize("token", [None, "wrong", "token-from-fil", "token-from-file2"])
def test_sdk_exporters_without_a_valid_token_are_refused(
    gateway: TlsGateway, certs: Certs, token: str | None
) -> None:
    service = f"refused-{token}"
    data = metrics_data(service, 1)
    http = http_exporter(gateway, certs, token)
    assert http.export(data) == MetricExportResult.FAILURE
    http.shutdown()
    rpc = grpc_exporter(gateway, certs, token)
    assert rpc.export(data) == MetricExportResult.FAILURE
    rpc.shutdown()
    assert pushed(gateway, certs, service) is None


def test_refusals_are_401_and_unauthenticated_and_say_nothing_more(
    gateway: TlsGateway, certs: Certs
) -> None:
    body = Req(service="raw").sum("c", [({}, 1, 0, 1)]).bytes()
    headers = {"Content-Type": "application/x-protobuf"}
    answers = set()
    for auth in (None, "Bearer nope", "Bearer token-from-fil", "Basic dGVhbS1hOng="):
        h = dict(headers, **({"Authorization": auth} if auth else {}))
        r = httpx.post(gateway.url + "/v1/metrics", content=body, headers=h, verify=certs.context())
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        answers.add(r.content)
    assert len(answers) == 1, "every refusal looks the same"
    creds = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{gateway.grpc_port}", creds) as channel:
        call = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportMetricsServiceResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(body, metadata=(("authorization", "Bearer nope"),), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert info.value.details() == "missing or invalid bearer token"  # type: ignore[attr-defined]
        call(body, metadata=(("authorization", "Bearer token-from-env"),), timeout=5)


def test_tls_is_required_and_verified(gateway: TlsGateway, certs: Certs) -> None:
    # Plain HTTP to the TLS listener gets no HTTP answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{gateway.http_port}/live", timeout=2)
    # A client that does not trust the test CA refuses the server.
    with pytest.raises(httpx.ConnectError):
        httpx.get(gateway.url + "/live", timeout=2)
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(b"", metadata=(("authorization", "Bearer token-from-env"),), timeout=3)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert gateway.proc.poll() is None
