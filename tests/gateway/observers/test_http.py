from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from gateway.catalogue import by_name
from gateway.observers.http import PATH, metrics_current_router
from gateway.observers.system import SystemObserver
from tests.support.observers import NOW, Collect, FakeClock, FakeSampler, cpu_after
from tests.support.servers import free_port, wait_http

pytestmark = pytest.mark.integration  # starts a server or a subprocess

Setup = tuple[SystemObserver, FakeSampler, FakeClock, httpx.Client]


@pytest.fixture
def setup() -> Iterator[Setup]:
    """The router in a real uvicorn server on a free port; the observer runs on fakes and is
    driven by the test (`collect()`), the server only reads its history."""
    sampler, clock = FakeSampler(), FakeClock()
    observer = SystemObserver(Collect(), sampler=sampler, clock=clock)
    app = FastAPI()
    app.include_router(metrics_current_router(observer.history, history_minutes=2))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/nothing-here", expect=404)
        with httpx.Client(base_url=base, timeout=5) as client:
            yield observer, sampler, clock, client
    finally:
        server.should_exit = True
        thread.join(10)


def test_before_the_first_cycle_it_says_why(setup: Setup) -> None:
    _, _, _, client = setup
    r = client.get(PATH)
    assert r.status_code == 503
    assert "no system reading yet" in r.json()["detail"]
    assert r.headers["retry-after"] == "1"


def test_latest_values_summary_and_history(setup: Setup) -> None:
    observer, sampler, clock, client = setup
    for i in range(20):  # 20 cycles, 10 s apart: 190 s in all, more than the 2 minutes kept
        sampler.cpu = [cpu_after(c, user=10 + i, idle=90 - i) for c in sampler.cpu]
        observer.collect()
        clock.advance(10)
    clock.advance(-10)
    body = client.get(PATH).json()

    assert body["timestamp"] == pytest.approx(NOW + 190)
    assert datetime.fromisoformat(body["time"]).timestamp() == pytest.approx(NOW + 190)
    assert body["summary"]["load_1m"] == 0.5
    assert body["summary"]["memory_utilization"] == 0.25
    assert body["summary"]["cpu_usage_percent"] == pytest.approx(29.0)  # (10 + 19) of 100 ticks
    assert body["observer"]["interval_seconds"] == 10.0
    assert body["observer"]["cycle_cpu_seconds"] == pytest.approx(0.0004)

    load = body["metrics"][by_name("system.load_average").prometheus_name()]
    assert load["type"] == "gauge"
    assert {p["labels"]["period"]: p["value"] for p in load["points"]} == {
        "1m": 0.5,
        "5m": 0.4,
        "15m": 0.3,
    }
    cpu = body["metrics"][by_name("system.cpu.time").prometheus_name()]
    assert cpu["type"] == "counter" and cpu["unit"] == "s"
    assert len(cpu["points"]) == 16

    history = body["history"]
    assert history["minutes"] == 2
    stamps = [p["timestamp"] for p in history["points"]]
    assert stamps == pytest.approx([NOW + 70 + 10 * i for i in range(13)])  # the last 120 s
    assert history["points"][-1]["cpu_usage_percent"] == pytest.approx(29.0)


def test_minutes_narrows_the_history_and_bad_values_get_422(setup: Setup) -> None:
    observer, _, clock, client = setup
    for _ in range(10):
        observer.collect()
        clock.advance(10)
    # the newest point and the three before it, at -10, -20 and -30 s
    assert len(client.get(PATH, params={"minutes": 0.5}).json()["history"]["points"]) == 4
    for bad in ("0", "-1", "abc", "100000"):
        r = client.get(PATH, params={"minutes": bad})
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["loc"] == ["query", "minutes"]
