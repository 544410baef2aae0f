"""Point identity on the forward path: what the OTLP forwarder sends upstream for a stream that
overflowed is what the gateway's own /metrics shows, also when point attributes use a label
name the gateway reserves (`le` on a histogram, which the store exposes as `exported_le`).

The regression: the overflow folder once rendered labels without the store's reserved names,
did not find the series an `le` point belongs to, and dropped the point from the forwarded
batch while /metrics still showed it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch
from tests.support.gateway_client import PB
from tests.support.gateway_config import QUIET
from tests.support.otlp import CUMULATIVE, DELTA, Req
from tests.support.promtext import Samples, parse
from tests.support.servers import run_gateway
from tests.support.upstream import Upstream, run_upstream

pytestmark = pytest.mark.integration


def _config(endpoint: str) -> str:
    return (
        f"{QUIET}views: []\ncardinality:\n  max_series_per_stream: 1\n"
        f"forwarder:\n  endpoint: {endpoint}\n  initial_backoff_seconds: 0.1\n"
    )


_STRIP = {"job", "instance", "otel_scope_name"}


def _upstream_view(upstream: Upstream) -> Samples:
    """What a Collector's Prometheus exporter would show for the forwarded OTLP: the requests
    translated by a store without limits."""
    store = SeriesStore(StoreSettings(max_series_per_stream=100_000))
    with upstream.lock:
        requests = list(upstream.requests)
    for request in requests:
        store.consume(MetricsBatch(request))
    return parse(render(store).decode())


def _family(samples: Samples, name: str) -> list[tuple[list[tuple[str, str]], float]]:
    return sorted(
        (sorted((k, v) for k, v in labels.items() if k not in _STRIP), value)
        for labels, value in samples.all(name)
    )


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_overflowed_histogram_points_with_an_le_attribute_reach_the_upstream(
    tmp_path: Path, temporality: str
) -> None:
    delta = temporality == "delta"
    with run_upstream() as upstream:
        config = _config(upstream.url)
        with run_gateway(tmp_path, config=config, grpc=False) as gw:
            for round_, (start, end) in enumerate(((0, 10), (10, 20) if delta else (0, 20))):
                scale = 1 if delta else round_ + 1
                points = [
                    ({"le": f"v{i}", "route": "/x"}, [1.0], [i * scale, scale], 2.0 * scale,
                     start, end)
                    for i in range(4)
                ]  # fmt: skip
                req = Req().histogram("h", points, temporality=DELTA if delta else CUMULATIVE)
                r = httpx.post(gw.otlp_http, content=req.bytes(), headers=PB)
                assert r.status_code == 200, r.content
            ours = parse(httpx.get(gw.url + "/metrics").text)
            assert len(_family(ours, "h_count")) == 2  # one admitted series and the overflow
            assert ours.value("h_count", exported_le="v0") > 0
            deadline = time.monotonic() + 15
            theirs = _upstream_view(upstream)
            while time.monotonic() < deadline and _family(theirs, "h_count") != _family(
                ours, "h_count"
            ):
                time.sleep(0.1)
                theirs = _upstream_view(upstream)
    for name in ("h_bucket", "h_count", "h_sum"):
        assert _family(theirs, name) == _family(ours, name), name
    # Nothing lost: series i counted (i + 1) observations a round, over two rounds.
    assert sum(v for _, v in theirs.all("h_count")) == sum(2 * (i + 1) for i in range(4))
