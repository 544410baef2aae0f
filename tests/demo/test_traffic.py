import pytest

from demo.traffic import MAX_RATE, TrafficGenerator


@pytest.mark.parametrize(
    "url", ["http://example.com:3000", "https://127.0.0.1:3000", "http://10.0.0.1:3000"]
)
def test_traffic_goes_to_local_http_only(url: str) -> None:
    with pytest.raises(ValueError, match="local"):
        TrafficGenerator(url)


@pytest.mark.parametrize("rate", [0, -1, MAX_RATE + 1])
def test_rate_is_bounded(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TrafficGenerator("http://127.0.0.1:3000", rate=rate)


def test_every_action_kind_gets_picked() -> None:
    gen = TrafficGenerator("http://127.0.0.1:3000", seed=7)
    picked = {gen.pick().__name__ for _ in range(2000)}
    assert picked == {
        "view_user",
        "view_missing_user",
        "list_deployments",
        "deploy",
        "deploy_failing",
        "deploy_invalid",
        "simulate_error",
        "websocket_session",
        "websocket_rejected",
    }
