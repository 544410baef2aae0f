"""Scale-out with real processes: 50 services -> the load-balancing Collector
(otel-collector/loadbalancer.yaml, routing_key: service) -> 3 gateway replicas -> a real
Prometheus scraping every replica.

Exactness: every series lives on exactly one replica (and every service on one replica, the
routing key's promise), and Prometheus' sum over the replicas equals exactly what was sent, for
cumulative counters, delta counters (accumulated by the one replica that owns the stream) and
histograms.

Replica loss: one replica is SIGKILLed mid-run and restarted on the same ports. The
load-balancing exporter keeps that replica's share queued and retried (the ring changes only
when the resolver's list changes), so nothing sent meanwhile is lost. What is lost is the
killed replica's in-memory state: a cumulative series is whole again with the next point (the
SDK sends the running total), a delta series restarts from the deltas sent after the kill,
which Prometheus sees as a counter reset (`rate()`/`increase()` count across it). The test
measures both and states them exactly.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.collector import COLLECTOR_DIR, CollectorProcess, load_config, run_collector
from tests.support.gateway_client import PB, scrape
from tests.support.gateway_config import QUIET
from tests.support.otlp import DELTA, Req
from tests.support.prometheus import scalar
from tests.support.servers import GatewayProcess, free_port, run_gateway, run_prometheus
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

SERVICES = 50
SERIES = 20  # cumulative counter series per service, and as many delta series
HIST_BOUNDS = [0.1, 0.5, 1.0]


def _request(service: int, round_: int) -> bytes:
    """Round r (1, 2, ...) of a service: cumulative counters at r * (k + 1), delta counters +1
    each (start at round r - 1, contiguous), one cumulative histogram with r observations in
    each of the 4 buckets."""
    now = 1_700_000_000
    req = Req(service=f"svc-{service:02d}", instance="i-1")
    req.sum(
        "scale.cumulative",
        [({"k": k}, round_ * (k + 1), now, now + round_) for k in range(SERIES)],
    )
    req.sum(
        "scale.delta",
        [({"k": k}, 1, now + round_ - 1, now + round_) for k in range(SERIES)],
        temporality=DELTA,
    )
    req.histogram(
        "scale.latency",
        [({}, HIST_BOUNDS, [round_] * 4, round_ * 1.5, now, now + round_)],
        unit="s",
    )
    return req.bytes()


def _send_round(client: httpx.Client, lb: CollectorProcess, round_: int) -> None:
    for service in range(SERVICES):
        r = client.post(
            lb.otlp_http_url + "/v1/metrics", content=_request(service, round_), headers=PB
        )
        assert r.status_code == 200, r.text


def _owners(replicas: list[GatewayProcess]) -> dict[str, list[int]]:
    """service job -> the replicas that expose any series of it."""
    owners: dict[str, list[int]] = {}
    for i, replica in enumerate(replicas):
        jobs = {labels["job"] for labels, _ in scrape(replica).all("scale_cumulative_total")}
        for job in jobs:
            owners.setdefault(job, []).append(i)
    return owners


@contextmanager
def _replica(tmp: Path, http_port: int, grpc_port: int) -> Iterator[GatewayProcess]:
    """A gateway replica on fixed ports (so a restart keeps its place on the ring)."""
    tmp.mkdir(parents=True, exist_ok=True)
    with run_gateway(tmp, config=QUIET + "views: []\n", ports=(http_port, grpc_port)) as gw:
        yield gw


def test_replicas_behind_the_load_balancer_are_exact_and_survive_a_kill(tmp_path: Path) -> None:
    ports = [(free_port(), free_port()) for _ in range(3)]
    targets = [f"127.0.0.1:{http}" for http, _ in ports]
    replicas_env = "[" + ", ".join(f"127.0.0.1:{grpc}" for _, grpc in ports) + "]"
    lb_config = load_config(COLLECTOR_DIR / "loadbalancer.yaml")
    # Faster retries than the repository's, so the test does not wait out a 5 s backoff.
    retry = lb_config["exporters"]["load_balancing"]["protocol"]["otlp"]["retry_on_failure"]
    retry.update(initial_interval="100ms", max_interval="500ms")
    prometheus_config = json.dumps(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "gateway", "honor_labels": True,
                 "static_configs": [{"targets": targets}],
                 # Which replica served a series: distinct series per replica, so a series
                 # that moved (after a replica change) never interleaves two replicas' values.
                 "relabel_configs": [{"source_labels": ["__address__"],
                                      "target_label": "gateway_replica"}]},
            ],
        }
    )  # fmt: skip
    with ExitStack() as stack:
        replicas = [
            stack.enter_context(_replica(tmp_path / f"r{i}", http, grpc))
            for i, (http, grpc) in enumerate(ports)
        ]
        lb = stack.enter_context(
            run_collector(
                tmp_path,
                lb_config,
                distribution="loadbalancer",
                env={"GATEWAY_REPLICAS": replicas_env},
                name="loadbalancer",
            )
        )
        prom = stack.enter_context(run_prometheus(tmp_path, prometheus_config))
        client = stack.enter_context(httpx.Client(timeout=10))

        rounds = 5
        for r in range(1, rounds + 1):
            _send_round(client, lb, r)
        expected_cumulative = SERVICES * sum(rounds * (k + 1) for k in range(SERIES))
        expected_delta = SERVICES * SERIES * rounds

        def exact() -> bool:
            total = sum(
                sum(v for _, v in scrape(x).all("scale_cumulative_total")) for x in replicas
            )
            delta = sum(sum(v for _, v in scrape(x).all("scale_delta_total")) for x in replicas)
            return total == expected_cumulative and delta == expected_delta

        eventually(exact, 30, "the replicas never held exactly what was sent")
        owners = _owners(replicas)
        assert len(owners) == SERVICES
        assert all(len(r) == 1 for r in owners.values()), owners
        share = [sum(1 for r in owners.values() if r == [i]) for i in range(3)]
        assert all(n > 0 for n in share), f"a replica got no service: {share}"
        # Every series on exactly one replica.
        seen: dict[tuple[str, frozenset[tuple[str, str]]], int] = {}
        for i, replica in enumerate(replicas):
            for name, labels, _ in scrape(replica).rows:
                if name.startswith("scale_"):
                    key = (name, frozenset(labels.items()))
                    assert key not in seen, f"{key} on replicas {seen[key]} and {i}"
                    seen[key] = i
        # Prometheus' sum over the replicas is exact, for counters and histograms.
        eventually(
            lambda: (
                scalar(prom.url, "sum(scale_cumulative_total)") == expected_cumulative
                and scalar(prom.url, "sum(scale_delta_total)") == expected_delta
                and scalar(prom.url, "sum(scale_latency_seconds_count)") == SERVICES * 4 * rounds
                and scalar(prom.url, 'sum(scale_latency_seconds_bucket{le="0.5"})')
                == SERVICES * 2 * rounds
            ),
            20,
            "Prometheus' sums over the replicas are not exact",
        )

        # --- one replica is lost mid-run and comes back -------------------------------------
        victim = share.index(max(share))
        victim_jobs = {job for job, r in owners.items() if r == [victim]}
        replicas[victim].proc.send_signal(signal.SIGKILL)
        replicas[victim].proc.wait()
        # Traffic goes on while it is down: its share waits in the exporter's queue.
        more = 3
        for r in range(rounds + 1, rounds + more + 1):
            _send_round(client, lb, r)
        time.sleep(1)
        http, grpc = ports[victim]
        replicas[victim] = stack.enter_context(_replica(tmp_path / f"r{victim}b", http, grpc))
        total_rounds = rounds + more

        def settled() -> bool:
            cumulative = sum(
                sum(v for _, v in scrape(x).all("scale_cumulative_total")) for x in replicas
            )
            return cumulative == SERVICES * sum(total_rounds * (k + 1) for k in range(SERIES))

        eventually(settled, 60, "cumulative series were not whole again after the restart")
        restarted = scrape(replicas[victim])
        # Nothing sent while the replica was down was lost: its delta series hold exactly
        # the deltas sent after the kill (its accumulated state before the kill is what the
        # SIGKILL took; Prometheus sees a reset there).
        delta_on_victim = {labels["job"]: 0.0 for labels, _ in restarted.all("scale_delta_total")}
        for labels, value in restarted.all("scale_delta_total"):
            delta_on_victim[labels["job"]] += value
        assert set(delta_on_victim) == victim_jobs
        odd = {j: v for j, v in delta_on_victim.items() if v != SERIES * more}
        assert odd == {}, odd
        others = sum(
            sum(v for _, v in scrape(x).all("scale_delta_total"))
            for i, x in enumerate(replicas)
            if i != victim
        )
        assert others == (SERVICES - len(victim_jobs)) * SERIES * total_rounds
        # Prometheus' increase() counts across the reset: the restarted replica's services
        # still show the deltas sent after the kill; only what accumulated before the kill
        # (rounds 1-5, sent while Prometheus scraped it) is the pre-reset part of the series.
        print(
            f"\nservices per replica {share}; replica {victim} ({len(victim_jobs)} services) "
            f"SIGKILLed: {len(victim_jobs) * SERIES * rounds} delta increments of in-memory "
            f"state lost with it, 0 points lost in transit, cumulative series whole again"
        )
