"""`telemetry-gateway render`: the committed files are the default rendering, and a rendering
for another namespace is a consistent world: no `coderunner` left anywhere, the rendered
promtool tests pass against the rendered rules, the dashboard reads only the namespace's
catalogue names and recorded series, and the alerts link where the options say."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.catalogue import CATALOGUE, Kind
from gateway.cli import main
from gateway.render import REPO, RenderOptions, UnmappedName, default_links, render

RUNBOOKS = "https://runbooks.acme.test/ops/runbooks.md"
DASHBOARD = "https://grafana.acme.test/d/acme-overview/acme-overview"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps`")
    return path


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("acme")
    render(out, RenderOptions("acme", runbook_base=RUNBOOKS, dashboard_base=DASHBOARD))
    return out


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def _rules(root: Path) -> Iterator[dict[str, Any]]:
    for path in sorted((root / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def _catalogue_series(namespace: str) -> set[str]:
    names = set()
    for metric in CATALOGUE:
        base = metric.prometheus_name(namespace)
        names.add(base)
        if metric.kind is Kind.HISTOGRAM:
            names |= {base + "_bucket", base + "_count", base + "_sum"}
    return names


def test_default_rendering_is_the_committed_files(tmp_path: Path) -> None:
    links = default_links()
    rendered = render(
        tmp_path,
        RenderOptions("coderunner", runbook_base=links.runbooks, dashboard_base=links.dashboard),
    )
    assert "prometheus/rules/alerts.yml" in rendered.files
    for relative in rendered.files:
        assert (tmp_path / relative).read_text() == (REPO / relative).read_text(), relative


def test_every_rule_and_test_file_the_globs_find_is_rendered(acme: Path) -> None:
    for folder in ("rules", "tests"):
        committed = {p.name for p in (REPO / "prometheus" / folder).glob("*.yml")}
        rendered = {p.name for p in (acme / "prometheus" / folder).glob("*.yml")}
        assert committed and committed == rendered


def test_no_trace_of_the_default_namespace_remains(acme: Path) -> None:
    files = list(_files(acme))
    assert len(files) > 20
    for path in files:
        assert "coderunner" not in str(path.relative_to(acme)).lower()
        text = path.read_text()
        assert not re.search("coderunner", text, re.I), (
            path,
            re.search(".*coderunner.*", text, re.I),
        )
    assert (
        "acme_system_memory_utilization_ratio > 0.95"
        in (acme / "prometheus" / "rules" / "alerts.yml").read_text()
    )
    assert "acme_api_requests_total" in (acme / "docs" / "metrics.md").read_text()


@pytest.mark.integration
def test_rendered_promtool_tests_pass_against_rendered_rules(acme: Path) -> None:
    prom = acme / "prometheus"
    rules = sorted(str(p) for p in (prom / "rules").glob("*.yml"))
    checked = subprocess.run(
        [_tool("promtool"), "check", "rules", *rules], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = sorted(p.name for p in (prom / "tests").glob("*.yml"))
    result = subprocess.run(
        [_tool("promtool"), "test", "rules", *tests],
        capture_output=True,
        text=True,
        cwd=prom / "tests",
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result.stdout.count("SUCCESS") == len(tests)


def test_rules_read_only_the_namespaces_names(acme: Path) -> None:
    known = _catalogue_series("acme")
    recorded = {r["record"] for r in _rules(acme) if "record" in r}
    assert any(name.startswith("job:acme_") for name in recorded)
    for rule in _rules(acme):
        names = set(re.findall(r"(?<![\w:])acme_\w+(?![\w:])", rule["expr"]))
        assert names <= known, rule
        used = set(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", rule["expr"]))
        assert used <= recorded, rule


def test_alert_links_point_where_configured(acme: Path) -> None:
    alerts = [r for r in _rules(acme) if "alert" in r]
    assert len(alerts) > 20
    slo_alerts = 0
    for rule in alerts:
        notes = rule["annotations"]
        assert notes["runbook_url"] == f"{RUNBOOKS}#{rule['alert'].lower()}", rule["alert"]
        assert re.fullmatch(
            re.escape(DASHBOARD) + r"\?viewPanel=[1-9][0-9]*", notes["dashboard_url"]
        )
        slo_alerts += "slo" in rule["labels"]
    assert slo_alerts, "the generated SLO alerts carry the links too"


def test_dashboard_reads_the_namespace_and_recorded_series(acme: Path) -> None:
    (path,) = (acme / "dashboards" / "json").glob("*.json")
    assert path.name == "acme-overview.json"
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == "acme-overview"
    known = _catalogue_series("acme")
    recorded = {r["record"] for r in _rules(acme) if "record" in r}
    exprs = [
        t["expr"]
        for row in dashboard["panels"]
        for p in [row, *row.get("panels", [])]
        for t in p.get("targets", [])
    ]
    assert len(exprs) > 20
    for expr in exprs:
        for name in re.findall(r"(?<![\w:])acme_\w+(?![\w:])", expr):
            assert name in known, expr
        for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr):
            assert name in recorded, expr
    panels = json.loads((acme / "dashboards" / "panels.json").read_text())
    assert panels["dashboard_uid"] == "acme-overview"
    ids = {int(p["url"].rsplit("=", 1)[1]) for p in panels["panels"] if "viewPanel=" in p["url"]}
    for rule in _rules(acme):
        if "alert" in rule:
            assert int(rule["annotations"]["dashboard_url"].rsplit("=", 1)[1]) in ids, rule


def _copy_sources(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    for folder in ("prometheus", "dashboards/json", "dashboards/provisioning", "docs"):
        shutil.copytree(REPO / folder, source / folder)
    shutil.copyfile(REPO / "dashboards" / "panels.json", source / "dashboards" / "panels.json")
    return source


def test_a_hand_written_name_outside_the_catalogue_is_refused(tmp_path: Path) -> None:
    source = _copy_sources(tmp_path)
    (source / "prometheus" / "rules" / "new-team.yml").write_text(
        "groups:\n  - name: coderunner-new\n    rules:\n"
        "      - record: job:coderunner_api_requests:rate1m\n"
        "        expr: sum by (job) (rate(coderunner_api_requests_total[1m]))\n"
        "      - alert: Typo\n        expr: coderunner_api_request_total > 0\n"
    )
    with pytest.raises(UnmappedName) as caught:
        render(
            tmp_path / "out",
            RenderOptions("acme", runbook_base=RUNBOOKS, dashboard_base=DASHBOARD),
            source=source,
        )
    # Only the typo is left: the new file's group, record and catalogue names were mapped.
    assert caught.value.hits == [
        "prometheus/rules/new-team.yml:7: expr: coderunner_api_request_total > 0"
    ]
    text = (tmp_path / "out" / "prometheus" / "rules" / "new-team.yml").read_text()
    assert "name: acme-new" in text and "record: job:acme_api_requests:rate1m" in text
    assert "rate(acme_api_requests_total[1m])" in text


@pytest.mark.parametrize(
    ("namespace", "runbooks", "error"),
    [
        ("acme-corp", RUNBOOKS, "letters, digits and underscores"),
        ("", RUNBOOKS, "letters, digits and underscores"),
        ("acme", "runbooks.md", "http(s)://"),
        ("acme", RUNBOOKS + "#top", "without ?query or #anchor"),
    ],
)
def test_bad_options_are_refused(namespace: str, runbooks: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        RenderOptions(namespace, runbook_base=runbooks, dashboard_base=DASHBOARD)


def test_command_writes_local_links_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "render",
            "--namespace",
            "acme",
            "--gateway-url",
            "http://127.0.0.1:14318",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "for namespace acme" in capsys.readouterr().out
    alerts = yaml.safe_load((tmp_path / "prometheus" / "rules" / "alerts.yml").read_text())
    rule = alerts["groups"][0]["rules"][0]
    assert rule["annotations"]["runbook_url"].startswith("http://127.0.0.1:14318/ui/runbooks#")
    assert rule["annotations"]["dashboard_url"].startswith("http://127.0.0.1:14318/ui/?viewPanel=")
    assert main(["render", "--namespace", "ac-me", "--out", str(tmp_path)]) == 1
    assert "letters, digits and underscores" in capsys.readouterr().err


@pytest.mark.integration
def test_the_local_stack_renders_its_rules_for_its_namespace_and_urls(tmp_path: Path) -> None:
    """`stack up --namespace acme --prometheus-external-url URL`: Prometheus loads rules
    rendered for acme that link to the stack's own gateway, and has the external URL."""
    from gateway.stack.components import StackSettings, build_components, write_prometheus_config

    settings = StackSettings(
        directory=tmp_path,
        gateway_port=14318,
        prometheus_port=19090,
        namespace="acme",
        prometheus_external_url="https://prometheus.acme.test/",
    )
    path = write_prometheus_config(settings)
    config = yaml.safe_load(path.read_text())
    (rules,) = config["rule_files"]
    assert rules == str(tmp_path / "rendered" / "prometheus" / "rules" / "*.yml")
    checked = subprocess.run(
        [_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = [r for r in _rules(tmp_path / "rendered") if "alert" in r]
    assert alerts and all("coderunner" not in r["expr"] for r in alerts)
    assert alerts[0]["annotations"]["runbook_url"].startswith("http://127.0.0.1:14318/ui/runbooks#")
    components = {c.name: c for c in build_components(settings, {"PATH": "/usr/bin:/bin"})}
    assert "--web.external-url=https://prometheus.acme.test/" in components["prometheus"].argv
    gateway_env = components["gateway"].env
    assert gateway_env is not None and gateway_env["GATEWAY_NAMESPACE"] == "acme"


def test_stack_flags_reach_the_settings() -> None:
    from gateway.cli import build_parser
    from gateway.stack.cli import _settings

    args = build_parser().parse_args(
        ["stack", "up", "--namespace", "acme", "--dashboard-base", DASHBOARD]
    )
    settings = _settings(args, None)
    assert (settings.namespace, settings.dashboard_base) == ("acme", DASHBOARD)
    assert settings.runbook_base is None


@pytest.mark.parametrize("namespace", ["coderunner_eu", "Acme"])
def test_namespaces_that_contain_the_old_one_or_capitals(tmp_path: Path, namespace: str) -> None:
    render(tmp_path, RenderOptions(namespace, runbook_base=RUNBOOKS, dashboard_base=DASHBOARD))
    alerts = (tmp_path / "prometheus" / "rules" / "alerts.yml").read_text()
    assert f"{namespace}_system_memory_utilization_ratio > 0.95" in alerts
    assert not re.search(r"(?<![\w:])coderunner_system", alerts)
    dashboard = tmp_path / "dashboards" / "json" / f"{namespace}-overview.json"
    assert json.loads(dashboard.read_text())["uid"] == f"{namespace}-overview"


def test_command_takes_the_namespace_the_gateway_would_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("prometheus:\n  namespace: fromfile\n")
    assert main(["render", "--config", str(config), "--out", str(tmp_path / "a")]) == 0
    assert "for namespace fromfile" in capsys.readouterr().out
    monkeypatch.setenv("GATEWAY_NAMESPACE", "fromenv")
    assert main(["render", "--out", str(tmp_path / "b")]) == 0
    assert "for namespace fromenv" in capsys.readouterr().out
    assert (tmp_path / "b" / "dashboards" / "json" / "fromenv-overview.json").is_file()


def test_runbooks_for_an_empty_namespace_are_served_as_written() -> None:
    from gateway.render import runbooks_markdown

    path = REPO / "docs" / "runbooks.md"
    assert runbooks_markdown("", path) == path.read_text()
    acme = runbooks_markdown("acme", path)
    assert acme is not None and "acme_" in acme and "coderunner" not in acme.lower()
    assert runbooks_markdown("acme", REPO / "docs" / "no-such-file.md") is None
