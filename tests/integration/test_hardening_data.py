"""Issue 17, findings 8-11: data lost or doubled around the forward queue. Real gateway
processes; a full disk is a file-size limit (`prlimit --fsize`: writes past it fail with
EFBIG, which SQLite reports as it reports a full disk)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.disk_queue import (
    damaged_queue,
    dead_upstream,
    padded_delta_request,
)
from tests.support.promtext import parse
from tests.support.servers import REPO, free_port, run_gateway

pytestmark = pytest.mark.integration

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def test_a_full_disk_refuses_before_the_store_so_retries_do_not_double_count(
    tmp_path: Path,
) -> None:
    """Finding 8: the enqueue failed after the store had counted the points, and the client got
    a 500: three retried +1s left 3.0 on /metrics. Now the client gets 503 before the store;
    every answered 200 is counted once, and retries of refused requests count nothing."""
    config = (
        "observers: {enabled: false}\n"
        f"forwarder: {{endpoint: '{dead_upstream()}', max_elapsed_seconds: 0}}\n"
        f"queue: {{kind: disk, path: '{tmp_path / 'q.db'}', retry_after_seconds: 1}}\n"
        "health: {details: always, upstream: {interval_seconds: 1}}\n"
    )
    ok = refused = errors = 0
    with (
        run_gateway(tmp_path, config=config, prefix=["prlimit", "--fsize=600000"]) as gw,
        httpx.Client(timeout=10) as client,
    ):
        for i in range(1, 80):
            for _attempt in range(2):  # a client that retries once what was not accepted
                r = client.post(gw.otlp_http, content=padded_delta_request(i), headers=PROTOBUF)
                if r.status_code == 200:
                    ok += 1
                    break
                if r.status_code == 503:
                    refused += 1
                    assert r.headers.get("Retry-After")
                else:
                    errors += 1
        samples = parse(client.get(gw.url + "/metrics").text)
        deadline = time.monotonic() + 30  # the check runs on its own interval
        health = ""
        while "disk queue cannot write" not in health and time.monotonic() < deadline:
            health = client.get(gw.url + "/api/health").text
            time.sleep(0.5)
    assert errors == 0, "a full disk must answer 503, not an error"
    assert refused > 0, "the file-size limit was never reached: the test proves nothing"
    assert samples.value("hits_total", job="disk") == ok
    assert samples.value("coderunner_gateway_points_dropped_total", reason="queue_write_error") > 0
    # Refused under its own reason, not `unavailable` like a full queue or memory pressure.
    refusals = samples.value(
        "coderunner_gateway_requests_refused_total", transport="http", reason="queue_write_error"
    )
    assert refusals == refused
    assert "disk queue cannot write" in health


def _gateway_argv(config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gateway",
        "run",
        "--http-port",
        str(free_port()),
        "--grpc-port",
        "0",
        "--config",
        str(config),
    ]


def test_a_second_gateway_on_the_same_queue_refuses_to_start(tmp_path: Path) -> None:
    """Finding 9: two gateways on one queue file saw phantom entries, a negative length that
    made /metrics answer 500, and a dead forwarder."""
    config = (
        "observers: {enabled: false}\n"
        f"forwarder: {{endpoint: '{dead_upstream()}'}}\n"
        f"queue: {{kind: disk, path: '{tmp_path / 'q.db'}'}}\n"
    )
    with run_gateway(tmp_path, config=config) as first:
        cfg = tmp_path / "second.yaml"
        cfg.write_text(config)
        second = subprocess.run(
            _gateway_argv(cfg), cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2
        assert "is in use by another process" in second.stderr
        assert httpx.get(first.url + "/metrics").status_code == 200


def test_a_damaged_queue_is_set_aside_not_a_crash_loop(tmp_path: Path) -> None:
    """Finding 10: a queue file with a damaged interior page crash-looped the gateway."""
    path = tmp_path / "q.db"
    damaged_queue(path)
    config = (
        "observers: {enabled: false}\n"
        f"forwarder: {{endpoint: '{dead_upstream()}'}}\n"
        f"queue: {{kind: disk, path: '{path}'}}\n"
    )
    with run_gateway(tmp_path, config=config) as gw:
        text = httpx.get(gw.url + "/metrics").text
        assert parse(text).value("coderunner_gateway_forward_queue_corrupt_total") == 1
        assert "is damaged" in gw.log_text() and "moved to" in gw.log_text()
    assert len(list(tmp_path.glob("q.db.corrupt-*"))) == 1


def test_sigterm_with_undeliverable_memory_queue_says_what_is_dropped(tmp_path: Path) -> None:
    """Finding 11: SIGTERM with the memory queue and the upstream down dropped every queued point
    with nothing logged. Exit code 0 stays (docs/operations.md says why)."""
    config = (
        "observers: {enabled: false}\n"
        "server: {shutdown_grace_seconds: 2}\n"
        f"forwarder: {{endpoint: '{dead_upstream()}'}}\n"
    )
    with run_gateway(tmp_path, config=config) as gw:
        for i in range(1, 4):
            r = httpx.post(gw.otlp_http, content=padded_delta_request(i), headers=PROTOBUF)
            assert r.status_code == 200
        time.sleep(0.5)
        code = gw.stop(signal.SIGTERM, timeout=20)
        log = gw.log_text()
    assert code == 0
    found = re.search(r"stopping with (\d+) points \((\d+) batches\) not delivered", log)
    assert found, log[-2000:]
    assert int(found.group(1)) >= 903  # the three requests, and the gateway's own metrics
