"""The demo service's health metrics end to end: the demo (uvicorn subprocess) talks to the real
PostgreSQL through a TCP proxy the test controls, exports its health checks and circuit breaker
over OTLP to a real gateway (default views), and a real Prometheus scrapes the gateway with the
project's `DatabaseConnectionFailure` rule (its `for:` shortened).

Cut the proxy: the gateway's /metrics shows the demo's `postgresql` check at 0 and its breaker
open, and the alert fires for the demo's job. Restore: the check is back at 1, the breaker
closed (after the cooldown and a half-open trial), and the alert resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from demo.runner import Samples, parse_prometheus_text
from gateway.catalogue import by_name
from tests.support.servers import (
    REPO,
    GatewayProcess,
    run_demo_service,
    run_gateway,
    run_prometheus,
)
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

PG_HOST, PG_PORT = "127.0.0.1", 5432
SERVICE = "health-demo"
JOB = f"coderunner/{SERVICE}"  # service.namespace/service.name, as the gateway writes `job`
ALERT = "DatabaseConnectionFailure"

STATUS = by_name("health.check.status").prometheus_name()
DURATION = by_name("health.check.duration").prometheus_name()
STATE = by_name("circuit_breaker.state").prometheus_name()
TRANSITIONS = by_name("circuit_breaker.transitions").prometheus_name()

#: the demo's health timing: short, so cut -> open -> closed takes a few seconds
HEALTH_ENV = {
    "DEMO_HEALTH_INTERVAL_S": "0.2",
    "DEMO_HEALTH_TIMEOUT_S": "0.5",
    "DEMO_BREAKER_FAILURES": "2",
    "DEMO_BREAKER_COOLDOWN_S": "1.5",
}


@contextlib.contextmanager
def demo_service(tmp: Path, gateway: GatewayProcess, dsn: str, prefix: str) -> Iterator[str]:
    """The demo under uvicorn (one worker), exporting to `gateway` every 300 ms; its URL."""
    env = {"DATABASE_URL": dsn, "DEMO_TABLE_PREFIX": prefix, "DEMO_SERVICE_NAME": SERVICE}
    try:
        with run_demo_service(tmp, gateway.url, {**env, **HEALTH_ENV}) as server:
            yield server.url
    finally:
        asyncio.run(_drop(prefix))


async def _drop(prefix: str) -> None:
    conn = await asyncpg.connect(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test")
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}deployments, {prefix}users")
    finally:
        await conn.close()


def prometheus_config(gateway_port: int) -> str:
    """The local stack's gateway job (honor_labels) with 1 s intervals and the test's port."""
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.local.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "gateway"]
    assert job["honor_labels"] is True
    job["static_configs"] = [{"targets": [f"127.0.0.1:{gateway_port}"]}]
    config["scrape_configs"] = [job]
    config.pop("alerting", None)
    config["rule_files"] = ["rules/*.yml"]
    return yaml.safe_dump(config, sort_keys=False)


def alert_rule() -> dict[str, Any]:
    """The project's DatabaseConnectionFailure rule as written, with `for: 1s`."""
    rules = yaml.safe_load((REPO / "prometheus" / "rules" / "alerts.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == ALERT]
    return {**rule, "for": "1s"}


def series(samples: Samples, name: str, **match: str) -> list[tuple[dict[str, str], float]]:
    return [
        (labels, v)
        for labels, v in samples.get(name, [])
        if labels.get("job") == JOB and all(labels.get(k) == w for k, w in match.items())
    ]


def value(samples: Samples, name: str, **match: str) -> float | None:
    found = series(samples, name, **match)
    assert len(found) <= 1, f"{name}{match}: {found}"
    return found[0][1] if found else None


def test_demo_database_cut_shows_in_gateway_metrics_and_fires_the_alert(tmp_path: Path) -> None:
    prefix = f"dh{os.getpid()}_{os.urandom(2).hex()}_"
    rule_file = yaml.safe_dump({"groups": [{"name": "db", "rules": [alert_rule()]}]})
    with (
        TcpProxy(PG_HOST, PG_PORT) as proxy,
        run_gateway(tmp_path, grpc=False) as gateway,
        demo_service(
            tmp_path, gateway, f"postgresql://postgres@127.0.0.1:{proxy.port}/test", prefix
        ) as demo,
        run_prometheus(
            tmp_path,
            prometheus_config(gateway.http_port),
            extra_files={"rules/db.yml": rule_file},
        ) as prom,
        httpx.Client(timeout=5) as http,
    ):

        def scrape() -> Samples:
            return parse_prometheus_text(http.get(gateway.url + "/metrics").text)

        def alert_states() -> list[str]:
            alerts = http.get(prom.url + "/api/v1/alerts").json()["data"]["alerts"]
            return [
                a["state"]
                for a in alerts
                if a["labels"].get("alertname") == ALERT and a["labels"].get("job") == JOB
            ]

        def diagnosis(what: str, timeout: float) -> str:
            health = http.get(demo + "/api/health").json()
            return (
                f"{what} not seen within {timeout}s\n"
                f"demo health: {health}\n"
                f"gateway: {[s for s in scrape().get(STATUS, [])]}"
                f" {scrape().get(STATE, [])}\n"
                f"alerts: {alert_states()}\n{gateway.log_text()[-1500:]}"
            )

        def seen(what: str, ready: Callable[[], bool], timeout: float = 15.0) -> None:
            eventually(ready, timeout, lambda: diagnosis(what, timeout))

        def db_is(status: float, state: str) -> Callable[[], bool]:
            def check() -> bool:
                s = scrape()
                return (
                    value(s, STATUS, component="postgresql") == status
                    and value(s, STATE, component="postgresql", state=state) == 1.0
                )

            return check

        # Healthy: the demo's checks reach the gateway under the catalogue's names.
        seen("postgresql pass, breaker closed", db_is(1.0, "closed"))
        samples = scrape()
        assert value(samples, STATUS, component="websocket") == 1.0
        assert value(samples, DURATION, component="postgresql") is not None
        for name in (STATUS, DURATION, STATE, TRANSITIONS):
            for labels, _ in series(samples, name):
                # Scope dropped by the default views, as for every catalogue metric.
                assert not any(k.startswith("otel_scope") for k in labels), (name, labels)
        assert {
            (labels["from"], labels["to"]): v
            for labels, v in series(samples, TRANSITIONS, component="postgresql")
        } == {
            ("closed", "open"): 0.0,
            ("open", "half_open"): 0.0,
            ("half_open", "closed"): 0.0,
            ("half_open", "open"): 0.0,
        }
        assert alert_states() == []

        # Cut: the check fails, the breaker opens, the project's alert fires for the demo.
        proxy.cut()
        seen("postgresql fail, breaker open", db_is(0.0, "open"))
        samples = scrape()
        assert value(samples, STATE, component="postgresql", state="closed") == 0.0
        trips = value(samples, TRANSITIONS, component="postgresql", **{"from": "closed"})
        assert trips == 1.0
        assert http.get(demo + "/live").status_code == 200
        seen(f"{ALERT} firing for {JOB}", lambda: alert_states() == ["firing"])

        # Restore: after the cooldown a half-open trial passes; back to 1 and closed.
        proxy.restore()
        seen("postgresql pass, breaker closed again", db_is(1.0, "closed"))
        samples = scrape()
        edges = {
            (labels["from"], labels["to"]): v
            for labels, v in series(samples, TRANSITIONS, component="postgresql")
        }
        assert edges[("half_open", "closed")] == 1.0
        assert edges[("open", "half_open")] >= 1.0
        assert (
            edges[("closed", "open")] + edges[("half_open", "open")] == edges[("open", "half_open")]
        )
        seen(f"{ALERT} resolved", lambda: alert_states() == [])
