import io
import socket

from demo.runner import Summary, parse_prometheus_text, run_demo

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


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = io.StringIO()
        assert run_demo(http_port=port, grpc_port=0, demo_port=port + 1, out=out) == 1
    assert f"port {port} is in use" in out.getvalue()
