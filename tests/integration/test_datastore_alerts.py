"""PostgresDown and RedisDown (prometheus/rules/datastores.yml) against the real exporters.

    PostgreSQL, Redis (the machine's own) <- TcpProxy <- Debian's postgres/redis exporters
    a real Prometheus scrapes them under the jobs prometheus.yml gives them, with the repo's rules

Cutting the proxies must fire both alerts from the series the exporters really write
(`pg_up`, `redis_up` at 0 while the exporter itself still answers its scrape), and restoring
them must resolve both with no restart of the exporters, as the runbook says. Guards against a
name or a value the promtool cases invent.

PostgresConnectionsNearLimit and RedisClientsNearLimit run against the same exporters with
their threshold lowered to 0 (nobody fills a shared test server's connection slots): they fire
only if both series of each division exist under the names used and their labels match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.alert_rules import rules_with_short_for
from tests.support.exporters import postgres_exporter, redis_exporter
from tests.support.servers import REPO, ServerProcess, run_prometheus
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

ALERTS = {"PostgresDown", "RedisDown"}


def _prometheus_config(postgres: ServerProcess, redis: ServerProcess) -> str:
    """prometheus.yml's `postgres` and `redis` jobs, aimed at the test's exporters, with short
    intervals and the repository's rules. Not 1 s: Debian's PostgreSQL exporter (0.11) took
    about 1 s to answer a scrape while it could not connect, and a scrape that times out has no
    pg_up at all (that is TargetDown's case)."""
    repo: dict[str, Any] = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    targets = {"postgres": postgres.url, "redis": redis.url}
    jobs = [dict(j) for j in repo["scrape_configs"] if j["job_name"] in targets]
    assert {j["job_name"] for j in jobs} == set(targets), "prometheus.yml lost a job"
    for job in jobs:
        job["static_configs"] = [{"targets": [targets[job["job_name"]].removeprefix("http://")]}]
    config = {
        "global": {"scrape_interval": "3s", "scrape_timeout": "3s", "evaluation_interval": "1s"},
        "rule_files": repo["rule_files"],
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(config, sort_keys=False)


def _query(prometheus: str, expr: str) -> dict[str, float]:
    """job -> value of each series `expr` returns."""
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    return {r["metric"].get("job", ""): float(r["value"][1]) for r in body["data"]["result"]}


def _firing(prometheus: str) -> dict[str, str]:
    """alertname -> job of the datastore alerts firing now."""
    body = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()
    return {
        a["labels"]["alertname"]: a["labels"]["job"]
        for a in body["data"]["alerts"]
        if a["state"] == "firing" and a["labels"]["alertname"] in ALERTS
    }


def test_cut_databases_fire_both_alerts_and_resolve_when_back(tmp_path: Path) -> None:
    with (
        TcpProxy("127.0.0.1", 5432) as pg_proxy,
        TcpProxy("127.0.0.1", 6379) as redis_proxy,
        postgres_exporter(
            tmp_path, f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/test?sslmode=disable"
        ) as pg,
        redis_exporter(tmp_path, f"redis://127.0.0.1:{redis_proxy.port}") as redis,
        run_prometheus(
            tmp_path, _prometheus_config(pg, redis), extra_files=rules_with_short_for()
        ) as prom,
    ):
        ups = "pg_up or redis_up"
        eventually(
            lambda: _query(prom.url, ups) == {"postgres": 1.0, "redis": 1.0},
            timeout=30,
            what=lambda: f"both exporters should reach their servers: {_query(prom.url, ups)}",
        )
        assert _firing(prom.url) == {}

        pg_proxy.cut()
        redis_proxy.cut()
        eventually(
            lambda: _firing(prom.url) == {"PostgresDown": "postgres", "RedisDown": "redis"},
            timeout=60,
            what=lambda: f"firing {_firing(prom.url)}; {ups}: {_query(prom.url, ups)}",
        )
        # The exporters themselves still answer: this is not TargetDown's case.
        assert _query(prom.url, "up") == {"postgres": 1.0, "redis": 1.0}

        pg_proxy.restore()
        redis_proxy.restore()
        eventually(
            lambda: (
                _query(prom.url, ups) == {"postgres": 1.0, "redis": 1.0} and _firing(prom.url) == {}
            ),
            timeout=60,
            what=lambda: f"firing {_firing(prom.url)}; {ups}: {_query(prom.url, ups)}",
        )


NEAR_LIMIT = {"PostgresConnectionsNearLimit": "postgres", "RedisClientsNearLimit": "redis"}


def _rules_with_threshold_zero() -> dict[str, str]:
    files = rules_with_short_for()
    data = yaml.safe_load(files["rules/datastores.yml"])
    changed = set()
    for group in data["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in NEAR_LIMIT:
                assert rule["expr"].endswith("> 0.8"), rule["expr"]
                rule["expr"] = rule["expr"].removesuffix("> 0.8") + "> 0"
                changed.add(rule["alert"])
    assert changed == set(NEAR_LIMIT)
    files["rules/datastores.yml"] = yaml.safe_dump(data, sort_keys=False)
    return files


def test_connection_limit_alerts_read_series_the_exporters_write(tmp_path: Path) -> None:
    with (
        postgres_exporter(tmp_path) as pg,
        redis_exporter(tmp_path) as redis,
        run_prometheus(
            tmp_path, _prometheus_config(pg, redis), extra_files=_rules_with_threshold_zero()
        ) as prom,
    ):

        def firing() -> dict[str, dict[str, str]]:
            body = httpx.get(f"{prom.url}/api/v1/alerts", timeout=10).json()
            return {
                a["labels"]["alertname"]: a["labels"]
                for a in body["data"]["alerts"]
                if a["state"] == "firing" and a["labels"]["alertname"] in NEAR_LIMIT
            }

        eventually(
            lambda: set(firing()) == set(NEAR_LIMIT), timeout=60, what=lambda: f"firing {firing()}"
        )
        found = firing()
        for name, job in NEAR_LIMIT.items():
            assert found[name]["job"] == job
            assert found[name]["severity"] == "warning"
        # One alert per server, the per-database series summed away.
        assert "datname" not in found["PostgresConnectionsNearLimit"]
        ratios = _query(
            prom.url,
            "sum without (datid, datname) (pg_stat_database_numbackends)"
            " / pg_settings_max_connections"
            " or redis_connected_clients / redis_config_maxclients",
        )
        # At least the exporter's own connection, far from the limit on a test machine.
        assert set(ratios) == {"postgres", "redis"}, ratios
        assert all(0 < v < 0.8 for v in ratios.values()), ratios
