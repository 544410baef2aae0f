"""Push and scrape in-process (a store, a processor, a pipeline) and over HTTP, plus the shared
fake clock, sink and `eventually` re-exported from `fakes` and `waiting` (seven fake clocks and
six `eventually`s had grown apart before these modules)."""

from __future__ import annotations

from typing import Protocol

import httpx

from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore
from gateway.pipeline.batch import MetricsBatch
from tests.support.fakes import FakeClock, ListConsumer
from tests.support.otlp import Req
from tests.support.promtext import Samples, parse
from tests.support.waiting import eventually

__all__ = ["FakeClock", "Sink", "eventually", "post", "push", "scrape", "scrape_url"]

PROTOBUF = {"Content-Type": "application/x-protobuf"}


Sink = ListConsumer


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
