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


def test_steady_profile_sends_no_server_errors_and_forces_no_failures() -> None:
    gen = TrafficGenerator("http://127.0.0.1:3000", seed=7, profile="steady")
    picked = {gen.pick().__name__ for _ in range(2000)}
    assert "simulate_error" not in picked and "deploy_failing" not in picked
    assert {"deploy", "view_user", "websocket_session"} <= picked


def test_profiles_switch_while_running() -> None:
    gen = TrafficGenerator("http://127.0.0.1:3000", seed=7, profile="steady")
    gen.use_profile("error-spike")
    share = sum(gen.pick().__name__ == "simulate_error" for _ in range(4000)) / 4000
    assert 0.25 < share < 0.45
    gen.use_profile("slow-deploys")
    picked = {gen.pick().__name__ for _ in range(2000)}
    assert "deploy_slow" in picked and "deploy" not in picked
    with pytest.raises(ValueError, match="unknown traffic profile"):
        gen.use_profile("nope")
