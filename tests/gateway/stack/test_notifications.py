"""The local stack's notifications: its Alertmanager, on the config `stack up` generates from
alertmanager/alertmanager.yml, delivers every notification (the dead man's switch's, a page, a
warning) to the stack's own receiver, which writes them where a person or a test can read
them; no secret file is needed and no notification fails."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.stack.notifications import write_alertmanager_config
from tests.alertmanager.amconfig import alerts_from_rules, load
from tests.support.servers import REPO, free_port, run_alertmanager, wait_http

pytestmark = pytest.mark.integration

_RULES = {rule["alert"]: rule for rule in alerts_from_rules()}


def _alert(name: str, **labels: str) -> dict[str, Any]:
    rule = _RULES[name]
    return {"labels": {"alertname": name, **rule["labels"], **labels}}


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The stack's receiver as `stack up` runs it: (its URL, the file it writes)."""
    port, out = free_port(), tmp_path / "notifications" / "notifications.jsonl"
    argv = [sys.executable, "-m", "gateway.stack.receiver", "--port", str(port)]
    proc = subprocess.Popen([*argv, "--out", str(out)], cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/-/healthy", proc=proc)
        yield url, out
    finally:
        proc.terminate()
        proc.wait(10)


def _received(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def _failed_notifications(alertmanager: str) -> dict[str, float]:
    text = httpx.get(f"{alertmanager}/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        if line.startswith("alertmanager_notifications_failed_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


def test_every_receiver_reaches_the_local_receiver(tmp_path: Path, sink: tuple[str, Path]) -> None:
    url, out = sink
    path = write_alertmanager_config(REPO, tmp_path / "stack", url)
    config = yaml.safe_load(path.read_text())
    # Routes and inhibit rules are production's; only the receivers differ, by name the same.
    production = load()
    assert config["route"] == production["route"]
    assert config["inhibit_rules"] == production["inhibit_rules"]
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in production["receivers"]]
    assert "_file" not in path.read_text(), "the local stack must need no secret file"
    # Only the timers are shortened for the test (30 s group_wait otherwise).
    for route in [config["route"], *config["route"]["routes"]]:
        route.update(group_wait="0s", group_interval="1s")
    with run_alertmanager(tmp_path, yaml.safe_dump(config)) as am:
        alerts = [
            _alert("Watchdog"),
            _alert("CpuUsageCritical", job="node", instance="h1"),
            _alert("TargetDown", job="redis", instance="r1:9121"),
        ]
        httpx.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = {n["receiver_path"]: n["body"] for n in _received(out)}
            if len(got) == 3:
                break
            time.sleep(0.2)
        failed = _failed_notifications(am.url)
    assert set(got) == {"/deadmans-switch", "/page-slack", "/team-slack"}, got
    for receiver_path, body in got.items():
        assert body["receiver"] == receiver_path.lstrip("/")
        assert body["status"] == "firing"
    assert got["/deadmans-switch"]["alerts"][0]["labels"]["alertname"] == "Watchdog"
    assert got["/page-slack"]["alerts"][0]["labels"]["alertname"] == "CpuUsageCritical"
    assert failed and all(v == 0 for v in failed.values()), failed


def test_the_receiver_refuses_what_is_not_a_notification(sink: tuple[str, Path]) -> None:
    url, out = sink
    bad = httpx.post(f"{url}/team-slack", content=b"{not json", timeout=5)
    assert bad.status_code == 400
    # A declared body over the limit is refused before it is read.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"POST /team-slack HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n{}")
        huge = conn.recv(200).decode()
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"POST /team-slack HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        negative = conn.recv(200).decode()
    assert negative.startswith("HTTP/1.0 400"), negative
    assert huge.startswith("HTTP/1.0 413"), huge
    assert _received(out) == []
    ok = httpx.post(f"{url}/team-slack", json={"receiver": "team-slack"}, timeout=5)
    assert ok.status_code == 200
    assert _received(out) == [{"receiver_path": "/team-slack", "body": {"receiver": "team-slack"}}]
