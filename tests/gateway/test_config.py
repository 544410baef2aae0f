"""Config: defaults, YAML, environment overrides, errors with their YAML path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load, load_file


def test_embedded_defaults() -> None:
    config = load()
    assert config.server.http_port == 4318
    assert config.server.grpc_port == 4317
    assert config.forwarder.endpoint == ""
    assert config.prometheus.namespace == "coderunner"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("server:\n  http_port: 5000\nprometheus:\n  metric_expiration_seconds: 60\n")
    config = load_file(
        f,
        environ={"GATEWAY_HTTP_PORT": "6000", "GATEWAY_PROMETHEUS__METRIC_EXPIRATION_SECONDS": "9"},
    )
    assert config.server.http_port == 6000
    assert config.prometheus.metric_expiration_seconds == 9


def test_flags_override_the_environment() -> None:
    config = load(environ={"GATEWAY_GRPC_PORT": "7000"}, overrides={"server": {"grpc_port": 0}})
    assert config.server.grpc_port == 0


def test_errors_name_their_yaml_path() -> None:
    with pytest.raises(ConfigError) as info:
        load({"server": {"http_port": -1, "bogus": 1}, "forwarder": {"protocol": "smoke"}})
    errors = info.value.errors
    assert any(e.startswith("server.http_port:") for e in errors)
    assert any(e.startswith("server.bogus:") for e in errors)
    assert any(e.startswith("forwarder.protocol:") for e in errors)


def test_config_is_frozen() -> None:
    config = load()
    with pytest.raises(Exception, match="frozen"):
        config.server.http_port = 1  # type: ignore[misc]


def test_check_config_command_prints_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  http_port: nope\nlimits:\n  max_body_bytes: 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{bad}: server.http_port:" in result.stderr
    assert f"{bad}: limits.max_body_bytes:" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text("server:\n  http_port: 4400\n")
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr


def test_yaml_syntax_error_has_a_line_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  http_port: [1,\n")
    with pytest.raises(ConfigError) as info:
        load_file(bad)
    assert "line" in info.value.errors[0]
