"""deploy/kubernetes, validated as far as this machine allows (no cluster): `kustomize build`
of the base and the example overlay, every document decoded strictly into the Kubernetes API's
own Go types (deploy/kubernetes/validate: unknown fields, wrong types, unknown kinds fail), the
gateway config through `check-config`, the load-balancing Collector config through the real
binary's `validate`, the Prometheus scrape configs through `promtool check config`, and the
numbers that must agree (drain and grace vs the termination grace period, memory limiter vs
the memory limit). Not checked: what only an API server or a running cluster would (defaults,
admission, RBAC in action, the k8s resolver finding replicas)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.collector import collector_binary

pytestmark = pytest.mark.integration  # starts a server or a subprocess

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"


def _tool(name: str) -> str:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-k8s-tools.sh"), "--path", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    path = out.stdout.strip()
    if not Path(path).is_file():
        raise RuntimeError(f"{name} is not built: run `make k8s-tools`")
    return path


def _build(directory: Path) -> str:
    out = subprocess.run(
        [_tool("kustomize"), "build", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _validate(manifests: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("validate")], input=manifests, capture_output=True, text=True, timeout=120
    )


def _docs(manifests: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifests) if d]


@pytest.mark.parametrize("directory", ["base", "overlays/example"])
def test_manifests_decode_strictly(directory: str) -> None:
    out = _validate(_build(K8S / directory))
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"(\d+) documents, 0 invalid", out.stdout)


def test_the_validator_refuses_a_broken_manifest() -> None:
    manifests = _build(K8S / "base").replace("containerPort:", "containerPorts:", 1)
    out = _validate(manifests)
    assert out.returncode != 0
    assert "containerPorts" in out.stdout
    wrong_type = _build(K8S / "base").replace("replicas: 3", "replicas: three", 1)
    assert _validate(wrong_type).returncode != 0


def _kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_the_numbers_agree() -> None:
    docs = _docs(_build(K8S / "overlays" / "example"))
    gateway = _kind(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    config = yaml.safe_load((K8S / "base" / "gateway-config.yaml").read_text())
    drain = config["server"]["drain_delay_seconds"] + config["server"]["shutdown_grace_seconds"]
    assert gateway["terminationGracePeriodSeconds"] > drain
    (container,) = gateway["containers"]
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    limit_bytes = int(limit[:-2]) * 1024**3
    assert (
        config["memory_limiter"]["soft_limit_bytes"]
        < config["memory_limiter"]["hard_limit_bytes"]
        < limit_bytes
    )
    probes = {p: container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
    assert probes == {"livenessProbe": "/live", "readinessProbe": "/ready"}
    headless = _kind(docs, "Service", "gateway-headless")["spec"]
    assert headless["clusterIP"] == "None"
    hpa = _kind(docs, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["minReplicas"] == 4  # the overlay's patch applied
    assert all(d["metadata"].get("namespace") in ("telemetry", None) for d in docs)


def test_gateway_config_passes_check_config() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(K8S / "base" / "gateway-config.yaml")],  # noqa: E501
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_loadbalancer_config_is_the_repos_with_the_k8s_resolver() -> None:
    ours = yaml.safe_load((K8S / "base" / "otelcol-loadbalancer.yaml").read_text())
    repo = yaml.safe_load((REPO / "otel-collector" / "loadbalancer.yaml").read_text())
    assert ours["exporters"]["load_balancing"]["resolver"]["k8s"]["service"].startswith(
        "gateway-headless."
    )
    ours["exporters"]["load_balancing"]["resolver"] = repo["exporters"]["load_balancing"][
        "resolver"
    ]
    assert ours == repo
    out = subprocess.run(
        [str(collector_binary("loadbalancer")), "validate",
         f"--config={K8S / 'base' / 'otelcol-loadbalancer.yaml'}"],
        capture_output=True, text=True, env={"POD_NAMESPACE": "telemetry"}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_prometheus_scrape_configs_pass_promtool(tmp_path: Path) -> None:
    scrape = yaml.safe_load((K8S / "base" / "prometheus-scrape.yaml").read_text())
    # Debian's Prometheus is built without Kubernetes service discovery (promtool refuses
    # `kubernetes_sd_configs` as an unknown field): check everything else with a static
    # target in its place, and the SD block's shape by hand.
    checked = []
    for job in scrape:
        sd = job["kubernetes_sd_configs"]
        assert sd == [{"role": "pod"}], sd
        checked.append(
            {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
            | {"static_configs": [{"targets": ["127.0.0.1:4318"]}]}
        )
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": checked}))
    out = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    gateway = next(j for j in scrape if j["job_name"] == "gateway")
    assert gateway["honor_labels"] is True
    assert any(r.get("target_label") == "gateway_replica" for r in gateway["relabel_configs"])
