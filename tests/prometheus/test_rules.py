"""The Prometheus configs and rules: promtool accepts them, every alert is unit-tested both ways,
and every alert carries the labels, annotations and links the runbooks and dashboards rely on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.catalogue import CATALOGUE, Kind
from gateway.stack.components import StackSettings, write_prometheus_config

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
SLO_DECLARATION = PROM / "slo.yaml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps`")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=PROM, timeout=120)


def _alerts() -> list[dict[str, Any]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [rule for rule in group["rules"] if "alert" in rule]
    return out


def _links() -> dict[str, str]:
    links: dict[str, str] = yaml.safe_load(SLO_DECLARATION.read_text())["links"]
    return links


def _github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_there_are_rules_and_tests() -> None:
    assert {p.name for p in RULE_FILES} >= {"alerts.yml", "recording.yml", "slo.yml"}
    assert len(TEST_FILES) >= 5
    assert len(_alerts()) >= 20


@pytest.mark.integration
@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_promtool_check_config(config: str) -> None:
    result = _run(_tool("promtool"), "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    # The glob in rule_files must have found the rule files, not matched nothing.
    for rule_file in RULE_FILES:
        assert f"rules/{rule_file.name}" in result.stdout, result.stdout


@pytest.mark.integration
def test_promtool_check_rules() -> None:
    result = _run(_tool("promtool"), "check", "rules", *(str(p) for p in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_promtool_test_rules() -> None:
    result = _run(_tool("promtool"), "test", "rules", *(str(p) for p in TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_every_alert_has_a_firing_and_a_non_firing_case() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - fires == set(), "alerts without a case where they fire"
    # Watchdog fires at all times by design (its silence is what the dead man's switch alarms on).
    assert names - silent == {"Watchdog"}, "alerts without a case where they must not fire"
    assert (fires | silent) - names == set(), "test cases for alerts that do not exist"


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: r["alert"])
def test_alert_labels_and_annotations(rule: dict[str, Any]) -> None:
    labels, notes = rule.get("labels", {}), rule.get("annotations", {})
    # `none`: only the Watchdog, which goes to the dead man's switch, never to a person.
    expected = {"none"} if rule["alert"] == "Watchdog" else {"critical", "warning"}
    assert labels.get("severity") in expected
    assert re.fullmatch(r"[a-z][a-z0-9_]*", labels.get("alert_group", ""))
    assert set(notes) == {"summary", "description", "runbook_url", "dashboard_url"}
    assert "{{" in notes["description"], "description must be templated"
    assert "for" in rule, "every alert waits before firing"


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: r["alert"])
def test_runbook_url_points_at_an_existing_section(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base == _links()["runbooks"]
    anchors = {
        _github_anchor(line.lstrip("#"))
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("#")
    }
    assert anchor in anchors, f"docs/runbooks.md has no section #{anchor}"
    assert anchor == rule["alert"].lower(), "one runbook section per alert, named after it"


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: r["alert"])
def test_dashboard_url_points_at_an_overview_panel(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["dashboard_url"]
    assert re.fullmatch(re.escape(_links()["dashboard"]) + r"\?viewPanel=[1-9][0-9]*", url), url


def test_twins_share_a_group_with_one_critical_and_one_warning() -> None:
    """Alertmanager's inhibit rule mutes a warning while a critical of its alert_group fires;
    a group with two criticals or two warnings would mute the wrong thing."""
    groups: dict[str, list[str]] = {}
    for rule in _alerts():
        if rule["alert"] == "Watchdog":
            continue
        groups.setdefault(rule["labels"]["alert_group"], []).append(rule["labels"]["severity"])
    # api_errors holds one incident seen two ways: the raw thresholds (ApiErrorRate*) and the
    # availability SLO's burn rate (page and ticket). Either critical mutes both warnings, and
    # Alertmanager groups all four into one notification (one page).
    several = {"api_errors": ["critical", "critical", "warning", "warning"]}
    for name, severities in groups.items():
        allowed = [several[name]] if name in several else []
        allowed += [["critical"], ["warning"], ["critical", "warning"]]
        assert sorted(severities) in allowed, name


def _catalogue_series() -> set[str]:
    names = set()
    for metric in CATALOGUE:
        base = metric.prometheus_name()
        if metric.kind is Kind.HISTOGRAM:
            names |= {base + "_bucket", base + "_count", base + "_sum"}
        else:
            names.add(base)
    return names


def test_rules_only_use_catalogue_metric_names() -> None:
    """A coderunner_ name in a rule that the catalogue does not define is a typo that would
    make the alert silently never fire."""
    known = _catalogue_series()
    used: set[str] = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                # Recorded names (job:coderunner_...:rate5m) contain colons and are skipped.
                used |= set(re.findall(r"(?<![\w:])coderunner_\w+(?![\w:])", rule["expr"]))
    assert used, "no catalogue names found: the pattern is wrong"
    assert used - known == set()


def test_recorded_series_used_by_alerts_are_recorded() -> None:
    recorded: set[str] = set()
    referenced: set[str] = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    recorded.add(rule["record"])
                referenced |= set(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", rule["expr"]))
    assert referenced, "no recorded names found: the pattern is wrong"
    assert referenced - recorded == set()


def test_dashboard_panels_exist_in_the_overview_dashboard() -> None:
    """The dashboards generator lists its panels (dashboards/panels.json); an alert linking to
    a panel id it does not have would open an empty view."""
    panels = json.loads((REPO / "dashboards" / "panels.json").read_text())
    assert panels["dashboard_uid"] == "coderunner-overview"
    urls = {p["url"]: p["title"] for p in panels["panels"]}
    base = _links()["dashboard"]
    for rule in _alerts():
        url = rule["annotations"]["dashboard_url"]
        path = url.removeprefix(base.removesuffix("/d/coderunner-overview/coderunner-overview"))
        assert path in urls, f"{rule['alert']}: no panel for {url}"


@pytest.mark.integration
def test_local_stack_generates_a_valid_config_for_its_ports(tmp_path: Path) -> None:
    """`telemetry-gateway stack` rewrites prometheus.local.yml for the ports it was given."""
    settings = StackSettings(
        directory=tmp_path,
        prometheus_port=19090,
        alertmanager_port=19093,
        node_exporter_port=19100,
        gateway_port=14318,
    )
    path = write_prometheus_config(settings)
    result = _run(_tool("promtool"), "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout, result.stdout
    config = yaml.safe_load(path.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    # The gateways (one, or every replica) come from a file the stack writes.
    (sd_file,) = jobs.pop("gateway")["file_sd_configs"][0]["files"]
    assert json.loads(Path(sd_file).read_text()) == [{"targets": ["127.0.0.1:14318"]}]
    targets = {name: j["static_configs"][0]["targets"] for name, j in jobs.items()}
    assert targets == {
        "node": ["127.0.0.1:19100"],
        "alertmanager": ["127.0.0.1:19093"],
        "prometheus": ["127.0.0.1:19090"],
    }
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:19093"
    ]


def test_collector_rules_read_the_job_that_scrapes_the_collectors_telemetry() -> None:
    """rules/collector.yml selects job otel-collector-self: prometheus.yml must scrape the
    Collector's own metrics under that job, on the port otel-collector/config.yaml serves them."""
    rules = (PROM / "rules" / "collector.yml").read_text()
    jobs = set(re.findall(r'job="([^"]+)"', rules))
    assert jobs == {"otel-collector-self"}, jobs
    scrape = yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]
    (job,) = [j for j in scrape if j["job_name"] == "otel-collector-self"]
    collector = yaml.safe_load((REPO / "otel-collector" / "config.yaml").read_text())
    readers = collector["service"]["telemetry"]["metrics"]["readers"]
    ports = {r["pull"]["exporter"]["prometheus"]["port"] for r in readers}
    targets = job["static_configs"][0]["targets"]
    assert {int(t.rsplit(":", 1)[1]) for t in targets} == ports == {8888}
    # Not honor_labels: the Collector's own series carry the scrape's job and instance.
    assert not job.get("honor_labels", False)
