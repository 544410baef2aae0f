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


@pytest.mark.integration
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


def test_otel_exporter_endpoint_configures_the_forwarder() -> None:
    config = load(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert config.forwarder.endpoint == "http://collector:4318"


def test_metrics_specific_otel_variables_win_over_the_generic_ones() -> None:
    config = load(
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:4318/v1/metrics",
        }
    )
    assert config.forwarder.endpoint == "http://metrics:4318/v1/metrics"


def test_otel_protocol_headers_and_timeout() -> None:
    config = load(
        environ={
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b,x-tenant=t1",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        }
    )
    assert config.forwarder.protocol == "grpc"
    assert config.forwarder.headers == {"api-key": "a b", "x-tenant": "t1"}
    assert config.forwarder.timeout_seconds == 2.5


def test_unsupported_otel_protocol_is_an_error_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        load(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert any(e.startswith("forwarder.protocol:") for e in info.value.errors)


def test_otel_service_name_and_resource_attributes_name_the_gateway() -> None:
    config = load(
        environ={
            "OTEL_SERVICE_NAME": "gw-eu",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=obs",
        }
    )
    assert config.telemetry.service_name == "gw-eu"
    assert config.telemetry.resource_attributes == {
        "deployment.environment": "prod",
        "team": "obs",
    }


def test_the_file_and_gateway_variables_override_otel_variables(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("forwarder:\n  endpoint: http://from-file:4318\n")
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://from-otel:4318"}
    assert load_file(f, environ=environ).forwarder.endpoint == "http://from-file:4318"
    environ["GATEWAY_FORWARD_ENDPOINT"] = "http://from-gateway-env:4318"
    assert load_file(f, environ=environ).forwarder.endpoint == "http://from-gateway-env:4318"


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:4318", "http://localhost:4318/v1/metrics", "127.0.0.1:4317"]
)
def test_forwarding_to_its_own_listener_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert "would loop" in " ".join(info.value.errors)
    # Another port on the same host is another gateway: fine.
    assert load({"forwarder": {"endpoint": "http://127.0.0.1:14318"}}).forwarder.endpoint


def test_environment_overrides_nest_to_any_depth(tmp_path: Path) -> None:
    """Issue 19, item 4: GATEWAY_HEALTH__POSTGRES__DSN failed with "health.postgres__dsn:
    Extra inputs are not permitted"; a DSN holds a password, so it belongs in a variable."""
    f = tmp_path / "g.yaml"
    f.write_text("health:\n  postgres: {dsn: 'postgresql://file@h/db', required: false}\n")
    config = load_file(
        f,
        environ={
            "GATEWAY_HEALTH__POSTGRES__DSN": "postgresql://u:pw@127.0.0.1/test",
            "GATEWAY_HEALTH__UPSTREAM__BREAKER__COOLDOWN_SECONDS": "7",
        },
    )
    assert config.health.postgres is not None
    assert config.health.postgres.dsn == "postgresql://u:pw@127.0.0.1/test"
    assert config.health.postgres.required is False  # the file's sibling key survives
    assert config.health.upstream.breaker.cooldown_seconds == 7


def test_an_environment_typo_is_blamed_on_the_variable(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("queue: {kind: memory}\nserver: {http_port: nope}\n")
    with pytest.raises(ConfigError) as info:
        load_file(f, environ={"GATEWAY_QUEUE__KINDD": "disk"})
    assert (
        "environment GATEWAY_QUEUE__KINDD: queue.kindd: Extra inputs are not permitted"
        in info.value.lines
    )
    assert any(line.startswith(f"file {f}: server.http_port:") for line in info.value.lines)


def test_a_section_error_blames_what_set_its_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load(environ={"GATEWAY_QUEUE__KIND": "disk"})
    assert info.value.lines == [
        "environment GATEWAY_QUEUE__KIND: queue: Value error, queue.path is required when "
        "queue.kind is disk"
    ]


@pytest.mark.integration  # runs `telemetry-gateway check-config` as a subprocess
def test_check_config_names_where_each_value_came_from(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("server: {http_port: 4400}\nhealth: {postgres: {dsn: 'postgresql://a:pw@h/d'}}\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "GATEWAY_HEALTH__POSTGRES__REQUIRED": "false",
        "GATEWAY_HEALTH__TOKEN": "s3cret",
        "OTEL_SERVICE_NAME": "gw-1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(f)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"server.http_port = 4400  (file {f})" in out
    assert (
        "health.postgres.required = false  (environment GATEWAY_HEALTH__POSTGRES__REQUIRED)" in out
    )
    assert 'telemetry.service_name = "gw-1"  (environment OTEL_SERVICE_NAME)' in out
    assert "health.token = <hidden>  (environment GATEWAY_HEALTH__TOKEN)" in out
    assert "pw" not in out and "s3cret" not in out
    assert "server.grpc_port" not in out  # a default: listed with --all only
    every = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--all", str(f)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert "server.grpc_port = 4317  (default)" in every.stdout


@pytest.mark.integration  # runs `telemetry-gateway check-config` as a subprocess
def test_check_config_blames_an_environment_typo_on_the_variable(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("queue: {kind: memory}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(f)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GATEWAY_QUEUE__KINDD": "disk"},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "environment GATEWAY_QUEUE__KINDD: queue.kindd: Extra inputs are not permitted"
    )


@pytest.mark.integration  # runs `telemetry-gateway check-config` as a subprocess
def test_check_config_names_gateway_variables_that_are_no_setting(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("{}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(f)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GATEWAY_HTTP_PROT": "5000", "GATEWAY_HTTP_PORT": "5001"},
    )
    assert result.returncode == 0, result.stderr  # a note, not an error
    assert result.stderr.startswith(
        "environment GATEWAY_HTTP_PROT: not a setting, ignored (GATEWAY_<SECTION>__<KEY>"
    )
    assert "GATEWAY_HTTP_PORT:" not in result.stderr
    assert "server.http_port = 5001  (environment GATEWAY_HTTP_PORT)" in result.stdout


def test_a_whole_config_error_blames_the_keys_its_message_names(tmp_path: Path) -> None:
    """The self-forwarding check is about forwarder.endpoint, which OTEL_EXPORTER_OTLP_ENDPOINT
    set here: the file (which has the ports only) is not to blame."""
    f = tmp_path / "g.yaml"
    f.write_text("server: {http_port: 4318}\n")
    with pytest.raises(ConfigError) as info:
        load_file(f, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    [line] = info.value.lines
    assert line.startswith("environment OTEL_EXPORTER_OTLP_ENDPOINT: (top level): ")
    assert "this gateway's own listener" in line


def test_a_flag_error_blames_the_command_line() -> None:
    with pytest.raises(ConfigError) as info:
        load(environ={}, overrides={"server": {"http_port": 70000}})
    assert info.value.lines[0].startswith("command-line flag: server.http_port: ")
