"""Talking to a running gateway as a client would: push OTLP, scrape the exposition, read a
self-metric."""

from __future__ import annotations

import httpx

from tests.support.otlp import Req
from tests.support.promtext import Samples, parse
from tests.support.servers import GatewayProcess

__all__ = ["PB", "push", "scrape", "self_metric"]

PB = {"Content-Type": "application/x-protobuf"}


def push(gw: GatewayProcess, req: Req) -> None:
    """POSTs `req` as OTLP/HTTP protobuf; anything but 200 fails the test."""
    r = httpx.post(gw.otlp_http, content=req.bytes(), headers=PB)
    assert r.status_code == 200, r.content


def scrape(gw: GatewayProcess, path: str = "/metrics") -> Samples:
    r = httpx.get(gw.url + path, timeout=10)
    assert r.status_code == 200, r.text
    return parse(r.text)


def self_metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    """The sum of the gateway's own series `name` (on /metrics/self) matching `labels`."""
    return sum(v for _, v in scrape(gw, "/metrics/self").all(name, **labels))
