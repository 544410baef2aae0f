"""Static checks of otel-collector/config.yaml (the Collector binary cannot run here).

The Collector refuses to start when a pipeline names a component that is not configured, when a
component type does not exist in the distribution, or when an extension a queue uses is not
enabled. These tests check the same, against the component types of the contrib distribution
at the version compose.yaml pins.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import PrometheusConfig

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "otel-collector" / "config.yaml"
OVERLAY = REPO / "otel-collector" / "longterm.yaml"
COMPOSE = REPO / "compose.yaml"

# The version the list below was checked against: the otelcol-contrib manifest of
# open-telemetry/opentelemetry-collector-releases at tag v0.114.0 (module -> component type).
CONTRIB_VERSION = "0.114.0"
CONTRIB_COMPONENTS: dict[str, frozenset[str]] = {
    "receivers": frozenset(
        {
            "otlp",  # otlpreceiver
            "prometheus",  # prometheusreceiver
            "hostmetrics",  # hostmetricsreceiver
            "filelog",  # filelogreceiver
            "postgresql",  # postgresqlreceiver
            "redis",  # redisreceiver
            "httpcheck",  # httpcheckreceiver
            "nop",  # nopreceiver
        }
    ),
    "processors": frozenset(
        {
            "batch",  # batchprocessor
            "memory_limiter",  # memorylimiterprocessor
            "attributes",  # attributesprocessor
            "resource",  # resourceprocessor
            "filter",  # filterprocessor
            "transform",  # transformprocessor
            "metricstransform",  # metricstransformprocessor
            "cumulativetodelta",  # cumulativetodeltaprocessor
            "deltatocumulative",  # deltatocumulativeprocessor
            "resourcedetection",  # resourcedetectionprocessor
            "groupbyattrs",  # groupbyattrsprocessor
        }
    ),
    "exporters": frozenset(
        {
            "otlp",  # otlpexporter
            "otlphttp",  # otlphttpexporter
            "prometheus",  # prometheusexporter
            "prometheusremotewrite",  # prometheusremotewriteexporter
            "loadbalancing",  # loadbalancingexporter
            "debug",  # debugexporter
            "file",  # fileexporter
            "nop",  # nopexporter
        }
    ),
    "extensions": frozenset(
        {
            "health_check",  # healthcheckextension
            "file_storage",  # extension/storage/filestorage
            "pprof",  # pprofextension
            "zpages",  # zpagesextension
            "basicauth",  # basicauthextension
            "bearertokenauth",  # bearertokenauthextension
            "headers_setter",  # headerssetterextension
        }
    ),
    "connectors": frozenset({"forward", "count", "routing", "spanmetrics"}),
}
_KINDS = ("receivers", "processors", "exporters", "connectors")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """The Collector's merge of several --config files: maps merge, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _load(*paths: Path) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path in paths:
        config = _merge(config, yaml.safe_load(path.read_text()))
    return config


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def validate(config: dict[str, Any]) -> list[str]:
    """What the Collector would refuse at start, as messages (empty: valid)."""
    problems: list[str] = []
    for kind in (*_KINDS, "extensions"):
        for cid in config.get(kind) or {}:
            if _type(cid) not in CONTRIB_COMPONENTS[kind]:
                problems.append(f"{kind}.{cid}: no such component type in contrib")
    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: empty")
    for name, pipeline in pipelines.items():
        if _type(name) not in ("metrics", "traces", "logs"):
            problems.append(f"service.pipelines.{name}: unknown signal")
        for role, kind in (("receivers", "receivers"), ("processors", "processors"),
                           ("exporters", "exporters")):  # fmt: skip
            for cid in pipeline.get(role) or []:
                defined = set(config.get(kind) or {}) | set(config.get("connectors") or {})
                if cid not in defined:
                    problems.append(f"service.pipelines.{name}.{role}: {cid} is not defined")
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            problems.append(f"service.pipelines.{name}: needs receivers and exporters")
    enabled = service.get("extensions") or []
    for cid in enabled:
        if cid not in (config.get("extensions") or {}):
            problems.append(f"service.extensions: {cid} is not defined")
    for cid, exporter in (config.get("exporters") or {}).items():
        storage = ((exporter or {}).get("sending_queue") or {}).get("storage")
        if storage is not None and storage not in enabled:
            problems.append(f"exporters.{cid}.sending_queue.storage: {storage} is not enabled")
    return problems


@pytest.mark.parametrize("paths", [(CONFIG,), (CONFIG, OVERLAY)], ids=["config", "config+longterm"])
def test_pipelines_reference_only_defined_real_components(paths: tuple[Path, ...]) -> None:
    assert validate(_load(*paths)) == []


def test_validator_catches_what_the_collector_refuses() -> None:
    config = _load(CONFIG)
    broken = _merge(
        config,
        {
            "processors": {"not_a_processor": {}},
            "service": {
                "extensions": ["health_check"],
                "pipelines": {"metrics/x": {"receivers": ["otlp"], "exporters": ["otlp/none"]}},
            },
        },
    )
    problems = validate(broken)
    assert "processors.not_a_processor: no such component type in contrib" in problems
    assert "service.pipelines.metrics/x.exporters: otlp/none is not defined" in problems
    assert (
        "exporters.otlphttp/longterm.sending_queue.storage: file_storage/queue is not enabled"
        in problems
    )


def test_memory_limiter_first_then_batch_in_every_pipeline() -> None:
    for name, pipeline in _load(CONFIG, OVERLAY)["service"]["pipelines"].items():
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter", name
        assert "batch" in processors, name


def test_prometheus_exporter_gives_the_gateway_names() -> None:
    exporter = _load(CONFIG)["exporters"]["prometheus"]
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
    config = _load(CONFIG, OVERLAY)
    queue = config["exporters"]["otlphttp/longterm"]["sending_queue"]
    assert queue["enabled"] is True
    storage = queue["storage"]
    assert _type(storage) == "file_storage"
    assert storage in config["service"]["extensions"]
    assert "metrics/longterm" in config["service"]["pipelines"]
    # The overlay adds a pipeline without dropping the Prometheus one.
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["prometheus"]


def test_listeners_reachable_from_other_containers() -> None:
    config = _load(CONFIG)
    endpoints = [
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        config["extensions"]["health_check"]["endpoint"],
        config["exporters"]["prometheus"]["endpoint"],
    ]
    assert [e.split(":")[0] for e in endpoints] == ["0.0.0.0"] * 4
    assert [int(e.split(":")[1]) for e in endpoints] == [4317, 4318, 13133, 8889]


def test_compose_pins_the_checked_contrib_version() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    image = compose["services"]["otel-collector"]["image"]
    assert image == f"otel/opentelemetry-collector-contrib:{CONTRIB_VERSION}"
