"""Read tokens (issue 17, finding 15): with `auth.read_tokens_file` set, every HTTP route but
ingest and the probes needs a token; a real Prometheus scrapes with `credentials_file`, a real
Chromium opens the status page with the token as its Basic password, and the ingest and read
tokens do not stand in for each other."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_client import PB
from tests.support.otlp import Req
from tests.support.prometheus import query, values
from tests.support.promtext import parse
from tests.support.servers import REPO, GatewayProcess, free_port, run_gateway, run_prometheus

pytestmark = pytest.mark.integration

READ = "read-3f1c9a"
INGEST = "ingest-c41d0e"
GUARDED = (
    "/metrics",
    "/api/metrics",
    "/metrics/self",
    "/api/metrics/current",
    "/api/status/pipeline",
    "/api/status/cardinality",
    "/ui/",
    "/ui/runbooks",
    "/openapi.json",
    "/no/such/route",
)
OPEN = ("/live", "/ready", "/health", "/api/health")


def basic(password: str, user: str = "anyone") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("read-auth")
    (tmp / "read-token").write_text(f"# rotated monthly\n{READ}\n\n")
    config = (
        f"auth: {{enabled: true, tokens: {{team-a: {INGEST}}}, "
        f"read_tokens_file: '{tmp / 'read-token'}'}}\n"
        f"forwarder: {{endpoint: 'http://127.0.0.1:{free_port()}'}}\n"
        "observers: {enabled: true, interval_seconds: 0.5, min_interval_seconds: 0.5}\n"
    )
    with run_gateway(tmp, config=config, grpc=False) as gw:
        now = int(time.time())
        body = Req(service="billing").sum("invoices", [({"plan": "pro"}, 7, now - 5, now)])
        r = httpx.post(
            gw.otlp_http, content=body.bytes(), headers={**PB, "Authorization": f"Bearer {INGEST}"}
        )
        assert r.status_code == 200, r.text
        yield gw


@pytest.mark.parametrize("path", GUARDED)
def test_reads_without_a_token_are_refused_with_both_challenges(
    gateway: GatewayProcess, path: str
) -> None:
    for auth in (None, "Bearer wrong", f"Bearer {INGEST}", basic("wrong"), "Basic !!!", READ):
        headers = {"Authorization": auth} if auth else {}
        r = httpx.get(gateway.url + path, headers=headers)
        assert r.status_code == 401, (path, auth, r.status_code)
        assert r.json() == {"detail": "missing or invalid read token"}
        challenges = r.headers.get_list("www-authenticate")
        assert [c.split()[0] for c in challenges] == ["Bearer", "Basic"], challenges


@pytest.mark.parametrize(
    "auth", [f"Bearer {READ}", f"bearer  {READ}", basic(READ), basic(READ, "")]
)
def test_the_read_token_opens_metrics_as_bearer_or_basic(
    gateway: GatewayProcess, auth: str
) -> None:
    r = httpx.get(gateway.url + "/metrics", headers={"Authorization": auth})
    assert r.status_code == 200
    assert parse(r.text).value("invoices_total", job="billing", plan="pro") == 7
    assert httpx.get(gateway.url + "/ui/", headers={"Authorization": auth}).status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_probes_and_health_stay_open(gateway: GatewayProcess, path: str) -> None:
    r = httpx.get(gateway.url + path)
    assert r.status_code in (200, 503), (path, r.status_code)
    # load balancers probe with HEAD: open too, same status, no body
    head = httpx.head(gateway.url + path)
    assert head.status_code == r.status_code, (path, head.status_code)
    assert head.content == b""


def test_only_reads_are_guarded(gateway: GatewayProcess) -> None:
    # A service exporting traces to the gateway gets the gateway's 404, not a 401 that
    # would send its operator after tokens.
    r = httpx.post(gateway.url + "/v1/traces", content=b"", headers=PB)
    assert r.status_code in (404, 405)
    assert httpx.head(gateway.url + "/metrics").status_code == 401


def test_the_read_token_does_not_open_ingest(gateway: GatewayProcess) -> None:
    body = Req(service="billing").sum("invoices", [({"plan": "free"}, 1, 1, 2)]).bytes()
    r = httpx.post(
        gateway.otlp_http, content=body, headers={**PB, "Authorization": f"Bearer {READ}"}
    )
    assert r.status_code == 401
    scraped = httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {READ}"})
    assert parse(scraped.text).all("invoices_total", plan="free") == []


def test_prometheus_scrapes_with_its_credentials_file(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(READ + "\n")
    target = gateway.url.removeprefix("http://")
    config = f"""\
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: with-token
    honor_labels: true
    authorization: {{credentials_file: '{tmp_path / "token"}'}}
    static_configs: [{{targets: ['{target}']}}]
  - job_name: without-token
    honor_labels: true
    static_configs: [{{targets: ['{target}']}}]
"""
    with run_prometheus(tmp_path, config) as prom:
        deadline = time.monotonic() + 30
        results: dict[str, float] = {}
        while time.monotonic() < deadline:
            results = {s["metric"]["job"]: float(s["value"][1]) for s in query(prom.url, "up")}
            if len(results) == 2:
                break
            time.sleep(0.5)
        assert results == {"with-token": 1.0, "without-token": 0.0}
        assert values(prom.url, "invoices_total") == [7.0]


def test_check_config_reports_a_missing_read_token_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"auth: {{read_tokens_file: '{tmp_path / 'absent'}'}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert out.returncode != 0
    assert "auth.read_tokens_file" in out.stdout + out.stderr
    assert "absent" in out.stdout + out.stderr


def test_the_status_page_opens_in_chromium_with_the_token_as_password(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        try:
            # Without the token (or with a wrong one) the browser gets no page: Chromium either
            # shows the 401 or gives up on the challenge (Playwright says which, by version).
            for credentials in (None, {"username": "me", "password": "wrong"}):
                refused = browser.new_context(http_credentials=credentials)
                try:
                    response = refused.new_page().goto(gateway.url + "/ui/")
                    status = response.status if response is not None else 0
                except sync_api.Error as exc:
                    assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
                    status = 401
                assert status == 401, credentials
                refused.close()
            context = browser.new_context(http_credentials={"username": "me", "password": READ})
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(gateway.url + "/ui/")
            # data-ready: every section's JSON answered (fetched with the same credentials).
            page.wait_for_selector("body[data-ready=true]", timeout=20_000)
            assert errors == []
            rows = page.locator("#card-metrics tbody tr")
            # The cardinality table drawn from /api/status/cardinality: the JSON came through.
            assert rows.count() > 0
            context.close()
        finally:
            browser.close()
