from __future__ import annotations

import pytest

from gateway.config import ConfigError, GatewayConfig, load
from gateway.observers.config import ObserversConfig


def test_defaults() -> None:
    c = GatewayConfig().observers
    assert c == ObserversConfig()
    assert (c.interval_seconds, c.min_interval_seconds, c.max_interval_seconds) == (10, 5, 30)
    assert c.overhead_budget == 0.005
    assert c.history_size == 15 * 60 // 5 + 1


def test_yaml_and_environment() -> None:
    c = load(
        {"observers": {"curve": [[0.1, 20], [1, 6]], "per_cpu": False}},
        environ={"GATEWAY_OBSERVERS__OVERHEAD_BUDGET": "0.01"},
    ).observers
    assert c.curve == ((0.1, 20.0), (1.0, 6.0))
    assert c.per_cpu is False and c.overhead_budget == 0.01


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"curve": [[1, 5], [0.5, 10]]}, "observers.curve: Value error, point 1: signal values"),
        ({"curve": []}, "observers.curve: Value error, needs at least one"),
        ({"curve": [[0, -1]]}, "observers.curve: Value error, point 0: interval -1.0"),
        ({"mountpoints_exclude": "("}, "observers.mountpoints_exclude: Value error, not a regular"),
        ({"min_interval_seconds": 40}, "min_interval_seconds (40.0) is above max_interval"),
        ({"interval_seconds": 3}, "interval_seconds (3.0) is outside"),
        ({"overhead_budget": 0}, "observers.overhead_budget: Input should be greater than 0"),
        ({"signal": "disk"}, "observers.signal: Input should be 'load_per_core' or 'cpu_percent'"),
        ({"interval": 10}, "observers.interval: Extra inputs are not permitted"),
    ],
)
def test_bad_config_names_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load({"observers": section})
    assert any(message in e for e in err.value.errors), err.value.errors


def test_frozen() -> None:
    c = ObserversConfig()
    with pytest.raises(ValueError):
        c.interval_seconds = 3  # type: ignore[misc]
