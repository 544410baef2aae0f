"""The `health:` section of the gateway config."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, GatewayConfig, load
from gateway.health.config import HealthConfig


def test_defaults_have_no_database_checks_and_hide_details() -> None:
    health = GatewayConfig().health
    assert health == HealthConfig()
    assert (health.postgres, health.redis, health.details) == (None, None, "never")
    assert health.system.cpu_warn == 80 and health.system.cpu_fail == 95
    assert health.system.memory_warn == 85 and health.system.memory_fail == 95


def test_yaml_section_with_token_from_the_environment() -> None:
    cfg = load(
        {
            "health": {
                "details": "when-authorized",
                "postgres": {"dsn": "postgresql://postgres@127.0.0.1/test", "required": True},
                "redis": {"url": "redis://127.0.0.1:6379/0", "breaker": {"cooldown_seconds": 5}},
                "system": {"cpu_warn": 70, "cpu_fail": 90},
            }
        },
        environ={"GATEWAY_HEALTH__TOKEN": "t0ken"},
    )
    h = cfg.health
    assert h.token == "t0ken"
    assert h.postgres is not None and h.postgres.required
    assert h.redis is not None and h.redis.breaker.cooldown_seconds == 5
    assert h.redis.breaker.failure_threshold == 3  # the rest of the breaker keeps defaults
    assert (h.system.cpu_warn, h.system.cpu_fail) == (70, 90)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"details": "sometimes"}, "health.details"),
        ({"details": "when-authorized"}, "token is empty"),
        ({"postgres": {"required": True}}, "health.postgres.dsn"),
        ({"redis": {"url": "redis://x", "colour": "red"}}, "health.redis.colour"),
        ({"system": {"cpu_warn": 99, "cpu_fail": 90}}, "cpu_warn must not exceed cpu_fail"),
        (
            {"redis": {"url": "redis://x", "breaker": {"half_open_trials": 0}}},
            "health.redis.breaker.half_open_trials",
        ),
    ],
)
def test_errors_name_the_yaml_path(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"health": section})
    assert message in str(info.value)


def test_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        HealthConfig().details = "always"  # type: ignore[misc]
