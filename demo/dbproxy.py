"""`DatabaseProxy`: a TCP relay between the demo service and PostgreSQL that the db-outage
scenario cuts, so the service sees a real outage (connections reset, new ones refused) without
touching the database server, which other programs may share.

A relay rather than stopping PostgreSQL or firewalling: neither is ours to do on a shared
machine, and a relay in our own process goes away with the demo.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["DatabaseProxy"]

_CHUNK = 65536


class DatabaseProxy:
    """Listens on 127.0.0.1 (a free port) and relays to `target`; `cut()` resets every open
    connection and refuses new ones until `restore()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut_off = False
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    def restore(self) -> None:
        self.cut_off = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(writer)
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                _pump(reader, up_writer), _pump(up_reader, writer), return_exceptions=True
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset: the peer sees the connection fail, not a clean end."""
    transport = writer.transport
    with contextlib.suppress(OSError, RuntimeError):
        transport.abort()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            sink.close()
