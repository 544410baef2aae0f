"""The path with the real OpenTelemetry Collector in the middle, against the embedded path.

    demo service (real OTel SDK, real PostgreSQL) -> gateway /v1/metrics
        -> gateway /metrics                                  (embedded path)
        -> forwarder (HTTP, then gRPC) -> the project's Collector (otel-collector/config.yaml)
        -> its prometheus exporter                            (Collector path)

Same input, two expositions, compared series by series: names, label sets, values, TYPE and
HELP, in both formats Prometheus reads (0.0.4 text and OpenMetrics). They must be identical,
apart from the documented differences below. The Collector's prometheusexporter at the pinned
release is the reference: where they differed, the gateway was changed (label-value floats,
`otel_scope_schema_url`, one `target_info` per resource).

Documented differences, normalized before comparing:
- The Collector writes `otel_scope_name=""`, `otel_scope_version=""` and
  `otel_scope_schema_url=""` when the scope has none; the gateway leaves empty labels out. In
  Prometheus' data model a label with an empty value is the absence of that label, so both
  are the same series once scraped (the dashboards test below runs on the Collector path).
- `/metrics` also carries the gateway's self-metrics, which are not forwarded (Prometheus
  scrapes them from `/metrics/self` on the Collector path): they are left out of the gateway's
  side, except the gateway's own `target_info`, which the Collector has too.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from demo.traffic import TrafficGenerator
from gateway.catalogue import by_name
from tests.support.collector import CollectorProcess, run_collector
from tests.support.servers import GatewayProcess, run_demo_service, run_gateway

pytestmark = pytest.mark.integration

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
QUIET = (
    "observers:\n  enabled: false\n"
    "health:\n  upstream: {enabled: false}\n  pipeline: {enabled: false}\n"
    "  system: {enabled: false}\n"
)
OPENMETRICS = {"Accept": "application/openmetrics-text;version=1.0.0"}
SeriesKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Exposition:
    series: dict[SeriesKey, float]
    #: family name -> (type, help)
    meta: dict[str, tuple[str, str]]


def read(text: str, *, openmetrics: bool) -> Exposition:
    families = openmetrics_families(text) if openmetrics else text_families(text)
    series: dict[SeriesKey, float] = {}
    meta: dict[str, tuple[str, str]] = {}
    for family in families:
        meta[family.name] = (family.type, family.documentation)
        for s in family.samples:
            # An empty label value is no label (Prometheus' data model).
            labels = frozenset((k, v) for k, v in s.labels.items() if v != "")
            key = (s.name, labels)
            assert key not in series, f"duplicate series {key}"
            series[key] = s.value
    return Exposition(series, meta)


def without_self(full: Exposition, own: Exposition) -> Exposition:
    """The forwarded part of the gateway's /metrics: minus its self-metrics (but its own
    target_info, which describes a resource the forwarded data has too)."""
    drop = {k for k in own.series if k[0] != "target_info"}
    own_families = {name for name in own.meta if name not in ("target_info", "target")}
    return Exposition(
        {k: v for k, v in full.series.items() if k not in drop},
        {n: m for n, m in full.meta.items() if n not in own_families},
    )


@dataclass
class Snapshot:
    gateway: dict[bool, Exposition]
    collector: dict[bool, Exposition]


def snapshot(gateway: GatewayProcess, collector: CollectorProcess) -> Snapshot:
    out = Snapshot({}, {})
    exporter = f"http://{collector.exporter_target}/metrics"
    for om in (False, True):
        headers = OPENMETRICS if om else {}
        full = read(httpx.get(gateway.url + "/metrics", headers=headers).text, openmetrics=om)
        own = read(httpx.get(gateway.url + "/metrics/self", headers=headers).text, openmetrics=om)
        out.gateway[om] = without_self(full, own)
        out.collector[om] = read(httpx.get(exporter, headers=headers).text, openmetrics=om)
    return out


def differences(a: Exposition, b: Exposition) -> list[str]:
    out = []
    for key in sorted(a.series.keys() - b.series.keys(), key=str)[:10]:
        out.append(f"only on the gateway: {key[0]} {dict(key[1])}")
    for key in sorted(b.series.keys() - a.series.keys(), key=str)[:10]:
        out.append(f"only on the Collector: {key[0]} {dict(key[1])}")
    for key in sorted(a.series.keys() & b.series.keys(), key=str):
        if a.series[key] != b.series[key]:
            out.append(f"value of {key[0]} {dict(key[1])}: {a.series[key]} != {b.series[key]}")
    for name in sorted(a.meta.keys() & b.meta.keys()):
        if a.meta[name] != b.meta[name]:
            out.append(f"TYPE/HELP of {name}: {a.meta[name]} != {b.meta[name]}")
    return out


async def _drop_tables(prefix: str) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}deployments, {prefix}users")
    finally:
        await conn.close()


@pytest.fixture(scope="module", params=["http/protobuf", "grpc"])
def both_paths(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Snapshot, list[str]]]:
    protocol: str = request.param
    tmp = tmp_path_factory.mktemp("collector-path")
    prefix = f"colpath_{'grpc' if protocol == 'grpc' else 'http'}_"
    with run_collector(tmp) as collector:
        endpoint = collector.otlp_grpc_target if protocol == "grpc" else collector.otlp_http_url
        config = QUIET + f"forwarder:\n  endpoint: {endpoint}\n  protocol: {protocol}\n"
        with run_gateway(tmp, config=config, grpc=False) as gateway:
            env = {"DATABASE_URL": DSN, "DEMO_TABLE_PREFIX": prefix}
            try:
                with run_demo_service(tmp, gateway.url, env) as demo:
                    generator = TrafficGenerator(demo.url, rate=40, seed=7)
                    asyncio.run(generator.run(duration_s=4))
                # The demo stopped (SIGTERM flushes its last export): nothing changes any
                # more once the forwarder and the Collector's batch (2 s) have passed it on.
            finally:
                asyncio.run(_drop_tables(prefix))
            deadline = time.monotonic() + 30
            while True:
                snap = snapshot(gateway, collector)
                diffs = [
                    f"{'OpenMetrics' if om else 'text'}: {d}"
                    for om in (False, True)
                    for d in differences(snap.gateway[om], snap.collector[om])
                ]
                if not diffs or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            yield snap, diffs


def test_the_collector_path_gives_identical_series(
    both_paths: tuple[Snapshot, list[str]],
) -> None:
    _, diffs = both_paths
    assert diffs == []


def test_the_comparison_covers_the_catalogue(both_paths: tuple[Snapshot, list[str]]) -> None:
    """Guards the test above: the traffic reached every layer the demo writes, with values."""
    snap, _ = both_paths
    names = {name for name, _ in snap.collector[False].series}
    for metric in ("api.requests", "deployments", "websocket.connections", "user.activity"):
        assert by_name(metric).prometheus_name() in names, metric
    assert by_name("api.duration").prometheus_name() + "_bucket" in names
    assert len(snap.gateway[False].series) > 100


def test_the_comparison_can_fail(both_paths: tuple[Snapshot, list[str]]) -> None:
    snap, _ = both_paths
    theirs = snap.collector[True]
    key = next(k for k in theirs.series if k[0].endswith("_bucket"))
    changed = Exposition({**theirs.series, key: theirs.series[key] + 1}, theirs.meta)
    renamed = Exposition(
        {(k[0], k[1] | {("le", "1")} if k == key else k[1]): v for k, v in theirs.series.items()},
        theirs.meta,
    )
    assert differences(snap.gateway[True], changed)
    assert differences(snap.gateway[True], renamed)
