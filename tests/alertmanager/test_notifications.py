"""The real receivers of alertmanager/alertmanager.yml (Slack, PagerDuty, email, with the repo's
templates and secrets read from files) deliver what the on-call person needs: the summary, the
description, the runbook and dashboard links. A real Alertmanager sends to servers run here on
127.0.0.1 (a Slack/PagerDuty stand-in over HTTP and a minimal SMTP server); only their
addresses, the secret files' paths and the group timers are changed for the test."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from email import message_from_string
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alertmanager.amconfig import with_local_endpoints
from tests.support.servers import run_alertmanager

pytestmark = pytest.mark.integration

RUNBOOKS = "https://github.com/coderunner/telemetry-gateway/blob/main/docs/runbooks.md"
DASHBOARD = "http://localhost:3001/d/coderunner-overview/coderunner-overview"


class _HttpSink:
    """Records JSON POSTs by path: Slack's incoming webhook and PagerDuty's Events API v2 are
    both one JSON POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.posts.append((self.path, json.loads(body)))
                self.send_response(202 if self.path == "/pagerduty" else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"success","message":"Event processed"}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in list(self.posts) if p == path]


class _SmtpSink(socketserver.ThreadingTCPServer):
    """Just enough SMTP (RFC 5321) to accept a message. Python 3.11's smtpd is deprecated (and
    gone in 3.12) and aiosmtpd is not a dependency, so the few commands are answered here."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.messages: list[Message] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 localhost test SMTP")
                while line := self.rfile.readline():
                    verb = line.decode(errors="replace").strip().split(" ")[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 localhost")
                    elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        data = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(chunk.decode(errors="replace"))
                        sink.messages.append(message_from_string("".join(data)))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 not implemented")

        super().__init__(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def sinks() -> Iterator[tuple[_HttpSink, _SmtpSink]]:
    http, smtp = _HttpSink(), _SmtpSink()
    threads = [
        threading.Thread(target=server.serve_forever, daemon=True) for server in (http.server, smtp)
    ]
    for thread in threads:
        thread.start()
    try:
        yield http, smtp
    finally:
        for server in (http.server, smtp):
            server.shutdown()
            server.server_close()


def _alert(name: str, severity: str, group: str, instance: str, summary: str) -> dict[str, Any]:
    anchor = name.lower()
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "alert_group": group,
            "job": "api",
            "instance": instance,
        },
        "annotations": {
            "summary": summary,
            "description": f"{name} description on {instance}.",
            "runbook_url": f"{RUNBOOKS}#{anchor}",
            "dashboard_url": f"{DASHBOARD}?viewPanel=1",
        },
        "generatorURL": "http://prometheus.example:9090/graph",
    }


def _wait(what: str, done: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_real_receivers_deliver_summary_description_and_links(
    tmp_path: Path, sinks: tuple[_HttpSink, _SmtpSink]
) -> None:
    http, smtp = sinks
    secrets = {
        "slack_webhook_url": tmp_path / "slack_webhook_url",
        "pagerduty_routing_key": tmp_path / "pagerduty_routing_key",
        "smtp_password": tmp_path / "smtp_password",
    }
    secrets["slack_webhook_url"].write_text(f"{http.base}/slack\n")
    secrets["pagerduty_routing_key"].write_text("R0UT1NGKEY0000000000000000000000\n")
    secrets["smtp_password"].write_text("not-used-without-AUTH\n")
    config = with_local_endpoints(http_base=http.base, smtp=smtp.address, secrets=secrets)

    with run_alertmanager(tmp_path, config) as am:
        alerts = [
            _alert("CpuUsageCritical", "critical", "cpu", "h1", "CPU usage above 95% on h1"),
            _alert("MemoryUsageCritical", "critical", "memory", "h1", "Memory above 95% on h1"),
            _alert("CpuUsageWarning", "warning", "cpu", "h2", "CPU usage above 80% on h2"),
        ]
        httpx.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
        _wait(
            "Slack x2, PagerDuty x2, email x1",
            lambda: (
                len(http.bodies("/slack")) >= 2
                and len(http.bodies("/pagerduty")) >= 2
                and len(smtp.messages) >= 1
            ),
        )
        time.sleep(1)  # nothing else should follow (the routes send each alert once)

    # Slack: the critical to the incidents channel, the warning to the team channel.
    slack = {body["channel"]: body for body in http.bodies("/slack")}
    assert set(slack) == {"#coderunner-incidents", "#coderunner-team"}
    incident = slack["#coderunner-incidents"]["attachments"][0]
    assert incident["title"] == "[FIRING:1] CpuUsageCritical (api): CPU usage above 95% on h1"
    assert incident["title_link"] == f"{DASHBOARD}?viewPanel=1"
    assert incident["color"] == "danger"
    assert "*CRITICAL* CpuUsageCritical description on h1." in incident["text"]
    assert f"<{RUNBOOKS}#cpuusagecritical|Runbook>" in incident["text"]
    assert f"<{DASHBOARD}?viewPanel=1|Dashboard>" in incident["text"]
    team = slack["#coderunner-team"]["attachments"][0]
    assert team["title"].startswith("[FIRING:1] CpuUsageWarning (api)")
    assert team["color"] == "warning"

    # PagerDuty: both criticals (CPU and memory), with the routing key from its file.
    pages = {
        body["payload"]["custom_details"]["summary"]: body for body in http.bodies("/pagerduty")
    }
    assert set(pages) == {"CPU usage above 95% on h1", "Memory above 95% on h1"}
    page = pages["Memory above 95% on h1"]
    assert page["routing_key"] == "R0UT1NGKEY0000000000000000000000"
    assert page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["summary"].startswith("[FIRING:1] MemoryUsageCritical (api)")
    assert page["payload"]["custom_details"]["runbook_url"] == f"{RUNBOOKS}#memoryusagecritical"
    assert {link["text"]: link["href"] for link in page["links"]} == {
        "Runbook": f"{RUNBOOKS}#memoryusagecritical",
        "Dashboard": f"{DASHBOARD}?viewPanel=1",
    }

    # Email: only the memory critical, to the on-call list.
    (mail,) = smtp.messages
    assert mail["To"] == "oncall@coderunner.example.com"
    assert mail["Subject"].startswith("[FIRING:1] MemoryUsageCritical (api)")
    html = "".join(
        part.get_payload(decode=True).decode()
        for part in mail.walk()
        if part.get_content_type() == "text/html"
    )
    assert "MemoryUsageCritical description on h1." in html
    assert f'<a href="{RUNBOOKS}#memoryusagecritical">Runbook</a>' in html
