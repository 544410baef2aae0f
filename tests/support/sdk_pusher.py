"""Run as a separate process: the real OpenTelemetry SDK pushes a fixed set of measurements to
the gateway, over two collection cycles, then exits.

    python -m tests.support.sdk_pusher http|grpc ENDPOINT delta|cumulative SERVICE

Tests call `push_with_sdk`, which runs that and waits for it. A process of its own, because the
SDK's global state (and its exporters' threads) must not leak into the test process.

What it records (so tests know the exact expected values):
    counter     app.requests     +1 x10 then +5      route=/a code=200  -> 15
    updown      app.active       +3, -1 then +2      no attributes      -> 4
    gauge       app.temperature  21.5 then 22.5      room=x             -> 22.5
    histogram   app.duration     0.1*i (i<10), 7.0   route=/a           -> count 11, sum 11.5
    exp. hist.  exp.latency      1..10, then 20      route=/b           -> count 11, sum 75
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

_REPO = Path(__file__).resolve().parents[2]


def push_with_sdk(protocol: str, endpoint: str, temporality: str, service: str) -> None:
    """Runs the pusher against `endpoint` (an OTLP/HTTP URL, or a gRPC host:port) and waits
    for it to exit; raises when it fails."""
    module = "tests.support.sdk_pusher"
    command = [sys.executable, "-m", module, protocol, endpoint, temporality, service]
    subprocess.run(command, cwd=_REPO, check=True, timeout=60)


def main() -> None:
    protocol, endpoint, temporality, service = sys.argv[1:5]
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        kwargs: dict[str, object] = {"endpoint": endpoint}
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )

        kwargs = {"endpoint": endpoint, "insecure": True}
    t = (
        AggregationTemporality.DELTA
        if temporality == "delta"
        else AggregationTemporality.CUMULATIVE
    )
    exporter = OTLPMetricExporter(
        preferred_temporality={Counter: t, UpDownCounter: t, Histogram: t}, **kwargs
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create(
            {"service.name": service, "service.instance.id": f"{service}-1", "env": "test"}
        ),
        views=[
            View(instrument_name="exp.*", aggregation=ExponentialBucketHistogramAggregation()),
        ],
    )
    meter = provider.get_meter("sdk.pusher", "1.0")
    requests = meter.create_counter("app.requests", unit="{request}", description="Requests")
    active = meter.create_up_down_counter("app.active", unit="{connection}", description="Open")
    temperature = meter.create_gauge("app.temperature", unit="Cel", description="Temperature")
    duration = meter.create_histogram("app.duration", unit="s", description="Duration")
    latency = meter.create_histogram("exp.latency", unit="s", description="Latency")

    for i in range(10):
        requests.add(1, {"route": "/a", "code": 200})
        duration.record(i * 0.1, {"route": "/a"})
        latency.record(i + 1, {"route": "/b"})
    active.add(3)
    active.add(-1)
    temperature.set(21.5, {"room": "x"})
    provider.force_flush()  # first collection cycle

    requests.add(5, {"route": "/a", "code": 200})
    active.add(2)
    temperature.set(22.5, {"room": "x"})
    duration.record(7.0, {"route": "/a"})
    latency.record(20, {"route": "/b"})
    provider.shutdown()  # second cycle, then exit


if __name__ == "__main__":
    main()
