"""`guarded_protocol`: uvicorn's httptools protocol with limits on what a connection may send
before its request headers are complete.

uvicorn bounds none of it with httptools: one connection could stream 100 MiB of headers
(1.3 GB of memory, before authentication), a 200 MiB URL, or open a socket and send nothing,
holding a file descriptor forever; about a thousand such sockets exhausted the process's
descriptors and every listener stopped answering. uvicorn has no settings for these, and
switching to its h11 protocol (which has a header size limit, but no header timeout) would cost
the body throughput of httptools, so this subclass adds them:

- `max_header_bytes`: bytes received while the request line and headers are incomplete; past
  it the answer is 431 and the connection closes. Memory per connection stays within the limit
  plus one read (at most 256 KiB).
- `max_header_count`: header lines per request; past it 431, and no more are kept.
- `header_read_timeout_seconds`: from the connection's start, or from the first byte of a
  following request, the headers must be complete within this time; else 408 and close.
  (Idle keep-alive connections are closed by uvicorn's own keep-alive timeout.)
- `max_connections`: HTTP connections open at once; a new one beyond it is closed at once,
  so that descriptors remain for the other listener, the disk queue and /proc.

Each refusal is counted by reason (`gateway.connections.refused`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GuardCounters", "HeaderLimits", "guarded_protocol"]


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    max_header_bytes: int
    max_header_count: int
    header_read_timeout_seconds: float
    max_connections: int


@dataclass(slots=True)
class GuardCounters:
    refused: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


_REASONS = {
    431: b"Request Header Fields Too Large",
    408: b"Request Timeout",
    503: b"Service Unavailable",
}


class _Refused(Exception):
    """Raised from a parser callback: httptools turns it into a parser error, and uvicorn into
    a call of `send_400_response`, which answers with the refusal instead."""


def guarded_protocol(limits: HeaderLimits, counters: GuardCounters) -> type[HttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` that enforces `limits`."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _refusal: tuple[int, str, str] | None = None
        _awaiting_headers = True
        _header_bytes = 0
        _header_count = 0
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if limits.max_connections and len(self.connections) > limits.max_connections:
                counters.count("connection_limit")
                self._refusal = (503, "connection_limit", "too many connections\n")
                self.send_400_response("")
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is None and limits.header_read_timeout_seconds:
                self._header_timer = self.loop.call_later(
                    limits.header_read_timeout_seconds, self._headers_timed_out
                )

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if self._awaiting_headers and not self.transport.is_closing():
                counters.count("header_timeout")
                self._refusal = (408, "header_timeout", "request headers not received in time\n")
                self.send_400_response("")

        def data_received(self, data: bytes) -> None:
            if self._awaiting_headers:
                self._header_bytes += len(data)
                self._arm()
            super().data_received(data)
            if (
                self._awaiting_headers
                and limits.max_header_bytes
                and self._header_bytes > limits.max_header_bytes
                and not self.transport.is_closing()
            ):
                counters.count("header_too_large")
                self._refusal = (
                    431,
                    "header_too_large",
                    f"request line and headers exceed {limits.max_header_bytes} bytes "
                    "(limits.max_header_bytes)\n",
                )
                self.send_400_response("")

        def on_message_begin(self) -> None:
            self._header_count = 0
            super().on_message_begin()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            if limits.max_header_count and self._header_count > limits.max_header_count:
                counters.count("too_many_headers")
                self._refusal = (
                    431,
                    "too_many_headers",
                    f"more than {limits.max_header_count} header lines (limits.max_header_count)\n",
                )
                raise _Refused
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            self._disarm()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # The next bytes on this connection start another request's headers.
            self._awaiting_headers = True
            self._header_bytes = 0

        def send_400_response(self, msg: str) -> None:
            refusal = self._refusal
            if refusal is None:
                super().send_400_response(msg)
                return
            status, _, text = refusal
            body = text.encode()
            head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
            self.transport.write(
                head
                + b"content-type: text/plain; charset=utf-8\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
            self.transport.close()

    return GuardedHttpToolsProtocol
