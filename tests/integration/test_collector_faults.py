"""At-least-once delivery through the real Collector, with faults injected for real.

    stream of numbered points -> gateway (disk queue) -> Collector (otel-collector/config.yaml
    + longterm.yaml: persistent sending queue on file_storage) -> recording upstream

Every point carries its own sequence number (see test_reliability_fault.py). The Collector is
SIGKILLed mid-stream and restarted on the same ports and queue directory: the gateway's disk
queue holds what the Collector did not accept. Then, with the final upstream down, the
Collector accepts into its persistent queue and is SIGKILLed again: its file_storage queue
must hand everything on after the restart. Every accepted point must arrive; duplicates are
allowed (at-least-once), counted and bounded.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.collector import COLLECTOR_DIR, CollectorPorts, load_config, run_collector
from tests.support.fault_stream import LANES, Stream, recorder
from tests.support.gateway_client import self_metric
from tests.support.promtext import parse
from tests.support.servers import run_gateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

TOTAL = 300  # requests of LANES points


def _collector_queue_size(telemetry: str) -> float:
    text = httpx.get(f"http://{telemetry}/metrics", timeout=5).text
    return sum(
        v
        for labels, v in parse(text).all("otelcol_exporter_queue_size")
        if labels.get("exporter") == "otlp_http/longterm"
    )


def test_collector_sigkills_lose_nothing(tmp_path: Path) -> None:
    config = load_config(COLLECTOR_DIR / "config.yaml", COLLECTOR_DIR / "longterm.yaml")
    # The repository's retry settings, only faster, so the test does not wait 30 s backoffs.
    retry = config["exporters"]["otlp_http/longterm"]["retry_on_failure"]
    retry.update(initial_interval="100ms", max_interval="500ms")
    ports = CollectorPorts()
    stream = Stream(total=TOTAL)
    with recorder() as upstream:
        env = {"LONGTERM_OTLP_ENDPOINT": upstream.url}
        gateway_config = f"""
observers: {{enabled: false}}
forwarder:
  endpoint: http://127.0.0.1:{ports.otlp_http}
  initial_backoff_seconds: 0.05
  max_backoff_seconds: 0.3
  max_elapsed_seconds: 0
queue: {{kind: disk, path: {tmp_path / "gateway-queue" / "forward.db"}}}
"""
        with run_gateway(tmp_path, config=gateway_config, grpc=False) as gw:
            with run_collector(tmp_path, config, ports=ports, env=env) as collector:
                stream.start(gw.otlp_http)
                stream.wait_accepted(60)
                # 1. The Collector dies mid-stream: what it acknowledged is on its disk, the
                #    rest stays in the gateway's disk queue.
                collector.proc.kill()
                collector.proc.wait()
            stream.wait_accepted(120)
            assert self_metric(gw, "coderunner_gateway_forward_queue_length") > 0
            with run_collector(tmp_path, config, ports=ports, env=env) as collector:
                stream.wait_accepted(160)
                # 2. The final upstream goes away: the Collector's persistent queue fills...
                upstream.stop()
                stream.wait_accepted(230)
                eventually(
                    lambda: _collector_queue_size(collector.telemetry_target) > 0,
                    timeout=15,
                    what="the Collector's persistent queue never held anything",
                )
                # ...and the Collector dies with it full.
                collector.proc.kill()
                collector.proc.wait()
            with run_collector(tmp_path, config, ports=ports, env=env) as collector:
                upstream.start()
                assert stream.done.wait(90), "the stream did not finish"
                eventually(
                    lambda: not upstream.missing(stream.accepted),
                    timeout=60,
                    what=f"never arrived: {sorted(upstream.missing(stream.accepted))[:20]}",
                )
                redelivered = self_metric(gw, "coderunner_gateway_points_redelivered_total")
                # The queues drain: nothing is left on its way.
                eventually(
                    lambda: _collector_queue_size(collector.telemetry_target) == 0,
                    timeout=20,
                    what="the Collector's persistent queue did not drain",
                )
    accepted = stream.accepted
    assert len(accepted) == TOTAL * LANES
    assert not upstream.missing(accepted)
    duplicates = upstream.duplicates()
    # At-least-once: the gateway re-sends what it did not see acknowledged (counted), and the
    # Collector's persistent queue re-sends the batches in flight when it was killed: at most
    # num_consumers (4) x max_size (16384) per kill.
    assert duplicates <= stream.resent_points + redelivered + 2 * 4 * 16384
    print(
        f"\n{len(accepted)} points accepted, all delivered through two Collector SIGKILLs; "
        f"duplicates at the upstream: {duplicates} (gateway redelivered: {redelivered:.0f}, "
        f"client re-sends: {stream.resent_points})"
    )
