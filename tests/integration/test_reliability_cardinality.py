"""A cardinality attack: one service sends 1,000,000 distinct series of one counter.

The gateway must hold at most the configured number of series for the stream, fold the rest
into the stream's overflow series (`otel_metric_overflow="true"`) so that the total is still
right, say so in alertable self-metrics (`coderunner_gateway_points_overflowed_total`, and
`coderunner_gateway_points_dropped_total{reason="cardinality_limit"}` for what the limiter could
not track), and stay under its configured memory limit throughout.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.support.promtext import parse
from tests.support.servers import run_gateway

pytestmark = pytest.mark.integration

SERIES = 1_000_000
PER_REQUEST = 10_000
HELD = 2_000  # cardinality.max_series_per_stream
TRACKED = 1_000_000  # cardinality.max_tracked_overflow_series: every overflowed series
SOFT_LIMIT = 768 * 1024 * 1024  # memory_limiter.soft_limit_bytes
CONFIG = f"""
observers: {{enabled: false}}
cardinality:
  max_series_per_stream: {HELD}
  max_series_per_service: 0
  max_tracked_overflow_series: {TRACKED}
memory_limiter:
  soft_limit_bytes: {SOFT_LIMIT}
  hard_limit_bytes: {SOFT_LIMIT + 128 * 1024 * 1024}
"""


def attack_body(first: int) -> bytes:
    """PER_REQUEST series `user_id=first..`, each a cumulative counter at 1."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "attacker"
    m = rm.scope_metrics.add().metrics.add()
    m.name = "attack.requests"
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    dps = m.sum.data_points
    for n in range(first, first + PER_REQUEST):
        p = dps.add(start_time_unix_nano=1_000_000_000, time_unix_nano=2_000_000_000, as_int=1)
        p.attributes.add(key="user_id").value.string_value = str(n)
    return request.SerializeToString()


def test_one_million_series(tmp_path: Path) -> None:
    with run_gateway(tmp_path, config=CONFIG, grpc=False) as gw:
        proc = psutil.Process(gw.proc.pid)
        peak = [proc.memory_info().rss]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        # Bodies are built in a thread while the previous ones are in flight.
        bodies: queue.Queue[bytes] = queue.Queue(maxsize=4)
        builder = threading.Thread(
            target=lambda: [bodies.put(attack_body(f)) for f in range(0, SERIES, PER_REQUEST)],
            daemon=True,
        )
        builder.start()
        conn = http.client.HTTPConnection("127.0.0.1", gw.http_port, timeout=60)
        retried = 0
        started = time.monotonic()
        try:
            for _ in range(0, SERIES, PER_REQUEST):
                body = bodies.get(timeout=60)
                while True:
                    conn.request(
                        "POST",
                        "/v1/metrics",
                        body=body,
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 503:  # the memory limiter: retry later
                        break
                    retried += 1
                    time.sleep(float(resp.headers.get("Retry-After", "1")))
                assert resp.status == 200
        finally:
            conn.close()
            done.set()
            watcher.join()
        took = time.monotonic() - started
        peak[0] = max(peak[0], proc.memory_info().rss)

        text = httpx.get(gw.url + "/metrics", timeout=60).text
        samples = parse(text)
        series = samples.all("attack_requests_total")
        overflow = [v for labels, v in series if labels.get("otel_metric_overflow") == "true"]
        held = [v for labels, v in series if "otel_metric_overflow" not in labels]
        folded = sum(v for _, v in samples.all("coderunner_gateway_points_overflowed_total"))
        dropped = sum(
            v
            for _, v in samples.all(
                "coderunner_gateway_points_dropped_total", reason="cardinality_limit"
            )
        )
    assert len(held) == HELD and set(held) == {1.0}
    assert len(overflow) == 1
    # Every series counted once: held ones, the overflow series, and anything not tracked.
    assert sum(held) + overflow[0] + dropped == SERIES
    assert overflow[0] == SERIES - HELD, "the overflow series holds the rest"
    assert folded == SERIES - HELD
    assert peak[0] < SOFT_LIMIT, f"peak RSS {peak[0] >> 20} MiB"
    print(
        f"\n{SERIES:,} series in {took:.1f} s: held {len(held)}, overflow series "
        f"{overflow[0]:,.0f}, dropped {dropped:,.0f}; peak RSS {peak[0] / 2**20:.0f} MiB "
        f"(soft limit {SOFT_LIMIT >> 20} MiB), {retried} requests retried after 503"
    )
