"""The helpers every test shares: one fake clock, one sink, push and scrape (in-process and over
HTTP), `eventually`. Use these instead of a local copy (seven fake clocks and three
`eventually`s had grown apart before this module)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import httpx

from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore
from gateway.pipeline.batch import MetricsBatch
from tests.support.otlp import Req
from tests.support.promtext import Samples, parse

__all__ = ["FakeClock", "Sink", "eventually", "post", "push", "scrape", "scrape_url"]

T = TypeVar("T")
PROTOBUF = {"Content-Type": "application/x-protobuf"}


class FakeClock:
    """A monotonic clock (seconds) that moves only when the test says so: pass it where a
    component takes `clock=`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sink:
    """A pipeline `Consumer` that keeps every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[MetricsBatch] = []

    def consume(self, batch: MetricsBatch) -> None:
        self.batches.append(batch)


class _Consumer(Protocol):
    def consume(self, batch: MetricsBatch) -> None: ...


def push(consumer: _Consumer, req: Req) -> MetricsBatch:
    """Hands `req` to `consumer` (a store, a processor, a pipeline) as one batch."""
    batch = MetricsBatch(req.request)
    consumer.consume(batch)
    return batch


def scrape(store: SeriesStore) -> Samples:
    """What the store's /metrics would show, parsed."""
    return parse(render(store).decode())


def post(otlp_url: str, req: Req) -> httpx.Response:
    """POSTs `req` as OTLP/HTTP protobuf; fails unless the gateway answers 200."""
    r = httpx.post(otlp_url, content=req.bytes(), headers=PROTOBUF)
    assert r.status_code == 200, r.content
    return r


def scrape_url(url: str) -> Samples:
    """GETs a Prometheus exposition (`http://.../metrics`) and parses it."""
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    return parse(r.text)


def eventually(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Calls `check` until it returns something true, and returns that; fails after
    `timeout` seconds with the last value in the message."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: last {result!r}")
        time.sleep(interval)
