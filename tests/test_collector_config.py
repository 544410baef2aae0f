"""The repository's Collector configs against the real Collector binaries built from the
project's manifests (otel-collector/manifest*.yaml, `make collector`).

Each config must pass the binary's own `validate` without a warning (a deprecated component
alias is a warning today and an error in a later release); the manifests must name exactly the
components the configs use; and the settings the gateway's naming depends on are pinned.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import PrometheusConfig
from tests.support.collector import COLLECTOR_DIR, collector_binary, load_config

CONFIG = COLLECTOR_DIR / "config.yaml"
OVERLAY = COLLECTOR_DIR / "longterm.yaml"
LOADBALANCER = COLLECTOR_DIR / "loadbalancer.yaml"
MANIFESTS = {
    "main": COLLECTOR_DIR / "manifest.yaml",
    "loadbalancer": COLLECTOR_DIR / "manifest-loadbalancer.yaml",
}
# Which distribution runs which config (each config file belongs to exactly one).
CONFIGS: dict[str, list[tuple[Path, ...]]] = {
    "main": [(CONFIG,), (CONFIG, OVERLAY)],
    "loadbalancer": [(LOADBALANCER,)],
}
ENV = {
    "LONGTERM_OTLP_ENDPOINT": "http://127.0.0.1:9",
    "GATEWAY_REPLICAS": "[127.0.0.1:14317, 127.0.0.1:24317]",
}
_KINDS = ("receivers", "processors", "exporters", "extensions", "connectors")


def validate(distribution: str, *files: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(collector_binary(distribution)), "validate"]
    argv += [f"--config={f}" for f in files]
    return subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=60)


def _problems(out: subprocess.CompletedProcess[str]) -> list[str]:
    lines = (out.stdout + out.stderr).splitlines()
    return [line for line in lines if re.search(r"\t(warn|error)\t|^Error:", line)]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("distribution", "files"),
    [(d, files) for d, sets in CONFIGS.items() for files in sets],
    ids=lambda v: v if isinstance(v, str) else "+".join(p.stem for p in v),
)
def test_every_config_passes_the_real_validate(distribution: str, files: tuple[Path, ...]) -> None:
    out = validate(distribution, *files)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _problems(out) == []


@pytest.mark.integration
def test_validate_refuses_what_the_collector_refuses(tmp_path: Path) -> None:
    """The check above can fail: an undefined exporter, an unknown component type and a queue
    whose storage extension is not enabled are each refused by the binary."""
    base = load_config(CONFIG, OVERLAY)
    broken: list[tuple[dict[str, Any], str]] = []
    undefined = yaml.safe_load(yaml.safe_dump(base))
    undefined["service"]["pipelines"]["metrics"]["exporters"] = ["otlp_grpc/none"]
    broken.append((undefined, "otlp_grpc/none"))
    unknown = yaml.safe_load(yaml.safe_dump(base))
    unknown["processors"]["not_a_processor"] = {}
    broken.append((unknown, "not_a_processor"))
    no_storage = yaml.safe_load(yaml.safe_dump(base))
    no_storage["service"]["extensions"] = ["health_check"]
    broken.append((no_storage, "no storage client extension found"))
    for i, (config, needle) in enumerate(broken):
        path = tmp_path / f"broken-{i}.yaml"
        path.write_text(yaml.safe_dump(config))
        out = validate("main", path)
        if i == 2:
            # An extension missing from service.extensions is found when the queue starts,
            # not by validate: start the collector for real and read its error.
            out = _run_briefly(path)
        assert out.returncode != 0, (needle, out.stdout + out.stderr)
        assert needle in out.stdout + out.stderr, (needle, out.stdout + out.stderr)


def _run_briefly(path: Path) -> subprocess.CompletedProcess[str]:
    config = yaml.safe_load(path.read_text())
    # Loopback ports nothing else uses in this test; the start fails before serving anyway.
    config["extensions"]["health_check"]["endpoint"] = "127.0.0.1:0"
    config["receivers"]["otlp"]["protocols"] = {
        "grpc": {"endpoint": "127.0.0.1:0"},
        "http": {"endpoint": "127.0.0.1:0"},
    }
    config["exporters"]["prometheus"]["endpoint"] = "127.0.0.1:0"
    config["service"]["telemetry"]["metrics"] = {"level": "none"}
    path.write_text(yaml.safe_dump(config))
    argv = [str(collector_binary("main")), f"--config={path}"]
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=20)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the Collector started: {exc.stdout!r} {exc.stderr!r}") from exc


def _components(distribution: str) -> dict[str, set[str]]:
    """Component types the built binary has, from its own `components` command."""
    out = subprocess.run(
        [str(collector_binary(distribution)), "components"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    listing = yaml.safe_load(out.stdout)
    return {kind: {c["name"] for c in listing.get(kind) or []} for kind in _KINDS}


def _used(config: dict[str, Any]) -> dict[str, set[str]]:
    return {kind: {cid.split("/", 1)[0] for cid in config.get(kind) or {}} for kind in _KINDS}


@pytest.mark.integration
@pytest.mark.parametrize("distribution", sorted(CONFIGS))
def test_manifest_names_exactly_the_components_the_configs_use(distribution: str) -> None:
    used: dict[str, set[str]] = {kind: set() for kind in _KINDS}
    for files in CONFIGS[distribution]:
        for kind, types in _used(load_config(*files)).items():
            used[kind] |= types
    assert _components(distribution) == used


@pytest.mark.parametrize("distribution", sorted(MANIFESTS))
def test_every_collector_module_of_a_manifest_is_at_one_release(distribution: str) -> None:
    text = MANIFESTS[distribution].read_text()
    core = set(re.findall(r"go\.opentelemetry\.io/collector/\S+ (v0\.\d+)\.\d+", text))
    stable = set(re.findall(r"go\.opentelemetry\.io/collector/\S+ (v1\.\d+)\.\d+", text))
    contrib = set(re.findall(r"opentelemetry-collector-contrib/\S+ (v0\.\d+)\.\d+", text))
    assert len(core) == 1 and len(contrib) == 1 and len(stable) == 1, (core, contrib, stable)
    # Core's stable modules (v1.x) are released together with v0.(x + 94).
    (minor,) = {int(v.split(".")[1]) for v in core}
    assert stable == {f"v1.{minor - 94}"}
    assert contrib == core


def test_the_main_distribution_is_the_pinned_release() -> None:
    text = MANIFESTS["main"].read_text()
    assert set(re.findall(r"go\.opentelemetry\.io/collector/\S+ (v0\.\S+)", text)) == {"v0.165.0"}
    assert set(re.findall(r"opentelemetry-collector-contrib/\S+ (v0\.\S+)", text)) == {"v0.165.1"}


def test_memory_limiter_first_and_no_batch_processor_before_a_persistent_queue() -> None:
    config = load_config(CONFIG, OVERLAY)
    for name, pipeline in config["service"]["pipelines"].items():
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter", name
        persistent = [
            e
            for e in pipeline["exporters"]
            if (config["exporters"][e] or {}).get("sending_queue", {}).get("storage")
        ]
        # A batch processor holds accepted points in memory: before a persistent queue it
        # would lose them in a crash. Those exporters batch after their queue instead.
        if persistent:
            assert "batch" not in processors, name
            for e in persistent:
                assert config["exporters"][e]["sending_queue"]["batch"], e
        else:
            assert "batch" in processors, name


def test_prometheus_exporter_gives_the_gateway_names() -> None:
    exporter = load_config(CONFIG)["exporters"]["prometheus"]
    assert exporter["endpoint"] == "0.0.0.0:8889"
    # The gateway forwards `coderunner.*`; a namespace would prefix it a second time.
    assert not exporter.get("namespace")
    assert exporter["add_metric_suffixes"] is True
    # Only job/instance come from the resource, as in the gateway's default exposition.
    assert exporter["resource_to_telemetry_conversion"]["enabled"] is False
    assert PrometheusConfig().resource_to_labels == ()
    minutes = re.fullmatch(r"(\d+)m", exporter["metric_expiration"])
    assert minutes is not None
    assert int(minutes.group(1)) * 60 == PrometheusConfig().metric_expiration_seconds


def test_persistent_queue_on_file_storage() -> None:
    config = load_config(CONFIG, OVERLAY)
    queue = config["exporters"]["otlp_http/longterm"]["sending_queue"]
    assert queue["enabled"] is True
    storage = queue["storage"]
    assert storage.split("/")[0] == "file_storage"
    assert storage in config["service"]["extensions"]
    assert "metrics/longterm" in config["service"]["pipelines"]
    # The overlay adds a pipeline without dropping the Prometheus one.
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["prometheus"]


def test_listeners_reachable_from_other_containers() -> None:
    config = load_config(CONFIG)
    endpoints = [
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        config["extensions"]["health_check"]["endpoint"],
        config["exporters"]["prometheus"]["endpoint"],
    ]
    assert [e.split(":")[0] for e in endpoints] == ["0.0.0.0"] * 4
    assert [int(e.split(":")[1]) for e in endpoints] == [4317, 4318, 13133, 8889]
