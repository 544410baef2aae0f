"""End-to-end ingest through the load-balancing Collector tier into 1 and 2 gateway replicas,
in the same run, on this machine.

    .venv/bin/python bench/scale_out.py [--seconds 10] [--connections 4]

The load generator sends OTLP/HTTP protobuf requests (1,000 cumulative counter points each,
40 services so that `routing_key: service` spreads them) to the tier
(otel-collector/loadbalancer.yaml, `make collector`), which routes them over OTLP/gRPC to the
replicas. The rate is what the replicas received (their coderunner_gateway_points_received
counters), per second of the run: points that reached a replica's store, not points the tier
accepted. The CPU seconds each process used during the run say where the ceiling is. On a
2-core machine the tier, the generator and the replicas share the cores, so this measures the
cost of the tier and whether a second replica adds anything here, not what N machines give.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import load
from bench.otlp_requests import counter_requests
from gateway.stack.collector_config import (
    CollectorPorts,
    built_collector,
    load_collector_config,
    localize_collector_config,
)
from gateway.stack.components import REPO
from tests.support.servers import free_port, wait_http

SERVICES = 40
SERIES_PER_SERVICE = 2_000


def _bodies() -> list[bytes]:
    bodies = []
    for s in range(SERVICES):
        for request in counter_requests(SERIES_PER_SERVICE, 1000, metrics=4):
            for kv in request.resource_metrics[0].resource.attributes:
                if kv.key == "service.name":
                    kv.value.string_value = f"bench-{s:02d}"
            bodies.append(request.SerializeToString())
    return bodies


def _received(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics/self", timeout=30).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("coderunner_gateway_points_received_total{")
        and 'transport="grpc"' in line
    )


def run(replicas: int, bodies: list[bytes], args: argparse.Namespace, tmp: Path) -> float:
    home = tmp / f"r{replicas}"
    home.mkdir()
    ports = [(free_port(), free_port()) for _ in range(replicas)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for http, grpc in ports:
            config = home / f"gw-{http}.yaml"
            config.write_text(
                "views: []\nobservers: {enabled: false}\n"
                "cardinality: {max_series_per_stream: 100000, max_series_per_service: 0}\n"
            )
            argv = [sys.executable, "-m", "gateway", "run", "--http-port", str(http)]
            argv += ["--grpc-port", str(grpc), "--log-level", "warning", "--config", str(config)]
            procs.append(subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[1]))
            wait_http(f"http://127.0.0.1:{http}/live", proc=procs[-1])
        lb_ports = CollectorPorts(
            otlp_grpc=free_port(), otlp_http=free_port(), health=free_port(), telemetry=free_port()
        )
        config = localize_collector_config(
            load_collector_config(REPO / "otel-collector" / "loadbalancer.yaml"), lb_ports, home
        )
        config["exporters"]["load_balancing"]["resolver"]["static"]["hostnames"] = [
            f"127.0.0.1:{g}" for _, g in ports
        ]
        queue = config["exporters"]["load_balancing"]["protocol"]["otlp"]["sending_queue"]
        if args.consumers:
            queue["num_consumers"] = args.consumers
        if args.no_batch:
            queue.pop("batch", None)
        (home / "lb.yaml").write_text(yaml.safe_dump(config))
        lb = subprocess.Popen(
            [str(built_collector(REPO, "loadbalancer")), f"--config={home / 'lb.yaml'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(lb)
        wait_http(f"http://127.0.0.1:{lb_ports.health}/", proc=lb)
        headers = {"Content-Type": "application/x-protobuf"}
        reqs = [("POST", "/v1/metrics", b, headers) for b in bodies]
        load(lb_ports.otlp_http, reqs, 2.0, args.connections)  # warm-up: every series created
        time.sleep(2)
        before = sum(_received(http) for http, _ in ports)
        cpu_before = [sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs]
        started = time.monotonic()
        done, _, errors = load(lb_ports.otlp_http, reqs, args.seconds, args.connections)
        elapsed = time.monotonic() - started
        time.sleep(3)  # what the tier accepted reaches the replicas
        cpu = [
            sum(psutil.Process(p.pid).cpu_times()[:2]) - c
            for p, c in zip(procs, cpu_before, strict=True)
        ]
        after = sum(_received(http) for http, _ in ports)
        rate = (after - before) / elapsed
        names = [f"replica {i + 1}" for i in range(replicas)] + ["tier"]
        usage = ", ".join(f"{n} {c / elapsed:.2f} cores" for n, c in zip(names, cpu, strict=True))
        print(
            f"{replicas} replica(s): {rate:>10,.0f} points/s received by the replicas "
            f"({done} requests sent, {errors} refused by the tier); CPU: {usage}"
        )
        return rate
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--consumers", type=int, default=0, help="override the tier's num_consumers per replica"
    )
    parser.add_argument(
        "--no-batch", action="store_true", help="without the tier's sending_queue batching"
    )
    args = parser.parse_args()
    bodies = _bodies()
    print(
        f"{len(bodies)} OTLP bodies of 1000 points, {SERVICES} services, "
        f"{SERVICES * SERIES_PER_SERVICE} series; {args.seconds:.0f} s per run"
    )
    with tempfile.TemporaryDirectory() as d:
        one = run(1, bodies, args, Path(d))
        two = run(2, bodies, args, Path(d))
    print(f"ratio 2 replicas / 1 replica: {two / one:.2f}x (target >= 1.6x)")


if __name__ == "__main__":
    main()
