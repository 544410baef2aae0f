"""Stand-ins for the receivers' servers on 127.0.0.1: Slack and PagerDuty (one JSON POST
each) and a minimal SMTP server, for tests that run the repository's real receivers."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_string
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HttpSink", "SmtpSink", "running"]


class HttpSink:
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


class SmtpSink(socketserver.ThreadingTCPServer):
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


@contextmanager
def running() -> Iterator[tuple[HttpSink, SmtpSink]]:
    http, smtp = HttpSink(), SmtpSink()
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
