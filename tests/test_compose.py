"""compose.yaml as Debian's docker-compose 1.29 reads it (`docker-compose config`; there is no
Docker engine here), and its agreement with prometheus/prometheus.yml and the Collector config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import ConfigError
from gateway.config import load_file as load_config

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
PROMETHEUS_YML = REPO / "prometheus" / "prometheus.yml"

pytestmark = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed"
)


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # An empty --env-file: a developer's .env must not decide what the test sees.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "POSTGRES_"))}
    clean.update(env)
    with tempfile.NamedTemporaryFile(suffix=".env") as empty:
        return subprocess.run(
            ["docker-compose", "--env-file", empty.name, "-f", str(COMPOSE), "config"],
            capture_output=True,
            text=True,
            env=clean,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = _compose_config({"GRAFANA_ADMIN_PASSWORD": "test-only-password"})
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(p) for p in service.get("expose", [])}
    for mapping in service.get("ports", []):
        target = mapping["target"] if isinstance(mapping, dict) else mapping
        ports.add(int(str(target).split(":")[-1].split("/")[0]))
    return ports


def _published(service: dict[str, Any]) -> list[str]:
    return [str(p) for p in service.get("ports", [])]


def test_config_validates_with_the_grafana_password(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "test-only-password"


@pytest.mark.integration
def test_config_refuses_to_run_without_the_grafana_password() -> None:
    result = _compose_config({})
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr
    empty = _compose_config({"GRAFANA_ADMIN_PASSWORD": ""})
    assert empty.returncode != 0


def test_no_top_level_name_for_compose_1_29() -> None:
    assert "name" not in yaml.safe_load(COMPOSE.read_text())


EXPECTED_SERVICES = {
    "gateway": {4318, 4317},
    "demo": {3000},
    "demo-traffic": set(),
    "otel-collector": {4317, 4318, 8889, 13133},
    "prometheus": {9090},
    "alertmanager": {9093},
    "node-exporter": {9100},
    "blackbox-exporter": {9115},
    "postgres": {5432},
    "redis": {6379},
    "postgres-exporter": {9187},
    "redis-exporter": {9121},
    "grafana": {3000},
}


def test_services_and_ports_are_the_agreed_ones(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == set(EXPECTED_SERVICES)
    for name, ports in EXPECTED_SERVICES.items():
        assert ports <= _container_ports(services[name]), name
    assert any(p.endswith(":3001:3000") or "3001" in p for p in _published(services["grafana"]))


def test_published_ports_bind_loopback_by_default(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            host_ip = mapping.get("host_ip") if isinstance(mapping, dict) else mapping.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name}: {mapping}"


def _scrape_targets(prometheus: dict[str, Any]) -> list[tuple[str, str]]:
    """(job, host:port) of everything Prometheus connects to: static targets, probe targets
    (through blackbox), relabelled __address__ replacements and the Alertmanagers."""
    out: list[tuple[str, str]] = []
    for job in prometheus.get("scrape_configs", []):
        name = job["job_name"]
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                if "://" in target:
                    parts = urlsplit(target)
                    port = parts.port or (443 if parts.scheme == "https" else 80)
                    out.append((name, f"{parts.hostname}:{port}"))
                else:
                    out.append((name, target))
        for relabel in job.get("relabel_configs", []):
            if relabel.get("target_label") == "__address__" and "replacement" in relabel:
                out.append((name, relabel["replacement"]))
    for am in (prometheus.get("alerting") or {}).get("alertmanagers", []):
        for static in am.get("static_configs", []):
            out.extend(("alerting", t) for t in static.get("targets", []))
    return out


@pytest.mark.skipif(not PROMETHEUS_YML.exists(), reason="prometheus/prometheus.yml not there yet")
def test_every_scrape_target_is_a_compose_service_with_that_port(compose: dict[str, Any]) -> None:
    targets = _scrape_targets(yaml.safe_load(PROMETHEUS_YML.read_text()))
    assert targets, "prometheus.yml scrapes nothing"
    services = compose["services"]
    missing = []
    for job, address in targets:
        host, _, port = address.rpartition(":")
        # Prometheus scraping itself.
        service = "prometheus" if host in ("localhost", "127.0.0.1") else host
        if service not in services or int(port) not in _container_ports(services[service]):
            missing.append(f"{job}: {address}")
    assert missing == []


def test_target_check_catches_a_missing_service(compose: dict[str, Any]) -> None:
    targets = _scrape_targets(
        {"scrape_configs": [{"job_name": "x", "static_configs": [{"targets": ["nope:1"]}]}]}
    )
    assert targets == [("x", "nope:1")]
    assert "nope" not in compose["services"]


def test_gateway_environment_is_a_valid_gateway_config(compose: dict[str, Any]) -> None:
    env = compose["services"]["gateway"]["environment"]
    config = load_config(None, environ={k: str(v) for k, v in env.items()})
    assert config.server.host == "0.0.0.0"
    assert config.queue.kind == "disk"
    assert config.queue.path.startswith("/var/lib/telemetry-gateway/")
    with pytest.raises(ConfigError):
        load_config(None, environ={**env, "GATEWAY_QUEUE__KIND": "tape"})


def test_gateway_forwards_to_the_collector_otlp_http_port(compose: dict[str, Any]) -> None:
    collector = yaml.safe_load((REPO / "otel-collector" / "config.yaml").read_text())
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    endpoint = compose["services"]["gateway"]["environment"]["GATEWAY_FORWARD_ENDPOINT"]
    parts = urlsplit(endpoint)
    assert parts.hostname == "otel-collector"
    assert str(parts.port) == http.rpartition(":")[2]


def test_prometheus_retention_and_mounts(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert "--storage.tsdb.retention.time=35d" in prometheus["command"]
    assert "--storage.tsdb.retention.size=50GB" in prometheus["command"]
    sources = {Path(v["source"]).name for v in _volumes(prometheus)}
    assert "prometheus" in sources


def _volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            out.append(v)
        else:
            source, target, *_ = v.split(":")
            out.append({"source": source, "target": target})
    return out


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes", {}))
    for service, target in [
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
        ("alertmanager", "/alertmanager"),
        ("postgres", "/var/lib/postgresql/data"),
        ("redis", "/data"),
        ("otel-collector", "/var/lib/otelcol"),
        ("gateway", "/var/lib/telemetry-gateway"),
    ]:
        mounts = {v["target"]: v["source"] for v in _volumes(compose["services"][service])}
        assert mounts.get(target) in named, f"{service}:{target}"


def test_grafana_is_provisioned_from_the_repo(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in _volumes(grafana)}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == REPO / "dashboards" / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "coderunner.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts[path] == REPO / "dashboards" / "json"
    assert "PROMETHEUS_URL" in grafana["environment"]


def test_health_checks_where_the_image_has_a_shell(compose: dict[str, Any]) -> None:
    # The Collector (distroless) and redis_exporter (scratch) images have nothing to run one.
    without = {"otel-collector", "redis-exporter"}
    for name, service in compose["services"].items():
        assert ("healthcheck" in service) == (name not in without), name


def test_demo_is_behind_a_profile(compose: dict[str, Any]) -> None:
    assert compose["services"]["demo"]["profiles"] == ["demo"]
    traffic = compose["services"]["demo-traffic"]
    assert traffic["profiles"] == ["demo"]
    # The generator only talks to 127.0.0.1, so it lives in the demo's network namespace.
    assert traffic["network_mode"] == "service:demo"


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("prometheus-blackbox-exporter") is None, reason="run make system-deps"
)
def test_blackbox_config_loads_in_the_real_exporter(tmp_path: Path) -> None:
    config = REPO / "blackbox" / "blackbox.yml"
    ok = subprocess.run(
        ["prometheus-blackbox-exporter", f"--config.file={config}", "--config.check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    modules = yaml.safe_load(config.read_text())["modules"]
    # prometheus.yml's probe job names its module; it must exist here.
    prometheus = yaml.safe_load(PROMETHEUS_YML.read_text())
    for job in prometheus["scrape_configs"]:
        for module in job.get("params", {}).get("module", []):
            assert module in modules, f"{job['job_name']}: module {module}"
    broken = tmp_path / "blackbox.yml"
    # A misspelt key (valid_status_code), which the exporter's strict parser refuses.
    broken.write_text(
        "modules:\n  http_2xx:\n    prober: http\n    http:\n      valid_status_code: [200]\n"
    )
    bad = subprocess.run(
        ["prometheus-blackbox-exporter", f"--config.file={broken}", "--config.check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode != 0


def test_alertmanager_secret_files_are_mounted(compose: dict[str, Any]) -> None:
    config = (REPO / "alertmanager" / "alertmanager.yml").read_text()
    paths = re.findall(r"_file:\s*(/\S+)", config)
    assert paths, "alertmanager.yml reads no secret files"
    mounts = [v["target"] for v in _volumes(compose["services"]["alertmanager"])]
    for path in paths:
        assert any(path.startswith(m.rstrip("/") + "/") for m in mounts), path


def test_prometheus_scrapes_only_self_metrics_from_a_forwarding_gateway(
    compose: dict[str, Any],
) -> None:
    """In compose the gateway forwards everything to the Collector, which Prometheus scrapes;
    scraping the gateway's full /metrics too would ingest every series twice (same job and
    instance from the resource, through honor_labels)."""
    from gateway.app import Gateway
    from gateway.config import load
    from gateway.config_files import ConfigFiles

    assert compose["services"]["gateway"]["environment"]["GATEWAY_FORWARD_ENDPOINT"]
    prometheus = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = [
        job
        for job in prometheus["scrape_configs"]
        for static in job.get("static_configs", [])
        if any(t.split(":")[0] == "gateway" for t in static.get("targets", []))
    ]
    assert jobs, "prometheus.yml does not scrape the gateway"
    config = load({"forwarder": {"endpoint": "http://otel-collector:4318"}})
    gateway = Gateway(config, ConfigFiles.read(config))
    routes = {getattr(r, "path", None) for r in gateway.app.routes}
    for job in jobs:
        path = job.get("metrics_path", "/metrics")
        assert path != "/metrics", f"{job['job_name']} scrapes the forwarded series too"
        assert path in routes, f"{job['job_name']}: the gateway serves no {path}"


def test_collector_image_is_built_from_the_tested_manifest() -> None:
    """compose runs the Collector the tests run: an image built from the same manifest by the
    same builder release, not a separately pinned contrib image that could drift."""
    service = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["otel-collector"]
    assert service["build"]["context"] == "./otel-collector"
    manifest = service["build"]["args"]["MANIFEST"]
    assert manifest == "manifest.yaml"
    dist = yaml.safe_load((REPO / "otel-collector" / manifest).read_text())["dist"]
    assert service["image"].endswith(":" + dist["version"])
    dockerfile = (REPO / "otel-collector" / "Dockerfile").read_text()
    assert "COPY ${MANIFEST} manifest.yaml" in dockerfile
    # The same rule as scripts/build-collector.sh for the builder's release.
    script = (REPO / "scripts" / "build-collector.sh").read_text()
    rule = "s#.*go.opentelemetry.io/collector/receiver/otlpreceiver \\(v[0-9.]*\\).*#\\1#p"
    assert rule in dockerfile
    assert rule in script
    assert "builder --config manifest.yaml" in dockerfile
