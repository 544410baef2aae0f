"""The status page in a real browser: Debian's Chromium, headless, driven by Playwright
(`executable_path`, never `playwright install`), against a real gateway fed with known data
and a cardinality attack. Each section is checked for what it shows, the console stays free
of errors, and screenshots are saved (set `STATUS_PAGE_SCREENSHOT=docs/status-page.png` to
refresh the README's)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_client import PB, push
from tests.support.otlp import Req
from tests.support.sdk_pusher import push_with_sdk
from tests.support.servers import REPO, GatewayProcess, free_port, run_gateway

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CONFIG = """\
observers: {{enabled: true, interval_seconds: 0.5, min_interval_seconds: 0.5, adaptive: false}}
forwarder: {{endpoint: "http://127.0.0.1:{dead}", initial_backoff_seconds: 0.2}}
health:
  details: always
  pipeline: {{enabled: false}}
  system: {{enabled: false}}
  upstream: {{interval_seconds: 0.5}}
cardinality:
  max_series_per_stream: 200
"""
ATTACK_SERIES = 500


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (Debian package chromium)")
    with run_gateway(
        tmp_path_factory.mktemp("page"), config=CONFIG.format(dead=free_port()), grpc=False
    ) as gw:
        now = int(time.time())
        # Steady data: a few services with well-behaved labels.
        for service in ("billing", "search", "auth"):
            push(
                gw,
                Req(service=service).sum(
                    "http.requests",
                    [
                        ({"route": f"/r{i}", "code": "200"}, 10 * i + 1, now - 5, now)
                        for i in range(8)
                    ],
                ),
            )
        push(gw, Req(service="billing").gauge("queue.depth", [({"queue": "q1"}, 17.5, now)]))
        # The attack: `session_id` takes a new value on every point, past the stream limit.
        push(
            gw,
            Req(service="checkout").sum(
                "cart.updates",
                [
                    (
                        {"session_id": f"s-{i:05d}", "region": ("eu", "us", "ap")[i % 3]},
                        1,
                        now - 5,
                        now,
                    )
                    for i in range(ATTACK_SERIES)
                ],
            ),
        )
        push_with_sdk("http", gw.otlp_http, "cumulative", "sdk-svc")
        # One request the gateway refuses, for the pipeline's refusals.
        assert httpx.post(gw.otlp_http, content=b"\xff\xff", headers=PB).status_code == 400
        yield gw


@pytest.fixture(scope="module")
def browser_page(
    gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[object, list[str]]]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    errors: list[str] = []
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.goto(gateway.url + "/ui/")
            page.wait_for_selector("body[data-ready=true]", timeout=20_000)
            yield page, errors
        finally:
            context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def test_cardinality_explorer_puts_the_exploding_label_on_top(
    browser_page: tuple[object, list[str]], shots: Path
) -> None:
    page, _ = browser_page
    first = page.locator("#card-metrics tbody tr").first
    assert first.get_attribute("data-metric") == "cart_updates_total"
    # 200 series and the overflow series; the bar is red because the stream overflowed.
    assert first.locator("td").nth(1).inner_text() == "201"
    assert "300 series" in first.locator("td").nth(3).inner_text()
    assert first.locator(".bar.hot").count() == 1
    labels = page.locator("#card-labels tbody tr")
    assert labels.first.get_attribute("data-label") == "session_id"
    assert labels.first.locator("td").nth(1).inner_text() == "200"
    assert labels.nth(1).get_attribute("data-label") == "region"
    # One click on another metric shows its labels; one click back, the attacker again.
    page.locator('#card-metrics tr[data-metric="http_requests_total"]').click()
    page.wait_for_function(
        "document.getElementById('card-labels-metric').textContent === 'http_requests_total'"
    )
    assert page.locator("#card-labels tbody tr").first.get_attribute("data-label") == "route"
    page.locator('#card-metrics tr[data-metric="cart_updates_total"]').click()
    page.wait_for_function(
        "document.querySelector('#card-labels tbody tr').dataset.label === 'session_id'"
    )
    services = page.locator("#card-services tbody tr").first
    assert services.locator("td").first.inner_text() == "checkout"
    page.locator("#cardinality").screenshot(path=str(shots / "cardinality.png"))


def test_live_tail_shows_the_pushed_values(
    browser_page: tuple[object, list[str]], shots: Path
) -> None:
    page, _ = browser_page
    page.select_option("#tail-metric", "queue_depth")
    page.select_option("#tail-service", "billing")
    page.wait_for_function(
        "[...document.querySelectorAll('#tail-points .tail-value')].map(e => e.textContent)"
        ".join() === '17.500'"
    )
    row = page.locator("#tail-points tbody tr").first
    assert 'queue="q1"' in row.inner_text()
    # What the real OTel SDK sent: app.requests, 15 in all.
    page.select_option("#tail-metric", "app_requests_total")
    page.wait_for_function(
        "document.querySelector('#tail-points .tail-value')?.textContent === '15'"
    )
    page.locator("#tail").screenshot(path=str(shots / "tail.png"))


def test_pipeline_shows_rates_refusals_queue_and_limiter(
    browser_page: tuple[object, list[str]], shots: Path
) -> None:
    page, _ = browser_page
    # The rate needs two polls of the page (two seconds apart).
    page.wait_for_function(
        "document.getElementById('fig-points-rate').textContent !== '\\u2013'", timeout=15_000
    )
    total = page.locator("#fig-points-total").inner_text()
    assert total.endswith("k") or int(total) > ATTACK_SERIES
    assert "http:" in page.locator("#refused").inner_text()
    assert "oldest" in page.locator("#fig-queue").inner_text()
    assert page.locator("#fig-memory .badge").inner_text() == "accepting"
    assert page.locator("#fig-breaker .badge").inner_text() in ("closed", "open", "half_open")
    assert " / " in page.locator("#fig-latency").inner_text()
    page.wait_for_function(
        "Number(document.getElementById('chart-points').dataset.points) >= 1", timeout=15_000
    )
    page.locator("#pipeline").screenshot(path=str(shots / "pipeline.png"))


def test_health_lists_checks_and_breakers(
    browser_page: tuple[object, list[str]], shots: Path
) -> None:
    page, _ = browser_page
    page.wait_for_selector('#health-checks tr[data-check="otlp_upstream"]')
    upstream = page.locator('#health-checks tr[data-check="otlp_upstream"]')
    assert upstream.locator("td").nth(2).locator(".badge").inner_text() in (
        "closed",
        "open",
        "half_open",
    )
    limiter = page.locator('#health-checks tr[data-check="memory_limiter"]')
    assert limiter.locator(".badge").first.inner_text() == "pass"
    assert "MiB" in limiter.inner_text()
    page.locator("#health").screenshot(path=str(shots / "health.png"))


def test_host_charts_have_data(browser_page: tuple[object, list[str]], shots: Path) -> None:
    page, _ = browser_page
    for chart in ("cpu", "memory", "load", "network"):
        page.wait_for_function(
            f"Number(document.getElementById('chart-{chart}').dataset.points) >= 2",
            timeout=20_000,
        )
    # Something was drawn: the CPU canvas has many non-blank pixels.
    inked = page.evaluate(
        """() => { const c = document.getElementById('chart-cpu');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""
    )
    assert inked > 500
    page.locator("#host").screenshot(path=str(shots / "host.png"))


def test_whole_page_without_console_errors(
    browser_page: tuple[object, list[str]], shots: Path
) -> None:
    page, errors = browser_page
    page.locator('#card-metrics tr[data-metric="cart_updates_total"]').click()
    page.evaluate("window.scrollTo(0, 0)")
    time.sleep(2.5)  # one more poll of every section
    target = shots / "status-page.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 20_000
    wanted = os.environ.get("STATUS_PAGE_SCREENSHOT")
    if wanted:
        shutil.copyfile(target, REPO / wanted)
    print(f"screenshots in {shots}")
    # The metric table shows the biggest 15; the rest is one click away.
    assert page.locator('#card-metrics tr[data-metric="queue_depth"]').count() == 0
    page.locator("#card-more").click()
    page.wait_for_selector('#card-metrics tr[data-metric="queue_depth"]')
    assert errors == []
