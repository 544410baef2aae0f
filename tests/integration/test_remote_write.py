"""prometheus/remote-write.example.yml against a real long-term store: a second Debian
Prometheus with its remote-write receiver stands in for Mimir/Thanos/VictoriaMetrics. The first
Prometheus scrapes a real gateway fed by the OTel SDK and writes to it with the example's
block; the catalogue series (and only what the example keeps) arrive with their values."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.otlp import Req
from tests.support.prometheus import query
from tests.support.servers import REPO, run_gateway, run_prometheus

pytestmark = pytest.mark.integration


def test_catalogue_series_arrive_in_the_long_term_store(tmp_path: Path) -> None:
    example = yaml.safe_load((REPO / "prometheus" / "remote-write.example.yml").read_text())
    with (
        run_prometheus(tmp_path, json.dumps({"global": {"scrape_interval": "1s"}}),
                       args=["--web.enable-remote-write-receiver"]) as store,
        run_gateway(tmp_path, grpc=False) as gw,
    ):  # fmt: skip
        now = int(time.time())
        body = (
            Req(service="api")
            .sum("coderunner.api.requests", [({"method": "GET", "endpoint": "/x",
                                              "status": "2xx"}, 42, now - 60, now)])
            .gauge("other.metric", [({}, 1.0, now)])
            .bytes()
        )  # fmt: skip
        r = httpx.post(
            gw.otlp_http, content=body, headers={"Content-Type": "application/x-protobuf"}
        )
        assert r.status_code == 200, r.text
        remote = example["remote_write"][0]
        remote["url"] = f"{store.url}/api/v1/write"
        remote["queue_config"]["batch_send_deadline"] = "1s"
        config = {
            "global": {"scrape_interval": "1s", "external_labels": {"cluster": "test"}},
            "scrape_configs": [
                {"job_name": "gateway", "honor_labels": True,
                 "static_configs": [{"targets": [gw.url.removeprefix("http://")]}]}
            ],
            "remote_write": [remote],
        }  # fmt: skip
        with run_prometheus(tmp_path, json.dumps(config)) as source:
            deadline = time.monotonic() + 30
            found: list[dict[str, object]] = []
            while time.monotonic() < deadline and not found:
                found = query(store.url, "coderunner_api_requests_total")
                time.sleep(0.5)
            assert found, "the catalogue series never reached the store"
            series = found[0]
            assert series["metric"] == {
                "__name__": "coderunner_api_requests_total",
                "job": "api",
                "instance": "i-1",
                "method": "GET",
                "endpoint": "/x",
                "status": "2xx",
                "cluster": "test",
            }
            assert float(series["value"][1]) == 42  # type: ignore[index]
            # The example's filter kept the rest local.
            assert query(source.url, "other_metric") != []
            assert query(store.url, "other_metric") == []
            assert query(store.url, "coderunner_gateway_active_series") != []
