"""The SLO rules generator: the committed rules are a fresh generation of the declaration, and
bad declarations fail with the YAML path of the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway import slo

GOOD = {
    "period": "30d",
    "links": {"runbooks": "https://example/runbooks.md", "dashboard": "https://example/d/x"},
    "policies": {
        "page": {
            "severity": "critical",
            "for": "2m",
            "windows": [{"long": "1h", "short": "5m", "factor": 14.4}],
        }
    },
    "slos": [
        {
            "name": "api-availability",
            "alert_prefix": "ApiAvailability",
            "description": "an API request answered without a 5xx",
            "objective": 0.999,
            "dashboard_panel": 3,
            "sli": {"kind": "errors", "metric": "api.requests", "bad": 'status="5xx"'},
        }
    ],
}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_committed_rules_match_a_fresh_generation() -> None:
    fresh = slo.render(slo.load_declaration(slo.DEFAULT_DECLARATION))
    assert slo.DEFAULT_OUTPUT.read_text() == fresh, "run `python -m gateway.slo` and commit"


def test_check_mode_detects_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "slo.yml"
    decl = _write(tmp_path, GOOD)
    assert slo.main(["--declaration", str(decl), "--output", str(out)]) == 0
    assert slo.main(["--declaration", str(decl), "--output", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("14.4", "1.44"))
    assert slo.main(["--declaration", str(decl), "--output", str(out), "--check"]) == 1
    assert "stale" in capsys.readouterr().err


def test_generated_page_alert_combines_long_and_short_windows(tmp_path: Path) -> None:
    long, main = slo.generate(slo.load_declaration(_write(tmp_path, GOOD)))["groups"]
    rules = main["rules"]
    records = [r["record"] for r in rules if "record" in r]
    assert records == [
        "slo:sli_error:ratio_rate5m",
        "slo:sli_events:rate5m",
        "slo:sli_error:ratio_rate1h",
        "slo:sli_events:rate1h",
        "slo:objective:ratio",
        "slo:error_budget:ratio",
        "slo:current_burn_rate:ratio",
    ]
    # The period (30d) is never a raw rate: it comes from recorded 5m rates, every minute.
    assert long["interval"] == "1m"
    assert [r["record"] for r in long["rules"]] == [
        "slo:sli_bad:rate5m",
        "slo:sli_total:rate5m",
        "slo:sli_error:ratio_rate30d",
        "slo:sli_events:rate30d",
        "slo:period_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
    ]
    assert long["rules"][2]["expr"] == (
        'sum_over_time(slo:sli_bad:rate5m{slo="api-availability"}[30d])\n/\n'
        'sum_over_time(slo:sli_total:rate5m{slo="api-availability"}[30d])\n'
    )
    (alert,) = [r for r in rules if "alert" in r]
    assert alert["alert"] == "ApiAvailabilityBudgetBurnPage"
    assert alert["expr"] == (
        "(\n"
        '  slo:sli_error:ratio_rate1h{slo="api-availability"} > (14.4 * 0.001)\n'
        "  and\n"
        '  slo:sli_error:ratio_rate5m{slo="api-availability"} > (14.4 * 0.001)\n'
        ")\n"
    )
    assert alert["labels"] == {
        "severity": "critical",
        "alert_group": "slo_api_availability",
        "slo": "api-availability",
    }
    assert alert["annotations"]["runbook_url"] == (
        "https://example/runbooks.md#apiavailabilitybudgetburnpage"
    )
    assert alert["annotations"]["dashboard_url"] == "https://example/d/x?viewPanel=3"
    ratio = rules[0]["expr"]
    assert 'rate(coderunner_api_requests_total{status="5xx"}[5m])' in ratio


def test_latency_sli_reads_the_histogram_bucket(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["slos"][0]["sli"] = {"kind": "latency", "metric": "api.duration", "threshold": "0.25"}
    rules = slo.generate(slo.load_declaration(_write(tmp_path, data)))["groups"][1]["rules"]
    (ratio,) = [r for r in rules if r.get("record") == "slo:sli_error:ratio_rate1h"]
    assert 'coderunner_api_duration_seconds_bucket{le="0.25"}[1h]' in ratio["expr"]
    assert "coderunner_api_duration_seconds_count[1h]" in ratio["expr"]


def test_low_traffic_guard_and_alert_group(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["slos"][0].update(min_events=500, alert_group="api_errors")
    data["policies"]["ticket"] = {
        "severity": "warning",
        "for": "15m",
        "windows": [{"long": "3d", "short": "6h", "factor": 1}],
    }
    long, main = slo.generate(slo.load_declaration(_write(tmp_path, data)))["groups"]
    page, ticket = [r for r in main["rules"] if "alert" in r]
    assert page["labels"]["alert_group"] == "api_errors"
    assert (
        'and on (job)\n  slo:sli_events:rate1h{slo="api-availability"} * 3600 >= 500'
        in page["expr"]
    )
    # 3d is beyond raw_windows_up_to (6h): recorded from 5m rates, no rate(...[3d]) anywhere.
    assert 'slo:sli_events:rate3d{slo="api-availability"} * 259200 >= 500' in ticket["expr"]
    everything = yaml.safe_dump(slo.generate(slo.load_declaration(_write(tmp_path, data))))
    assert "[3d]))" not in everything and "[30d]))" not in everything
    assert "slo:sli_error:ratio_rate3d" in [r["record"] for r in long["rules"]]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("slos", 0, "sli", "metric"), "api.request", "not in gateway/catalogue.py"),
        (("slos", 0, "sli", "metric"), "api.duration", "needs a counter"),
        (("slos", 0, "objective"), 1.0, "slos.0.objective"),
        (("policies", "page", "windows", 0, "long"), "1 hour", "policies.page.windows.0.long"),
        (("policies", "page", "windows", 0, "factor"), 1500, "could never fire"),
        (("slos", 0, "unknown"), 1, "slos.0.unknown"),
    ],
)
def test_bad_declarations_fail_with_their_location(
    tmp_path: Path, path: tuple[str | int, ...], value: object, message: str
) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=message):
        slo.load_declaration(_write(tmp_path, data))


def test_cli_reports_a_bad_declaration_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path, {"period": "30d"})
    assert slo.main(["--declaration", str(bad), "--output", str(tmp_path / "out.yml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "links" in err
    assert not (tmp_path / "out.yml").exists()


def _days(duration: str) -> float:
    return int(duration[:-1]) * {"m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7}[duration[-1]]


def test_retention_covers_the_slo_period_wherever_prometheus_is_started() -> None:
    """The period's SLI and remaining budget are computed from stored samples: Prometheus must
    keep at least the period, in compose and in the local stack."""
    from gateway.stack.components import RETENTION_TIME

    period = _days(slo.load_declaration(slo.DEFAULT_DECLARATION).period)
    compose = yaml.safe_load((slo.REPO / "compose.yaml").read_text())
    flags = dict(
        arg.removeprefix("--").split("=", 1)
        for arg in compose["services"]["prometheus"]["command"]
        if "=" in arg
    )
    assert _days(flags["storage.tsdb.retention.time"]) >= period
    assert _days(RETENTION_TIME) >= period
