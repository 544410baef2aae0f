import io
import socket

import pytest

from demo.runner import GatewayFigures, Summary, parse_prometheus_text, run_demo

TEXT = """# HELP x
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_count{job="a",http_route="/x",l="sp ace } \\" q"} 7
http_server_request_duration_seconds_count{job="b",http_route="/y"} 3
coderunner_deployments_total{status="success",type="go"} 4
coderunner_deployments_total{status="failed",type="go"} 1
coderunner_errors_total{type="E",service="s",severity="error"} 2
coderunner_gateway_active_series 42.0
target_info{job="a"} 1
"""


def test_parse_prometheus_text() -> None:
    s = parse_prometheus_text(TEXT)
    assert s["http_server_request_duration_seconds_count"][0] == (
        {"job": "a", "http_route": "/x", "l": 'sp ace } \\" q'},
        7.0,
    )
    assert s["coderunner_gateway_active_series"] == [({}, 42.0)]
    assert "# HELP x" not in s


def test_summary_from_samples_and_rate() -> None:
    first = Summary.from_samples(parse_prometheus_text(TEXT), None, 0)
    assert (first.requests_total, first.deployments_ok, first.deployments_failed) == (10, 4, 1)
    assert (first.errors, first.active_series, first.requests_per_s) == (2, 42, 0)
    later_text = TEXT.replace("} 7\n", "} 27\n")
    later = Summary.from_samples(parse_prometheus_text(later_text), first, 2.0)
    assert later.requests_per_s == 10.0


@pytest.mark.integration
def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = io.StringIO()
        assert run_demo(http_port=port, grpc_port=0, demo_port=port + 1, out=out) == 1
    assert f"port {port} is in use" in out.getvalue()


def test_render_is_one_screen_with_every_figure(tmp_path: object) -> None:
    from pathlib import Path

    from demo.runner import _render
    from demo.traffic import TrafficStats

    stats = TrafficStats()
    stats.responses.update({200: 10, 201: 3, 404: 2, 500: 1})
    stats.ws_sessions, stats.ws_rejected = 4, 1
    summary = Summary(
        requests_total=16,
        requests_per_s=3.5,
        deployments_ok=2,
        deployments_failed=1,
        errors=2,
        websockets_open=1,
        active_series=77,
    )
    urls = {
        "status page": "http://127.0.0.1:1/ui/",
        "metrics": "http://127.0.0.1:1/metrics",
        "gateway health": "http://127.0.0.1:1/api/health",
        "demo service": "http://127.0.0.1:2/",
        "demo health": "http://127.0.0.1:2/api/health",
    }
    gateway = GatewayFigures(points_per_s=12.5, dropped=3, refused=1, health="pass")
    screen = _render(urls, "connected", summary, stats, Path("/tmp/logs"), 0.0, gateway=gateway)
    assert len(screen.splitlines()) <= 24
    assert max(len(line) for line in screen.splitlines()) <= 100, screen
    for needle in (
        "http://127.0.0.1:1/metrics",
        "connected",
        "3.5",
        "2 success",
        "1 failed",
        "77",
        "2xx=13",
        "4xx=2",
        "5xx=1",
        "ws 4 ok / 1 rejected",
        "(33%; alert above 10%)",
        "http://127.0.0.1:1/ui/",
        "12.5",
        "dropped points         3",
        "1 requests",
        "health pass",
        "scenario: none",
        "--scenario error-spike",
        "stack up",
    ):
        assert needle in screen, needle


def test_scenario_phases_are_described() -> None:
    from demo.runner import ScenarioState
    from demo.scenarios import SCENARIOS

    state = ScenarioState(SCENARIOS["error-spike"], warmup_s=60, fault_s=300)
    state.phase_ends = 100.0
    assert state.describe(40.0) == (
        "error-spike: steady for 60s more, then about a third of API requests answered 500"
    )
    state.phase = "fault"
    assert "FAULT" in state.describe(99.0) and "1s more" in state.describe(99.0)
    state.phase = "recovering"
    assert "recovering" in state.describe(200.0)


def test_database_url_is_rewritten_to_the_relay() -> None:
    from demo.runner import _via_proxy

    assert _via_proxy("postgresql://postgres@db.example:5432/test", 4000) == (
        "postgresql://postgres@127.0.0.1:4000/test"
    )
    assert _via_proxy("postgresql://u:p@h/x?sslmode=disable", 9) == (
        "postgresql://u:p@127.0.0.1:9/x?sslmode=disable"
    )
    assert _via_proxy("postgresql://h:1/x", 9) == "postgresql://127.0.0.1:9/x"


def test_unknown_scenario_and_bad_timings_are_refused() -> None:
    out = io.StringIO()
    assert run_demo(scenario="nope", out=out) == 1
    assert "unknown scenario 'nope'" in out.getvalue()
    out = io.StringIO()
    assert run_demo(scenario="error-spike", fault_s=0, out=out) == 1
    assert "--fault-seconds" in out.getvalue()


def test_gateway_figures_name_the_checks_that_do_not_pass() -> None:
    pipeline = {
        "points_in": {"per_second": 4.0},
        "dropped_points": {"out_of_order": 2, "cardinality_limit": 3},
        "refused_requests": {"http: invalid": 1},
    }
    health = {
        "status": "warn",
        "checks": [
            {"name": "system", "status": "fail"},
            {"name": "memory_limiter", "status": "pass"},
        ],
    }
    figures = GatewayFigures.from_status(pipeline, health)
    assert (figures.points_per_s, figures.dropped, figures.refused) == (4.0, 5, 1)
    assert figures.health == "warn (system: fail)"
    assert GatewayFigures.from_status(pipeline, {"status": "pass", "checks": []}).health == "pass"


def test_the_stack_offers_exactly_the_demo_scenarios() -> None:
    import argparse

    from demo.scenarios import SCENARIOS
    from gateway.stack.cli import add_stack_parser

    parser = argparse.ArgumentParser()
    add_stack_parser(parser.add_subparsers())
    args = parser.parse_args(["stack", "up", "--scenario", "db-outage"])
    assert args.scenario == "db-outage"
    for name in SCENARIOS:
        assert parser.parse_args(["stack", "up", "--scenario", name]).scenario == name
    up = next(
        a
        for a in parser._subparsers._group_actions[0]
        .choices["stack"]
        ._subparsers._group_actions[0]
        .choices["up"]
        ._actions  # type: ignore[union-attr]
        if a.dest == "scenario"
    )
    assert set(up.choices or ()) == set(SCENARIOS)


def test_summary_reads_the_gateways_namespace() -> None:
    """GATEWAY_NAMESPACE=acme: the live screen reads acme_* (found from the gateway's own
    series), not zeros from the default names."""
    acme = parse_prometheus_text(TEXT.replace("coderunner_", "acme_"))
    summary = Summary.from_samples(acme, None, 0)
    assert (summary.deployments_ok, summary.errors, summary.active_series) == (4, 2, 42)
