"""Issue 19, item 6: forwarding trouble at WARNING once per episode with one "recovered" line,
and answers retrying cannot fix (401/403, 404 for a wrong path) counted by their own reason;
points rejected in a partial success likewise logged once per episode. Against a real OTLP/HTTP
upstream (tests/support/upstream.py), and the real Collector for what it answers when it takes
no metrics.
Against a real OTLP/HTTP upstream (tests/support/upstream.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ForwarderConfig
from gateway.exporters.otlp_forwarder import OtlpForwarder
from gateway.pipeline.batch import MetricsBatch
from tests.support.collector import run_collector
from tests.support.otlp import Req
from tests.support.upstream import Upstream, run_upstream

LOGGER = "gateway.exporters.otlp_forwarder"

# A real upstream HTTP server (tests/support/upstream.py) on a socket.
pytestmark = pytest.mark.integration


def batch(value: float) -> MetricsBatch:
    return MetricsBatch(Req(service="svc").gauge("g", [({}, value, 1)]).request)


async def _settle(forwarder: OtlpForwarder, done: int) -> None:
    """Wait until `done` points were forwarded or dropped."""
    for _ in range(250):
        handled = forwarder.counters.forwarded + sum(forwarder.counters.dropped.values())
        if handled >= done:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{done} points not handled: {forwarder.counters.dropped}")


def send(
    config: ForwarderConfig, points: int, fix_before_last: Callable[[], None]
) -> OtlpForwarder:
    """Forward `points` batches of one point, one after the other; call `fix_before_last`
    before the last one."""

    async def scenario() -> OtlpForwarder:
        forwarder = OtlpForwarder(config)
        await forwarder.start()
        for n in range(1, points + 1):
            if n == points:
                fix_before_last()
            forwarder.consume(batch(float(n)))
            await _settle(forwarder, n)
        await forwarder.shutdown(1.0)
        return forwarder

    return asyncio.run(scenario())


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= 30]


def test_upstream_down_is_one_warning_and_one_recovered_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Upstream trouble logged INFO once per retry and never said it was over."""
    with run_upstream() as upstream, caplog.at_level(logging.DEBUG, logger=LOGGER):
        upstream.fail_next(503, 4)
        config = ForwarderConfig(endpoint=upstream.url, initial_backoff_seconds=0.02)
        forwarder = send(config, 2, lambda: None)
        assert upstream.points_of("svc") == 2
    assert forwarder.dropped() == {}
    lines = warnings(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("forwarder: upstream answered 503")
    assert "retrying with backoff" in lines[0]
    assert lines[1].startswith(f"forwarder: upstream {upstream.url} recovered after ")
    assert "0 points dropped meanwhile" in lines[1]


def _fix_token(upstream: Upstream) -> None:
    upstream.token = None


def _fix_path(upstream: Upstream) -> None:
    upstream.path = "/otlp/v1/metrics"  # the upstream now listens where the gateway sends


@pytest.mark.parametrize(
    ("suffix", "token", "fix", "reason", "hint"),
    [
        ("", "right", _fix_token, "upstream_unauthorized", "HTTP 401 (check the token in "),
        ("/otlp", None, _fix_path, "upstream_not_found", "HTTP 404 (no OTLP metrics receiver at "),
    ],
)
def test_a_refusal_retrying_cannot_fix_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
    suffix: str,
    token: str | None,
    fix: Callable[[Upstream], None],
    reason: str,
    hint: str,
) -> None:
    """A wrong token logged one WARNING per batch; a wrong path (404) was counted with any
    other refusal. Three batches refused, then the upstream takes one: one line each way."""
    with run_upstream() as upstream, caplog.at_level(logging.DEBUG, logger=LOGGER):
        upstream.token = token
        config = ForwarderConfig(endpoint=upstream.url + suffix)
        forwarder = send(config, 4, lambda: fix(upstream))
        assert upstream.points_of("svc") == 1
    assert forwarder.dropped() == {reason: 3}
    lines = warnings(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"forwarder: dropping points the upstream {upstream.url}")
    assert f"{reason}: {hint}" in lines[0]
    assert f"gateway.points.dropped{{reason='{reason}'}}" in lines[0]
    assert "recovered" in lines[1] and "3 points dropped meanwhile" in lines[1]


def test_partial_rejections_from_a_real_upstream_are_one_warning_and_one_recovered_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An upstream that rejected a point of every batch logged one WARNING per batch."""
    with run_upstream() as upstream, caplog.at_level(logging.DEBUG, logger=LOGGER):
        upstream.rejections = [1, 1, 1]
        forwarder = send(ForwarderConfig(endpoint=upstream.url), 4, lambda: None)
    assert forwarder.dropped() == {"rejected_upstream": 3}
    assert forwarder.counters.forwarded == 1
    lines = warnings(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"forwarder: upstream {upstream.url} rejected 1 points of a batch")
    assert "data point too old" in lines[0]
    assert lines[1].startswith(f"forwarder: upstream {upstream.url} recovered after ")
    assert "3 points dropped meanwhile" in lines[1]


#: The Collector with an OTLP receiver in a traces-only pipeline: its receiver registers the
#: gRPC services and HTTP paths of the signals a pipeline consumes, so the metrics service is
#: not there (gRPC UNIMPLEMENTED "unknown service ...MetricsService", HTTP 404). What a
#: forwarder pointed at a tracing Collector, or at its gRPC port by a wrong endpoint, meets.
TRACES_ONLY: dict[str, Any] = {
    "extensions": {"health_check": {"endpoint": "set by run_collector"}},
    "receivers": {
        "otlp": {"protocols": {"grpc": {"endpoint": "set"}, "http": {"endpoint": "set"}}}
    },
    "exporters": {"otlp_http/nowhere": {"endpoint": "http://127.0.0.1:9"}},
    "service": {
        "extensions": ["health_check"],
        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp_http/nowhere"]}},
        # no own-metrics listener (it would default to :8888, shared by parallel tests)
        "telemetry": {"metrics": {"level": "none"}},
    },
}


@pytest.mark.parametrize(
    ("protocol", "answer"),
    [
        ("grpc", "UNIMPLEMENTED (no OTLP metrics receiver at "),
        ("http/protobuf", "HTTP 404 (no OTLP metrics receiver at "),
    ],
)
def test_a_collector_without_a_metrics_pipeline_is_upstream_not_found(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, protocol: str, answer: str
) -> None:
    """gRPC UNIMPLEMENTED maps to `upstream_not_found` (not retried, logged once), as HTTP 404
    does: checked against the real Collector, not a status a test server made up."""
    with (
        run_collector(tmp_path, TRACES_ONLY) as collector,
        caplog.at_level(logging.DEBUG, logger=LOGGER),
    ):
        endpoint = collector.otlp_grpc_target if protocol == "grpc" else collector.otlp_http_url
        config = ForwarderConfig(endpoint=endpoint, protocol=protocol)
        forwarder = send(config, 3, lambda: None)
    assert forwarder.dropped() == {"upstream_not_found": 3}
    assert forwarder.counters.forwarded == 0
    assert forwarder.counters.rejected_upstream == 3  # three answers: nothing retried
    (line,) = warnings(caplog)
    assert f"upstream_not_found: {answer}{endpoint}" in line, line
    if protocol == "grpc":
        assert "unknown service opentelemetry.proto.collector.metrics.v1.MetricsService" in line
