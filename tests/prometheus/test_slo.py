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
    rules = slo.generate(slo.load_declaration(_write(tmp_path, GOOD)))["groups"][0]["rules"]
    records = [r["record"] for r in rules if "record" in r]
    assert records == [
        "slo:sli_error:ratio_rate5m",
        "slo:sli_error:ratio_rate1h",
        "slo:objective:ratio",
    ]
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
    rules = slo.generate(slo.load_declaration(_write(tmp_path, data)))["groups"][0]["rules"]
    assert 'coderunner_api_duration_seconds_bucket{le="0.25"}[1h]' in rules[1]["expr"]
    assert "coderunner_api_duration_seconds_count[1h]" in rules[1]["expr"]


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
