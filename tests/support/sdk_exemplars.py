"""Run as a separate process: the real OpenTelemetry SDK records measurements inside sampled
spans, so that its default exemplar filter (trace_based) attaches exemplars, and pushes them
to the gateway over OTLP/HTTP; prints the spans' ids as JSON and exits.

    python -m tests.support.sdk_exemplars ENDPOINT delta|cumulative SERVICE

Tests call `push_exemplars`. What it records:
    counter    shop.checkouts  +1 in span "checkout" {route=/pay, user.id=u-7, note=say "hi"};
                               the view keeps only `route`, so `user.id` and `note` are the
                               exemplar's filtered attributes
    histogram  shop.latency    0.05 in span "fast", 3.0 in span "slow", 0.5 outside any span
                               (no exemplar), bounds 0.1, 1, 5
    histogram  http.server.request.duration  0.2 in span "request" {GET, /pay, 200, https}:
                               the gateway's default views make coderunner_api_duration_seconds
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def push_exemplars(endpoint: str, temporality: str, service: str) -> dict[str, dict[str, str]]:
    """Runs the pusher against `endpoint` (an OTLP/HTTP metrics URL) and returns the ids of
    its spans: {"checkout" | "fast" | "slow" | "request": {"trace_id": hex, "span_id": hex}}."""
    command = [sys.executable, "-m", "tests.support.sdk_exemplars", endpoint, temporality, service]
    done = subprocess.run(command, cwd=_REPO, check=True, timeout=60, capture_output=True)
    ids: dict[str, dict[str, str]] = json.loads(done.stdout)
    return ids


def main() -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    endpoint, temporality, service = sys.argv[1:4]
    t = (
        AggregationTemporality.DELTA
        if temporality == "delta"
        else AggregationTemporality.CUMULATIVE
    )
    exporter = OTLPMetricExporter(
        endpoint=endpoint, preferred_temporality={Counter: t, Histogram: t}
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": service, "service.instance.id": "i-1"}),
        views=[
            View(instrument_name="shop.checkouts", attribute_keys={"route"}),
            View(
                instrument_name="shop.latency",
                aggregation=ExplicitBucketHistogramAggregation((0.1, 1.0, 5.0)),
            ),
        ],
    )
    meter = provider.get_meter("shop", "1.0")
    checkouts = meter.create_counter("shop.checkouts", unit="{checkout}")
    latency = meter.create_histogram("shop.latency", unit="s")
    # The default sampler samples every root span; no span processor: nothing is exported.
    tracer = TracerProvider().get_tracer("shop")
    ids: dict[str, dict[str, str]] = {}

    requests = meter.create_histogram("http.server.request.duration", unit="s")

    def remember(name: str, span: object) -> None:
        ctx = span.get_span_context()  # type: ignore[attr-defined]
        ids[name] = {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}

    with tracer.start_as_current_span("checkout") as span:
        checkouts.add(1, {"route": "/pay", "user.id": "u-7", "note": 'say "hi"'})
        remember("checkout", span)
    with tracer.start_as_current_span("fast") as span:
        latency.record(0.05, {"route": "/pay"})
        remember("fast", span)
    with tracer.start_as_current_span("slow") as span:
        latency.record(3.0, {"route": "/pay"})
        remember("slow", span)
    latency.record(0.5, {"route": "/pay"})  # no span: no exemplar
    with tracer.start_as_current_span("request") as span:
        http = {"http.request.method": "GET", "http.route": "/pay", "url.scheme": "https"}
        requests.record(0.2, {**http, "http.response.status_code": 200})
        remember("request", span)
    provider.shutdown()  # one collection, exported
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
