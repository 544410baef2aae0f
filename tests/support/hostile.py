"""Helpers for attack tests: a `/live` probe that runs while an attack does, and the RSS of a
gateway process."""

from __future__ import annotations

import threading
import time

import httpx
import psutil

from tests.support.servers import GatewayProcess

__all__ = ["LiveProbe", "rss"]


def rss(gw: GatewayProcess) -> int:
    """Resident bytes of the gateway process now."""
    return int(psutil.Process(gw.proc.pid).memory_info().rss)


class LiveProbe:
    """Polls `/live` in a thread; `worst` is the slowest answer (or the timeout) seen."""

    def __init__(self, gw: GatewayProcess) -> None:
        self._url = gw.url + "/live"
        self._stop = threading.Event()
        self.worst = 0.0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get(self._url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                took = time.monotonic() - started
                self.worst = max(self.worst, took)
                self.failures += not ok
                self._stop.wait(0.05)

    def __enter__(self) -> LiveProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
