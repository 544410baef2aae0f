"""Issue 17, findings 6 and 7: background tasks that died silently. The memory limiter's loop is
tested in tests/gateway/test_memory.py (a fake sampler raises EMFILE); here the forwarder meets
an upstream (or a proxy in front of it) that answers 200 with a body that is not OTLP."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.otlp import Req
from tests.support.servers import run_gateway
from tests.support.upstream import run_upstream

pytestmark = pytest.mark.integration

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def test_forwarding_survives_a_200_that_is_not_otlp(tmp_path: Path) -> None:
    with run_upstream() as upstream:
        upstream.garbage = 1
        config = (
            "observers: {enabled: false}\n"
            f"forwarder: {{endpoint: '{upstream.url}', initial_backoff_seconds: 0.1}}\n"
        )
        with run_gateway(tmp_path, config=config) as gw:
            first = Req(service="a").gauge("g", [({}, 1.0, 1)]).bytes()
            assert httpx.post(gw.otlp_http, content=first, headers=PROTOBUF).status_code == 200
            deadline = time.monotonic() + 10
            while upstream.points_of("a") < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert upstream.points_of("a") == 1 and upstream.garbage == 0
            second = Req(service="b").gauge("g", [({}, 2.0, 1)]).bytes()
            assert httpx.post(gw.otlp_http, content=second, headers=PROTOBUF).status_code == 200
            while upstream.points_of("b") < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert upstream.points_of("b") == 1, "the forwarder stopped after the bad answer"
            assert "not an OTLP response" in gw.log_text()
