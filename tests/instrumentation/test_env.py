"""One test per OTEL_* variable we honour, each against a real OTLP receiver (HTTP or gRPC)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)

from instrumentation import Instrumentation, InstrumentationSettings, setup
from tests.support.instrumentation import OtlpHttpReceiver, otlp_http_receiver

ALL_OTEL = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_OTEL:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[OtlpHttpReceiver]:
    with otlp_http_receiver() as r:
        yield r


def quiet(**kwargs: object) -> Instrumentation:
    settings = InstrumentationSettings(set_global=False, instrument_asyncpg=False, **kwargs)  # type: ignore[arg-type]
    return setup(settings)


def count_one(h: Instrumentation) -> None:
    h.meter_provider.get_meter("test").create_counter("logins").add(1, {"plan_type": "free"})


def export_once(**kwargs: object) -> None:
    h = quiet(**kwargs)
    count_one(h)
    h.shutdown()  # flushes: one export


@pytest.mark.integration
def test_endpoint_gets_the_signal_path(
    receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    export_once()
    assert [r.path for r in receiver.received] == ["/v1/metrics"]


@pytest.mark.integration
def test_metrics_endpoint_is_used_as_is_and_wins(
    receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9/never")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", receiver.url + "/custom/ingest")
    export_once()
    assert [r.path for r in receiver.received] == ["/custom/ingest"]


@pytest.mark.integration
def test_explicit_endpoint_argument_wins_over_the_environment(
    receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:9/v1/metrics")
    export_once(endpoint=receiver.url)
    assert [r.path for r in receiver.received] == ["/v1/metrics"]


@pytest.mark.integration
def test_headers(receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=blue,authorization=Bearer%20t0k")
    export_once()
    headers = receiver.received[0].headers
    assert headers["x-tenant"] == "blue"
    assert headers["authorization"] == "Bearer t0k"


@pytest.mark.integration
def test_metrics_headers_win_over_general_headers(
    receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=general")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=metrics")
    export_once()
    assert receiver.received[0].headers["x-tenant"] == "metrics"


@pytest.mark.integration
def test_service_name(receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored")
    export_once()
    (attrs,) = receiver.resource_attributes()
    assert attrs["service.name"] == "billing"  # OTEL_SERVICE_NAME wins, as the spec says


@pytest.mark.integration
def test_resource_attributes_override_defaults_not_arguments(
    receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment=staging,team=platform,service.version=9.9",
    )
    export_once(service_name="api", service_version="1.2.3")
    (attrs,) = receiver.resource_attributes()
    assert attrs["deployment.environment"] == "staging"  # env beats our default
    assert attrs["team"] == "platform"
    assert attrs["service.version"] == "1.2.3"  # an argument beats the env
    assert attrs["service.name"] == "api"
    assert attrs["service.namespace"] == "coderunner"
    assert attrs["host.name"]
    assert len(attrs["service.instance.id"]) == 36


@pytest.mark.integration
def test_export_interval(receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")  # ms
    h = quiet(service_name="svc")
    try:
        count_one(h)
        deadline = time.monotonic() + 5
        while len(receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The default interval (5 s) would have sent nothing yet.
        assert len(receiver.received) >= 3
    finally:
        h.shutdown()


@pytest.mark.integration
def test_sdk_disabled_sends_nothing(
    receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    export_once()
    assert receiver.received == []


class _GrpcMetrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.arrived = threading.Event()

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        self.arrived.set()
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.mark.parametrize(
    "variables",
    [
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        # The per-signal variable wins over the general one.
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
        },
    ],
    ids=["OTLP_PROTOCOL", "OTLP_METRICS_PROTOCOL"],
)
def test_protocol_grpc(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    servicer = _GrpcMetrics()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        export_once(service_name="grpc-svc")
        assert servicer.arrived.wait(5)
        names = {
            m.name
            for rm in servicer.requests[0].resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        assert "logins" in names
    finally:
        server.stop(0)


def test_unsupported_protocol_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match=r"http/json.*not supported"):
        quiet(service_name="svc")
