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
- HELP: where a metric has no description the gateway writes its OTel name and unit (promtool
  wants help text), the Collector writes none; HELP is compared where the Collector has one.
- Where the Collector refuses a label name (reserved `__x`, a key of only non-ASCII letters)
  or two keys collide, it drops the whole metric and logs an error; the gateway keeps it
  (`key__x`, values joined with `;` as the specification says). The edge-case test checks
  that these are the only metrics missing from the Collector's side.
- `/metrics` also carries the gateway's self-metrics, which are not forwarded (Prometheus
  scrapes them from `/metrics/self` on the Collector path): they are left out of the gateway's
  side, except the gateway's own `target_info`, which the Collector has too.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from demo.traffic import TrafficGenerator
from gateway.catalogue import by_name
from tests.alertmanager.amconfig import with_webhook
from tests.support.collector import CollectorProcess, run_collector
from tests.support.dashboards_live import (
    blackbox_exporter,
    hostport,
    panel_failures_under_traffic,
    peer_config,
    prometheus_config,
    rule_files,
)
from tests.support.exporters import postgres_exporter, redis_exporter
from tests.support.gateway_config import QUIET
from tests.support.node_exporter import node_exporter
from tests.support.otlp import DELTA, Req
from tests.support.servers import (
    GatewayProcess,
    run_alertmanager,
    run_demo_service,
    run_gateway,
    run_prometheus,
)

pytestmark = pytest.mark.integration

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Only the test's data is forwarded: no observers, no health checks (whose values change
# between the two scrapes).
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
    """The forwarded part of the gateway's /metrics: minus its self-metrics, and minus its own
    target_info unless forwarded data (health checks, observers) has that job/instance too."""
    kept = {k: v for k, v in full.series.items() if k not in own.series or k[0] == "target_info"}

    def target(labels: frozenset[tuple[str, str]]) -> tuple[str | None, str | None]:
        d = dict(labels)
        return d.get("job"), d.get("instance")

    described = {target(labels) for name, labels in kept if name != "target_info"}
    kept = {k: v for k, v in kept.items() if k[0] != "target_info" or target(k[1]) in described}
    own_families = {name for name in own.meta if name not in ("target_info", "target")}
    return Exposition(kept, {n: m for n, m in full.meta.items() if n not in own_families})


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
        if b.meta[name][1] == "":  # no description: the gateway writes name (unit) as HELP
            if a.meta[name][0] != b.meta[name][0]:
                out.append(f"TYPE of {name}: {a.meta[name][0]} != {b.meta[name][0]}")
        elif a.meta[name] != b.meta[name]:
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


def _edge_cases(now: int) -> Req:
    """Names, units and labels where the translation rules have corners."""
    r = Req(service="edge", scope="edge.scope")
    past = now - 10
    r.sum("ratio.sum", [({"a": "1"}, 3, past, now)], unit="1", monotonic=False)
    r.sum("ratio.counter", [({"a": "1"}, 3, past, now)], unit="1")
    r.gauge("ratio.gauge", [({"a": "1"}, 0.5, now)], unit="1")
    r.gauge("utilization", [({}, 0.5, now)], unit="1")
    r.sum("req.rate", [({}, 7, past, now)], unit="{request}/s", monotonic=False)
    r.gauge("bytes.per.thing", [({}, 7.0, now)], unit="By/{thing}")
    r.gauge("size", [({}, 7.0, now)], unit="By/%")  # a per-unit that sanitises to nothing
    r.gauge("weird.per", [({}, 7.0, now)], unit="{a}/{b}")
    r.gauge("packets", [({}, 7.0, now)], unit="{packet}")
    r.sum("latency.ms", [({}, 7, past, now)], unit="ms")
    for unit in ("KiBy", "TiBy", "kBy", "%", "Cel", "m/s", "x_", "1/s"):
        r.gauge(f"unit.{unit}", [({}, 7.0, now)], unit=unit)
    r.gauge("colon:name", [({}, 1.0, now)])
    r.gauge("9lives-and.dashes", [({"0key": "v", "a..b": "w", "http.route": "/x"}, 1.0, now)])
    r.sum("already_total", [({}, 1, past, now)])
    r.sum("bytes_total.by", [({}, 1, past, now)], unit="By")
    r.sum("delta.counter", [({}, 2, past, now)], temporality=DELTA)
    r.histogram("hist.ms", [({"r": "/"}, [1, 5, 1e6], [1, 2, 3, 4], 123.5, past, now)], unit="ms")
    r.histogram("hist.delta", [({}, [0.5], [1, 1], 1.5, past, now)], temporality=DELTA)
    # What the Collector refuses, dropping the metric (documented above):
    r.gauge("refused.reserved", [({"__x": "y"}, 1.0, now)])
    r.gauge("refused.cyrillic", [({"ключ": "v"}, 1.0, now)])
    return r


REFUSED_BY_THE_COLLECTOR = {"refused_reserved", "refused_cyrillic"}


def test_edge_cases_give_the_same_series_through_the_collector(tmp_path: Path) -> None:
    with run_collector(tmp_path) as collector:
        config = QUIET + "views: []\n" + f"forwarder:\n  endpoint: {collector.otlp_http_url}\n"
        with run_gateway(tmp_path, config=config, grpc=False) as gateway:
            body = _edge_cases(int(time.time())).bytes()
            r = httpx.post(
                gateway.otlp_http,
                content=body,
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert r.status_code == 200, r.text
            assert r.content in (b"", b"{}") or "rejected" not in r.text, r.text
            deadline = time.monotonic() + 20
            while True:
                snap = snapshot(gateway, collector)
                diffs = [
                    d
                    for om in (False, True)
                    for d in differences(snap.gateway[om], snap.collector[om])
                    if not any(f"only on the gateway: {n} " in d for n in REFUSED_BY_THE_COLLECTOR)
                ]
                if not diffs or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    assert diffs == []
    names = {name for name, _ in snap.gateway[False].series}
    # The refusals are real and are the only ones: the gateway kept both metrics.
    assert names >= REFUSED_BY_THE_COLLECTOR
    assert not REFUSED_BY_THE_COLLECTOR & {n for n, _ in snap.collector[False].series}
    for expected in ("ratio_sum", "gauge_ratio", "size_bytes", "bytes_per_thing", "unit_kBy"):
        assert expected in names, expected


def test_every_dashboard_panel_returns_data_on_the_collector_path(tmp_path: Path) -> None:
    """As test_dashboards_live, with the production shape: the gateway forwards to the real
    Collector, and a real Prometheus scrapes the Collector's exporter (honor_labels, so
    job/instance come from the resource) and the gateway's `/metrics/self` only, as
    prometheus/prometheus.yml and compose do. Every panel's query must return data."""
    with (
        run_collector(tmp_path) as collector,
        run_gateway(
            tmp_path, grpc=False, config=f"forwarder:\n  endpoint: {collector.otlp_http_url}\n"
        ) as gw,
        blackbox_exporter(tmp_path) as blackbox,
        run_alertmanager(tmp_path, with_webhook("http://127.0.0.1:9/unused")) as am,
        node_exporter(tmp_path) as node,
        postgres_exporter(tmp_path) as pg_exporter,
        redis_exporter(tmp_path) as redis,
        run_prometheus(tmp_path, peer_config(am.url), extra_files=rule_files()) as peer,
    ):
        config = json.loads(
            prometheus_config(
                gw.url.removeprefix("http://"),
                blackbox,
                {
                    "prometheus": hostport(peer.url),
                    "alertmanager": hostport(am.url),
                    "node": hostport(node.url),
                    "otel-collector-self": collector.telemetry_target,
                    "postgres": hostport(pg_exporter.url),
                    "redis": hostport(redis.url),
                },
            )
        )
        (gateway_job,) = [j for j in config["scrape_configs"] if j["job_name"] == "gateway"]
        gateway_job["metrics_path"] = "/metrics/self"
        config["scrape_configs"].append(
            {"job_name": "otel-collector", "honor_labels": True,
             "static_configs": [{"targets": [collector.exporter_target]}]}
        )  # fmt: skip
        with run_prometheus(tmp_path, json.dumps(config), extra_files=rule_files()) as prom:
            failures = panel_failures_under_traffic(prom.url, gw.otlp_http)
    assert failures == [], "\n".join(failures)
