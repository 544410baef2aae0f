"""Every panel of the generated dashboard, run against real data.

A real gateway (forwarding to a second real gateway, so the forwarder's own series exist) gets
OTLP from the OpenTelemetry SDK for every metric of the catalogue, with the label values the
demo service and the gateway's observers and health checks write. A real Prometheus scrapes it
every second (and a real blackbox exporter probes its readiness, as in compose). Then each
panel's PromQL runs through Prometheus' query API the way Grafana would send it: `$service`
and `$instance` replaced by values the dashboard's own variable queries return (escaped as
Grafana escapes multi-value regexes), `$__rate_interval` by four scrape intervals. A query must
parse and return at least one series.

Grafana itself cannot run here; this is the part of "does the dashboard show data" that does
not need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.catalogue import CATALOGUE, DEFAULT_NAMESPACE, Layer, Metric
from tests.alertmanager.amconfig import with_webhook
from tests.support.collector import run_collector
from tests.support.dashboards_live import (
    SCRAPE_SECONDS,
    blackbox_exporter,
    dashboard_panels,
    grafana_regex,
    hostport,
    label_values,
    panel_failures_under_traffic,
    peer_config,
    prometheus_config,
    rule_files,
    substitute,
)
from tests.support.exporters import postgres_exporter, redis_exporter
from tests.support.node_exporter import node_exporter
from tests.support.prometheus import query_response
from tests.support.servers import (
    REPO,
    free_port,
    run_alertmanager,
    run_gateway,
    run_prometheus,
    wait_http,
)

pytestmark = pytest.mark.integration


def test_every_panel_query_is_valid_and_returns_data(tmp_path: Path) -> None:
    with (
        # The Collector row: the upstream gateway forwards to a real Collector, whose own
        # metrics Prometheus scrapes as prometheus.yml does (job otel-collector-self).
        run_collector(tmp_path) as collector,
        run_gateway(
            tmp_path, grpc=False, env={"GATEWAY_FORWARD_ENDPOINT": collector.otlp_http_url}
        ) as upstream,
        run_gateway(tmp_path, grpc=False, env={"GATEWAY_FORWARD_ENDPOINT": upstream.url}) as gw,
        blackbox_exporter(tmp_path) as blackbox,
        run_alertmanager(tmp_path, with_webhook("http://127.0.0.1:9/unused")) as am,
        node_exporter(tmp_path) as node,
        # The Databases row: the exporters compose runs, on this machine's PostgreSQL and Redis.
        postgres_exporter(tmp_path) as pg_exporter,
        redis_exporter(tmp_path) as redis,
        # A peer Prometheus running the repo's rules and sending to the Alertmanager: the one
        # the panels query scrapes it like any Prometheus scrapes itself.
        run_prometheus(tmp_path, peer_config(am.url), extra_files=rule_files()) as peer,
        run_prometheus(tmp_path, prometheus_config(
            gw.url.removeprefix("http://"), blackbox,
            {"prometheus": hostport(peer.url), "alertmanager": hostport(am.url),
             "node": hostport(node.url), "otel-collector-self": collector.telemetry_target,
             "postgres": hostport(pg_exporter.url), "redis": hostport(redis.url)},
        ), extra_files=rule_files()) as prom,
    ):  # fmt: skip
        failures = panel_failures_under_traffic(prom.url, gw.otlp_http)
    assert failures == [], "\n".join(failures)


def test_an_empty_or_broken_query_is_reported(tmp_path: Path) -> None:
    """The checks above can fail: a wrong metric name gives no data, bad PromQL an error."""
    with run_prometheus(tmp_path, prometheus_config("127.0.0.1:1", "127.0.0.1:1")) as prom:
        empty = query_response(prom.url, substitute('sum(rate(nope_total{job=~"$service"}[1m]))',
                                             "(a|b)", ".*"))  # fmt: skip
        assert empty["status"] == "success" and empty["data"]["result"] == []
        broken = query_response(prom.url, "sum by (job (rate(x[1m]))")
        assert broken["status"] == "error"
    # Grafana's escaping survives PromQL's string parsing: a dot matches only a dot.
    assert grafana_regex(["a.b"]) == "a\\\\.b"
    assert grafana_regex(["demo", "telemetry-gateway"]) == "(demo|telemetry-gateway)"


# --- the demo's own traffic ------------------------------------------------------------------

DEMO_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DEMO_LAYERS = (Layer.APPLICATION, Layer.BUSINESS)
_NAME_RE = re.compile(r"(?<![\w:])coderunner_[a-z0-9_]+(?![\w:])")  # not recorded names
_BY_PROM = {m.prometheus_name(DEFAULT_NAMESPACE): m for m in CATALOGUE}


def _panel_metrics(panel: Mapping[str, Any]) -> set[Metric]:
    names = _NAME_RE.findall(" ".join(t["expr"] for t in panel["targets"]))
    return {_BY_PROM[re.sub(r"_(bucket|sum|count)$", "", n)] for n in names}


@contextlib.contextmanager
def _demo_service(tmp: Path, gateway_url: str) -> Iterator[str]:
    """The demo app under uvicorn, as compose and `telemetry-gateway demo` run it."""
    port = free_port()
    prefix = f"dash{port}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DEMO_"))}
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": gateway_url,
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_SERVICE_NAME": "coderunner-demo",
            "DATABASE_URL": DEMO_DSN,
            "DEMO_TABLE_PREFIX": prefix,
        }
    )
    argv = [sys.executable, "-m", "uvicorn", "demo.app:create_app_from_env", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    log = tmp / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/live", proc=proc, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()  # SIGTERM: the demo flushes its last export
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        asyncio.run(_drop_tables(prefix))


async def _drop_tables(prefix: str) -> None:
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        conn = await asyncpg.connect(DEMO_DSN, timeout=5)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {prefix}deployments, {prefix}users")
        finally:
            await conn.close()


class _DemoTraffic:
    """demo.traffic.TrafficGenerator on its own event loop in a thread."""

    def __init__(self, demo_url: str) -> None:
        from demo.traffic import TrafficGenerator

        self.generator = TrafficGenerator(demo_url, rate=40.0, seed=8)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self.generator.run(stop=self._stop))

    def __enter__(self) -> _DemoTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        self._loop.close()


def _present(prometheus: str) -> set[str]:
    result = query_response(prometheus, 'count by (__name__) ({__name__=~".+"})')
    return {re.sub(r"_(bucket|sum|count)$", "", s["metric"]["__name__"])
            for s in result["data"]["result"]}  # fmt: skip


def _wait_for(prometheus: str, metrics: set[Metric], timeout: float) -> set[str]:
    """The metrics still missing after `timeout` (empty: all arrived)."""
    wanted = {m.prometheus_name(DEFAULT_NAMESPACE) for m in metrics}
    deadline = time.monotonic() + timeout
    missing = wanted
    while time.monotonic() < deadline:
        missing = wanted - _present(prometheus)
        if not missing:
            break
        time.sleep(0.5)
    return missing


def test_demo_traffic_fills_every_application_and_business_panel(tmp_path: Path) -> None:
    """The demo service under its traffic generator, not synthetic data: the label values the
    panels filter on (status="5xx", status="success", le="0.5", ...) must be the ones the
    instrumentation and the gateway's views really write. HTTP and database metrics arrive as
    OpenTelemetry semantic-convention metrics and reach the panels only through the views."""
    panels = [p for p in dashboard_panels() if _panel_metrics(p) and
              all(m.layer in DEMO_LAYERS for m in _panel_metrics(p))]  # fmt: skip
    needed = set().union(*(_panel_metrics(p) for p in panels))
    with (
        run_gateway(tmp_path, grpc=False) as gw,
        run_prometheus(tmp_path, prometheus_config(gw.url.removeprefix("http://"),
                                                    "127.0.0.1:1")) as prom,
        _demo_service(tmp_path, gw.url) as demo_url,
        _DemoTraffic(demo_url) as traffic,
    ):  # fmt: skip
        missing = _wait_for(prom.url, needed, timeout=30)
        assert not missing, (
            f"the demo's traffic never produced {sorted(missing)} "
            f"(traffic: {traffic.generator.stats})"
        )
        time.sleep(4 * SCRAPE_SECONDS + 1)
        # job is service.namespace/service.name; pick the demo's as a user would.
        jobs = label_values(prom.url, "job", '{__name__=~"coderunner_.+"}')
        demo_jobs = [j for j in jobs if j.rpartition("/")[2] == "coderunner-demo"]
        assert len(demo_jobs) == 1, jobs
        service = grafana_regex(demo_jobs)
        instances = grafana_regex(label_values(prom.url, "instance", f'{{job="{demo_jobs[0]}"}}'))
        failures = []
        for panel in panels:
            for target in panel["targets"]:
                result = query_response(prom.url, substitute(target["expr"], service, instances))
                if result.get("status") != "success" or not result["data"]["result"]:
                    failures.append(f"panel {panel['id']} {panel['title']}: {target['expr']}")
    assert failures == [], "\n".join(failures)
