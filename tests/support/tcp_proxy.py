"""`TcpProxy`: a TCP proxy that a test controls, for putting faults between a client and a real
server (PostgreSQL, Redis): cut every connection, add latency, restore.

It runs its own asyncio loop in a daemon thread, so a synchronous test drives it with plain
method calls while the code under test runs anywhere (another thread, another process).

    with TcpProxy("127.0.0.1", 5432) as proxy:
        dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        proxy.cut()              # open connections are reset, new ones closed on accept
        proxy.set_latency(10.0)  # every chunk, both ways, is held this long
        proxy.restore()          # pass-through again; held chunks go out at once

Hand-written because no maintained Python package is a controllable in-process fault proxy
(Toxiproxy is a Go server with its own binary).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["TcpProxy"]

T = TypeVar("T")

_CHUNK = 65536
#: how often a held chunk re-checks whether its latency has passed (or been lifted)
_TICK = 0.01


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, as a cut cable or a killed server looks to the client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        _reset(self.client[1])
        _reset(self.upstream[1])


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self._latency = 0.0
        self._cut = False
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        #: connections accepted, in total and while cut (for assertions)
        self.accepted = 0
        self.refused = 0

    # -- control (from the test's thread) --------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._handle, self.host, 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def cut(self) -> None:
        """Reset every open connection; accept new ones only to reset them."""
        self._run(self._set(cut=True))

    def set_latency(self, seconds: float) -> None:
        """Hold every chunk, in both directions, `seconds` before passing it on."""
        self._run(self._set(latency=seconds))

    def restore(self) -> None:
        """Pass-through: no cut, no latency (chunks held so far go out at once)."""
        self._run(self._set(cut=False, latency=0.0))

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the proxy (on its own loop) -------------------------------------------------------

    async def _set(self, *, cut: bool | None = None, latency: float | None = None) -> None:
        if latency is not None:
            self._latency = latency
        if cut is not None:
            self._cut = cut
            if cut:
                for link in list(self._links):
                    link.abort()
                self._links.clear()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._cut:
            self.refused += 1
            _reset(writer)
            return
        try:
            upstream = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        if self._cut:  # cut while connecting
            _reset(writer)
            _reset(upstream[1])
            return
        link = _Link((reader, writer), upstream)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, upstream[1])),
            asyncio.create_task(self._pump(upstream[0], writer)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        writer.close()
        upstream[1].close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy one direction, holding each chunk until the latency in force has passed since
        it arrived (re-checked every tick, so lifting the latency releases it at once)."""
        held: deque[tuple[float, bytes]] = deque()
        wake = asyncio.Event()
        eof = False

        async def read() -> None:
            nonlocal eof
            try:
                while chunk := await source.read(_CHUNK):
                    held.append((time.monotonic(), chunk))
                    wake.set()
            except (ConnectionError, OSError):
                pass
            finally:
                eof = True
                wake.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                while held:
                    arrived, chunk = held[0]
                    wait = arrived + self._latency - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(min(wait, _TICK))
                        continue
                    held.popleft()
                    sink.write(chunk)
                    await sink.drain()
                if eof:
                    break
                wake.clear()
                await wake.wait()
            with contextlib.suppress(OSError):
                sink.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            reader.cancel()
