"""The alert links' local defaults resolve: rules rendered for a running gateway
(`telemetry-gateway render --gateway-url`) link every alert to a runbook section that the
gateway's `/ui/runbooks` has, and to its status page, both answering over real HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

import httpx
import pytest
import yaml

from gateway.cli import main
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("links")
    with run_gateway(
        tmp, config="observers:\n  enabled: false\n", env={"GATEWAY_NAMESPACE": "acme"}, grpc=False
    ) as gw:
        yield gw


def _alerts(out: Path) -> list[dict[str, Any]]:
    alerts = []
    for path in sorted((out / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts += [r for r in group["rules"] if "alert" in r]
    return alerts


def test_rendered_links_open_on_the_gateway(gateway: GatewayProcess, tmp_path: Path) -> None:
    out = tmp_path / "acme"
    argv = ["render", "--namespace", "acme", "--gateway-url", gateway.url, "--out", str(out)]
    assert main(argv) == 0
    page = httpx.get(gateway.url + "/ui/runbooks")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    anchors = set(re.findall(r'id="([^"]+)"', page.text))
    alerts = _alerts(out)
    assert len(alerts) > 20
    opened: set[str] = set()
    for rule in alerts:
        runbook, fragment = urldefrag(rule["annotations"]["runbook_url"])
        assert runbook == gateway.url + "/ui/runbooks"
        assert fragment in anchors, f"{rule['alert']}: /ui/runbooks has no #{fragment}"
        dashboard = rule["annotations"]["dashboard_url"]
        assert dashboard.startswith(gateway.url + "/ui/?viewPanel=")
        if dashboard not in opened:
            answer = httpx.get(dashboard)
            assert answer.status_code == 200 and "<html" in answer.text.lower(), dashboard
            opened.add(dashboard)


def test_the_runbooks_speak_the_gateways_namespace(gateway: GatewayProcess) -> None:
    page = httpx.get(gateway.url + "/ui/runbooks").text
    assert "acme_" in page
    assert "coderunner" not in page.lower()
    assert 'id="before-you-start"' in page  # GitHub's anchors for prose headings too
