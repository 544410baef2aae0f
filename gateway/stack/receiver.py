"""The local stack's notification receiver: every Alertmanager webhook notification it gets is
appended as one JSON line to a file (`stack up` runs it as the `notifications` component,
writing `<stack dir>/notifications/notifications.jsonl`):

    {"receiver_path": "/page-slack", "body": {"receiver": "page-slack", "status": "firing", ...}}

    python -m gateway.stack.receiver --port 9095 --out notifications.jsonl

Hand-written on the standard library's HTTP server: an Alertmanager webhook sink is a few lines,
and no maintained package in PyPI or Debian does exactly this. Not imported by the package
(`python -m` runs it without the rest of `gateway.stack`).
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["MAX_BODY_BYTES", "main"]

#: an Alertmanager notification is a few KiB per alert; a larger body is refused (413)
MAX_BODY_BYTES = 4 * 1024 * 1024


class _Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], out: Path) -> None:
        super().__init__(address, _Handler)
        self.out = out
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Sink
    # A client that stops sending mid-body cannot hold a thread for ever.
    timeout = 10

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._answer(400, "a Content-Length is required")
            return
        if length > MAX_BODY_BYTES:
            self._answer(413, "body too large")
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as exc:
            self._answer(400, f"not JSON: {exc}")
            return
        line = json.dumps({"receiver_path": self.path, "body": body}, sort_keys=True)
        with self.server.lock, self.server.out.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        self._answer(200, "ok")

    def do_GET(self) -> None:
        # The stack's health check polls this.
        self._answer(200, "ok" if self.path == "/-/healthy" else "POST notifications here")

    def _answer(self, status: int, text: str) -> None:
        data = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every notification is in the output file; no access log


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.stack.receiver",
        description="The local stack's notification receiver: appends each Alertmanager "
        "webhook notification to a JSON-lines file.",
    )
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.touch()
    with _Sink(("127.0.0.1", args.port), args.out) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
