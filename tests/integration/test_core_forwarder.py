"""The OTLP forwarder against real upstreams: another gateway (HTTP and gRPC), and a recording
upstream that answers errors with Retry-After."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_client import PB, push, self_metric
from tests.support.gateway_config import QUIET
from tests.support.otlp import Req
from tests.support.promtext import parse
from tests.support.servers import run_gateway
from tests.support.upstream import run_upstream
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

# Only the test's own points travel upstream: the system observer and the health checks
# (whose metrics go through the pipeline too, the memory limiter's included) are off.


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_forwards_to_another_gateway(tmp_path: Path, protocol: str) -> None:
    with run_gateway(tmp_path) as upstream:
        endpoint = upstream.url if protocol == "http/protobuf" else upstream.grpc_target
        config = QUIET + f"forwarder:\n  endpoint: {endpoint}\n  protocol: {protocol}\n"
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            push(gw, Req(service="fwd").sum("orders", [({"shop": "x"}, 42, 0, 10)]))
            eventually(
                lambda: bool(parse(httpx.get(upstream.url + "/metrics").text).all("orders_total"))
            )
            s = parse(httpx.get(upstream.url + "/metrics").text)
            assert s.value("orders_total", job="fwd", shop="x") == 42
            assert self_metric(gw, "coderunner_gateway_points_forwarded_total") >= 1
            # The gateway's own metrics are not forwarded: the upstream has only its own.
            assert all(
                lab.get("instance", "").endswith(str(upstream.http_port))
                for lab, _ in s.all("coderunner_gateway_points_received_total")
            )


def test_retries_honour_retry_after_then_deliver(tmp_path: Path) -> None:
    with run_upstream() as upstream:
        upstream.fail_next(503, 1, retry_after="1")
        upstream.fail_next(429, 1, retry_after="1")
        config = f"forwarder:\n  endpoint: {upstream.url}\n  initial_backoff_seconds: 0.1\n"
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            started = time.monotonic()
            push(gw, Req(service="r").sum("c", [({"k": str(i)}, i, 0, 10) for i in range(5)]))
            eventually(lambda: upstream.points_of("r") == 5)
            # Two "Retry-After: 1" waits; the 0.1 s backoff alone would take ~0.3 s.
            assert time.monotonic() - started >= 1.5
            assert upstream.attempts >= 3
            assert self_metric(gw, "coderunner_gateway_points_forwarded_total") >= 5


def test_permanent_upstream_error_drops_and_counts(tmp_path: Path) -> None:
    with run_upstream() as upstream:
        upstream.fail_next(400, 1)
        config = QUIET + f"forwarder:\n  endpoint: {upstream.url}\n"
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            push(gw, Req(service="p").sum("c", [({}, 1, 0, 10)]))
            eventually(
                lambda: (
                    self_metric(
                        gw, "coderunner_gateway_points_dropped_total", reason="rejected_upstream"
                    )
                    == 1
                )
            )
            push(gw, Req(service="p").sum("c", [({}, 2, 0, 20)]))
            eventually(lambda: upstream.points_of("p") == 1)


def test_full_queue_refuses_with_retry_after_by_default(tmp_path: Path) -> None:
    with run_upstream() as upstream:
        # Every attempt fails with a long Retry-After: the first batch blocks the queue.
        upstream.fail_next(503, 1000, retry_after="60")
        config = QUIET + f"forwarder:\n  endpoint: {upstream.url}\n  queue_size: 2\n"
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            statuses = []
            for i in range(5):
                req = Req(service="q").sum("c", [({"i": str(i)}, 1, 0, 10)])
                r = httpx.post(gw.otlp_http, content=req.bytes(), headers=PB)
                statuses.append(r.status_code)
                if r.status_code == 503:
                    assert int(r.headers["Retry-After"]) >= 1
            assert statuses == [200, 200, 503, 503, 503]
            assert self_metric(gw, "coderunner_gateway_forward_queue_length") == 2
            assert self_metric(gw, "coderunner_gateway_forward_queue_utilization_ratio") == 1.0
            assert (
                self_metric(gw, "coderunner_gateway_requests_refused_total", transport="http") == 3
            )


def test_sigterm_flushes_the_queue_and_exits_zero(tmp_path: Path) -> None:
    with run_upstream() as upstream:
        upstream.fail_next(503, 1, retry_after="1")
        config = QUIET + (
            f"forwarder:\n  endpoint: {upstream.url}\nserver:\n  shutdown_grace_seconds: 8\n"
        )
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            push(gw, Req(service="s").sum("c", [({}, 3, 0, 10)]))
            code = gw.stop(signal.SIGTERM, timeout=15)
            assert code == 0, gw.log_text()
            assert upstream.points_of("s") == 1


def test_standard_otel_variables_configure_the_running_gateway(tmp_path: Path) -> None:
    with run_upstream() as upstream:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": upstream.url,
            "OTEL_SERVICE_NAME": "gw-under-test",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci",
        }
        with run_gateway(tmp_path, config=QUIET, grpc=False, env=env) as gw:
            push(gw, Req(service="otel-env").sum("c", [({}, 4, 0, 10)]))
            eventually(lambda: upstream.points_of("otel-env") == 1)
            s = parse(httpx.get(gw.url + "/metrics/self").text)
            assert s.all("coderunner_gateway_active_series", job="gw-under-test")
            assert s.value("target_info", job="gw-under-test", deployment_environment="ci") == 1


def test_a_wrong_upstream_token_is_counted_by_reason_and_logged_once(tmp_path: Path) -> None:
    """Issue 19, item 6: the running gateway, a real upstream that wants another token."""
    with run_upstream() as upstream:
        upstream.token = "right"
        config = QUIET + (
            f"forwarder:\n  endpoint: {upstream.url}\n  headers: {{authorization: Bearer wrong}}\n"
        )
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            for i in range(3):
                push(gw, Req(service="t").sum("c", [({}, i, 0, 10 + i)]))
            eventually(
                lambda: (
                    self_metric(
                        gw,
                        "coderunner_gateway_points_dropped_total",
                        reason="upstream_unauthorized",
                    )
                    == 3
                )
            )
            log = gw.log_text()
    assert log.count("WARNING gateway.exporters.otlp_forwarder: forwarder: dropping") == 1, log


def test_unknown_paths_are_counted_as_refused(tmp_path: Path) -> None:
    """Issue 19, item 6: a service exporting to a wrong path got a 404 nothing counted."""
    with run_gateway(tmp_path, config=QUIET, grpc=False) as gw:
        req = Req(service="p").sum("c", [({}, 1, 0, 10)])
        wrong = httpx.post(gw.url + "/v1/metric", content=req.bytes(), headers=PB)
        traces = httpx.post(gw.url + "/v1/traces", content=b"", headers=PB)
        assert (wrong.status_code, traces.status_code) == (404, 404)
        assert "POST /v1/metrics" in wrong.text
        assert httpx.get(gw.url + "/live").status_code == 200  # known paths are not counted
        refused = self_metric(
            gw, "coderunner_gateway_requests_refused_total", transport="http", reason="not_found"
        )
        assert refused == 2


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_gateway_upstream_refusing_the_token_counts_upstream_unauthorized(
    tmp_path: Path, protocol: str
) -> None:
    """Issue 19, item 6, over both transports: another gateway with ingest auth as upstream
    (HTTP 401, gRPC UNAUTHENTICATED)."""
    auth = "auth: {enabled: true}\n"
    env = {"GATEWAY_AUTH__TOKENS": "{edge: right}"}
    with run_gateway(tmp_path, config=QUIET + auth, env=env) as upstream:
        endpoint = upstream.url if protocol == "http/protobuf" else upstream.grpc_target
        config = QUIET + (
            f"forwarder:\n  endpoint: {endpoint}\n  protocol: {protocol}\n"
            "  headers: {authorization: Bearer wrong}\n"
        )
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            push(gw, Req(service="u").sum("c", [({}, 1, 0, 10)]))
            eventually(
                lambda: (
                    self_metric(
                        gw,
                        "coderunner_gateway_points_dropped_total",
                        reason="upstream_unauthorized",
                    )
                    == 1
                )
            )
