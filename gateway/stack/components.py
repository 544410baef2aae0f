"""What the local stack runs: settings, and one `Component` per process with its command line,
port, health endpoint and the configs it reads (Prometheus's generated from this repository's
prometheus/prometheus.local.yml with the stack's ports)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.catalogue import DEFAULT_NAMESPACE
from gateway.render import RenderOptions, local_links, render
from gateway.stack.collector_config import (
    CollectorNotBuilt,
    CollectorPorts,
    built_collector,
    localize_collector_config,
)
from gateway.stack.notifications import write_alertmanager_config

__all__ = [
    "ORDER",
    "REPO",
    "Component",
    "StackError",
    "StackSettings",
    "build_components",
    "collector_binary",
    "write_collector_configs",
    "write_prometheus_config",
]

REPO = Path(__file__).resolve().parents[2]
#: at least the SLO period of prometheus/slo.yaml (30d) plus margin: compliance over the whole
#: period is computed from what is stored (tests/prometheus/test_rules.py checks it)
RETENTION_TIME = "35d"
RETENTION_SIZE = "10GB"
DEFAULT_START_TIMEOUT_S = 30.0
#: start order: exporters and the gateway before what reports to them, Alertmanager before
#: Prometheus; `stop` goes the other way
ORDER = (
    "node-exporter",
    "otel-collector",
    "gateway",
    "loadbalancer",
    "demo",
    "notifications",
    "alertmanager",
    "prometheus",
)


class StackError(RuntimeError):
    """The stack cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class StackSettings:
    #: where state, logs and data go
    directory: Path = REPO / ".stack"
    #: the checkout whose prometheus/ and alertmanager/ configs are used
    repo: Path = REPO
    #: ports on 127.0.0.1
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    node_exporter_port: int = 9100
    #: gateway HTTP: OTLP, /metrics, health
    gateway_port: int = 4318
    #: gateway OTLP/gRPC; 0 turns it off
    gateway_grpc_port: int = 4317
    demo_port: int = 3000
    #: start the demo service with traffic (an optional component)
    demo: bool = True
    #: a `telemetry-gateway demo --scenario` for the demo (error-spike, slow-deploys,
    #: db-outage); None: steady traffic
    scenario: str | None = None
    #: gateway YAML config, passed to `telemetry-gateway run --config`
    gateway_config: str | None = None
    #: seconds `up` waits for each component to become healthy
    timeout_s: float = DEFAULT_START_TIMEOUT_S
    #: the Collector path: the gateway forwards to the project's Collector (built by
    #: `make collector`), Prometheus scrapes the Collector's exporter and the gateway's
    #: /metrics/self (otel-collector/config.yaml, DESIGN.md "With a Collector")
    collector: bool = False
    #: gateway replicas; above 1, the load-balancing Collector takes the gateway's standard
    #: ports and replica i listens on replica_base_port + 2(i-1) (HTTP) and the next (gRPC)
    replicas: int = 1
    replica_base_port: int = 4420
    #: the Collector path's ports (OTLP as compose publishes them: 14317/14318)
    collector_grpc_port: int = 14317
    collector_http_port: int = 14318
    collector_exporter_port: int = 8889
    collector_telemetry_port: int = 8888
    collector_health_port: int = 13133
    #: the load-balancing tier's own ports (its OTLP ports are the gateway's standard ones)
    loadbalancer_telemetry_port: int = 8887
    loadbalancer_health_port: int = 13134
    #: metric namespace of the stack's gateway (GATEWAY_NAMESPACE) and of its rules
    namespace: str = DEFAULT_NAMESPACE
    #: link bases of the alerts (`telemetry-gateway render`); None: the runbooks and the
    #: status page the stack's gateway serves (<gateway>/ui/runbooks, <gateway>/ui/)
    runbook_base: str | None = None
    dashboard_base: str | None = None
    #: Prometheus' --web.external-url (alerts' generatorURL); None: its local address
    prometheus_external_url: str | None = None
    #: the receiver every local notification goes to (gateway/stack/notifications.py)
    notifications_port: int = 9095

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["directory"], data["repo"] = str(self.directory), str(self.repo)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackSettings:
        values = dict(data)
        values["directory"], values["repo"] = Path(values["directory"]), Path(values["repo"])
        return cls(**values)


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    port: int
    #: path polled for health (200 = healthy)
    health_path: str
    #: what `status` shows as the URL to open
    url: str
    #: a failure to start is reported and skipped instead of failing `up`
    optional: bool = False
    #: environment of the process (None: the stack's)
    env: Mapping[str, str] | None = None
    cwd: Path | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.health_path}"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{name} is not installed: run `make system-deps`")
    return path


def render_rules(s: StackSettings) -> Path:
    """The repo's rules rendered for the stack's namespace and link bases, under
    `<directory>/rendered` (written anew by every `up`)."""
    local = local_links(f"http://127.0.0.1:{s.gateway_port}")
    options = RenderOptions(
        s.namespace,
        runbook_base=s.runbook_base or local.runbooks,
        dashboard_base=s.dashboard_base or local.dashboard,
    )
    out = s.directory / "rendered"
    shutil.rmtree(out, ignore_errors=True)
    try:
        render(out, options, source=s.repo)
    except ValueError as exc:  # a bad option, or a name the renderer cannot map
        raise StackError(f"cannot render the rules: {exc}") from None
    return out


def write_prometheus_config(s: StackSettings) -> Path:
    """prometheus/prometheus.local.yml with the stack's ports and the repo's rules, written to
    `<directory>/prometheus/prometheus.yml`."""
    config = yaml.safe_load((s.repo / "prometheus" / "prometheus.local.yml").read_text())
    targets = {
        "node": s.node_exporter_port,
        "alertmanager": s.alertmanager_port,
        "prometheus": s.prometheus_port,
    }
    for job in config["scrape_configs"]:
        port = targets.get(job["job_name"])
        if port is not None:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        if job["job_name"] == "gateway":
            # Every replica, from a file the stack writes (file-based discovery: a restart
            # with another --replicas rewrites it, Prometheus re-reads it by itself).
            job.pop("static_configs", None)
            sd = s.directory / "prometheus" / "gateways.json"
            sd.parent.mkdir(parents=True, exist_ok=True)
            hosts = [f"127.0.0.1:{http}" for http, _ in _replica_ports(s)]
            sd.write_text(json.dumps([{"targets": hosts}], indent=2) + "\n")
            job["file_sd_configs"] = [{"files": [str(sd)]}]
            if s.collector:
                # The Collector carries the data; the gateways are scraped for themselves.
                job["metrics_path"] = "/metrics/self"
    if s.collector:
        config["scrape_configs"] += [
            {"job_name": "otel-collector", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{s.collector_exporter_port}"]}]},
            {"job_name": "otel-collector-self",
             "static_configs": [{"targets": [f"127.0.0.1:{s.collector_telemetry_port}"]}]},
        ]  # fmt: skip
    if s.replicas > 1:
        config["scrape_configs"].append(
            {"job_name": "otel-collector-loadbalancer",
             "static_configs": [{"targets": [f"127.0.0.1:{s.loadbalancer_telemetry_port}"]}]}
        )  # fmt: skip
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"127.0.0.1:{s.alertmanager_port}"]}]}
    ]
    config["rule_files"] = [str(render_rules(s) / "prometheus" / "rules" / "*.yml")]
    path = s.directory / "prometheus" / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by `telemetry-gateway stack up` from prometheus/prometheus.local.yml\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path


def collector_binary(s: StackSettings, distribution: str) -> str:
    """The built Collector binary (`make collector`), or a StackError saying how to build it."""
    try:
        return str(built_collector(s.repo, distribution))
    except CollectorNotBuilt as exc:
        raise StackError(str(exc)) from None


def _replica_ports(s: StackSettings) -> list[tuple[int, int]]:
    """(http, grpc) of each gateway replica."""
    if s.replicas <= 1:
        return [(s.gateway_port, s.gateway_grpc_port)]
    return [
        (s.replica_base_port + 2 * i, s.replica_base_port + 2 * i + 1) for i in range(s.replicas)
    ]


def write_collector_configs(s: StackSettings) -> dict[str, Path]:
    """The repository's Collector configs with the stack's loopback ports and directories,
    written under `<directory>/otel-collector/`; only those the settings use."""
    out: dict[str, Path] = {}
    home = s.directory / "otel-collector"
    home.mkdir(parents=True, exist_ok=True)
    if s.collector:
        queue = home / "queue"
        queue.mkdir(exist_ok=True)
        config = localize_collector_config(
            yaml.safe_load((s.repo / "otel-collector" / "config.yaml").read_text()),
            CollectorPorts(
                otlp_grpc=s.collector_grpc_port,
                otlp_http=s.collector_http_port,
                health=s.collector_health_port,
                telemetry=s.collector_telemetry_port,
                prometheus=s.collector_exporter_port,
            ),
            queue,
        )
        out["otel-collector"] = home / "config.yaml"
        out["otel-collector"].write_text(yaml.safe_dump(config, sort_keys=False))
    if s.replicas > 1:
        config = localize_collector_config(
            yaml.safe_load((s.repo / "otel-collector" / "loadbalancer.yaml").read_text()),
            CollectorPorts(
                otlp_grpc=s.gateway_grpc_port,
                otlp_http=s.gateway_port,
                health=s.loadbalancer_health_port,
                telemetry=s.loadbalancer_telemetry_port,
            ),
        )
        resolver = config["exporters"]["load_balancing"]["resolver"]
        resolver["static"]["hostnames"] = [f"127.0.0.1:{g}" for _, g in _replica_ports(s)]
        out["loadbalancer"] = home / "loadbalancer.yaml"
        out["loadbalancer"].write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def build_components(s: StackSettings, environ: Mapping[str, str]) -> list[Component]:
    """The components in start order (`ORDER`); the demo only when `s.demo`, the Collector
    and the load-balancing tier when the settings ask for them."""
    if s.replicas < 1:
        raise StackError("--replicas must be at least 1")
    if s.replicas > 1 and s.gateway_grpc_port == 0:
        raise StackError("--replicas needs the gRPC port: the load-balancing tier speaks OTLP/gRPC")
    # Where services send OTLP: the gateway, or the load-balancing tier in front of replicas.
    gateway_url = f"http://127.0.0.1:{s.gateway_port}"
    configs = write_collector_configs(s)
    node = f"127.0.0.1:{s.node_exporter_port}"
    out = [
        Component(
            "node-exporter",
            # Debian enables the systemd collector, which logs an error every scrape where
            # systemd is not PID 1 (containers, CI); the stack's dashboards do not use it.
            (
                _binary("prometheus-node-exporter"),
                f"--web.listen-address={node}",
                "--no-collector.systemd",
            ),
            s.node_exporter_port,
            "/",
            f"http://{node}/metrics",
        ),
    ]
    gateway_env = None
    if s.collector:
        binary = collector_binary(s, "main")
        out.append(
            Component(
                "otel-collector",
                (binary, f"--config={configs['otel-collector']}"),
                s.collector_health_port,
                "/",
                f"http://127.0.0.1:{s.collector_exporter_port}/metrics",
                env={**environ, "LONGTERM_OTLP_ENDPOINT": "http://127.0.0.1:9"},
            )
        )
        gateway_env = {k: v for k, v in environ.items() if not k.startswith("GATEWAY_FORWARD")} | {
            "GATEWAY_FORWARD_ENDPOINT": f"http://127.0.0.1:{s.collector_http_port}"
        }
    if s.namespace != DEFAULT_NAMESPACE:
        # The gateway names its metrics as the rendered rules read them.
        gateway_env = {**(gateway_env or environ), "GATEWAY_NAMESPACE": s.namespace}
    replicas = _replica_ports(s)
    for i, (http, grpc) in enumerate(replicas, start=1):
        argv = [sys.executable, "-m", "gateway", "run", "--http-port", str(http)]
        argv += ["--grpc-port", str(grpc)]
        if s.gateway_config:
            argv += ["--config", s.gateway_config]
        out.append(
            Component(
                "gateway" if len(replicas) == 1 else f"gateway-{i}",
                tuple(argv),
                http,
                "/ready",
                f"http://127.0.0.1:{http}/metrics",
                env=gateway_env,
                cwd=s.repo,
            )
        )
    if s.replicas > 1:
        out.append(
            Component(
                "loadbalancer",
                (collector_binary(s, "loadbalancer"), f"--config={configs['loadbalancer']}"),
                s.loadbalancer_health_port,
                "/",
                f"{gateway_url}/v1/metrics (OTLP, routed to {s.replicas} replicas)",
            )
        )
    # The demo reports to this stack's gateway, not to whatever OTEL_* says.
    demo_env = {k: v for k, v in environ.items() if not k.startswith("OTEL_")}
    demo_env.update(OTEL_EXPORTER_OTLP_ENDPOINT=gateway_url, OTEL_METRIC_EXPORT_INTERVAL="5000")
    if s.demo:
        # `telemetry-gateway demo` against this stack's gateway: the demo service and its
        # traffic (a scenario when asked), so that Prometheus and Alertmanager have something
        # to show; its one-line summaries are the component's log.
        demo_argv: tuple[str, ...] = (
            *(sys.executable, "-m", "gateway", "demo", "--gateway", gateway_url),
            *("--demo-port", str(s.demo_port), "--log-dir", str(s.directory / "demo")),
            *("--table-prefix", environ.get("DEMO_TABLE_PREFIX", "demo_")),
        )
        if s.scenario:
            demo_argv += ("--scenario", s.scenario)
        out.append(
            Component(
                "demo",
                demo_argv,
                s.demo_port,
                "/live",
                f"http://127.0.0.1:{s.demo_port}/",
                optional=True,
                env=demo_env,
                cwd=s.repo,
            )
        )
    am, prom = f"127.0.0.1:{s.alertmanager_port}", f"127.0.0.1:{s.prometheus_port}"
    # Production's receivers need secrets a laptop has not: every local notification goes to
    # the stack's own receiver instead (same routes and inhibit rules).
    sink = f"http://127.0.0.1:{s.notifications_port}"
    am_config = write_alertmanager_config(s.repo, s.directory, sink)
    received = s.directory / "notifications" / "notifications.jsonl"
    out += [
        Component(
            "notifications",
            (
                *(sys.executable, "-m", "gateway.stack.receiver"),
                *("--port", str(s.notifications_port), "--out", str(received)),
            ),
            s.notifications_port,
            "/-/healthy",
            f"{sink} (received: {received})",
            cwd=s.repo,
        ),
        Component(
            "alertmanager",
            (
                _binary("prometheus-alertmanager"),
                f"--config.file={am_config}",
                f"--storage.path={s.directory / 'alertmanager'}",
                f"--web.listen-address={am}",
                f"--web.external-url=http://{am}/",
                "--cluster.listen-address=",  # a single instance: no gossip port (9094) to clash
            ),
            s.alertmanager_port,
            "/-/ready",
            f"http://{am}",
        ),
        Component(
            "prometheus",
            (
                _binary("prometheus"),
                f"--config.file={s.directory / 'prometheus' / 'prometheus.yml'}",
                f"--storage.tsdb.path={s.directory / 'prometheus' / 'data'}",
                f"--storage.tsdb.retention.time={RETENTION_TIME}",
                f"--storage.tsdb.retention.size={RETENTION_SIZE}",
                f"--web.listen-address={prom}",
                # where alerts' generatorURL and the UI's links point
                f"--web.external-url={s.prometheus_external_url or f'http://{prom}/'}",
                "--web.enable-lifecycle",
            ),
            s.prometheus_port,
            "/-/ready",
            f"http://{prom}",
        ),
    ]
    return out
