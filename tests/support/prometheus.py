"""Reading a real Prometheus the way a dashboard does: instant queries over its HTTP API."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["query", "query_response", "scalar", "scrape_config", "values"]


def scrape_config(http_port: int, job: str = "gateway") -> str:
    """A Prometheus config that scrapes one gateway on 127.0.0.1 every second, keeping the
    `job` and `instance` the gateway writes (`honor_labels`, as the repo's config does)."""
    return f"""\
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: {job}
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:{http_port}"]
"""


def query_response(prometheus: str, expr: str, timeout: float = 10.0) -> dict[str, Any]:
    """The whole `/api/v1/query` answer, errors included (`status`, `error`, `data`)."""
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=timeout)
    body: dict[str, Any] = r.json()
    return body


def query(prometheus: str, expr: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The result vector of an instant query; a query Prometheus refuses fails the test."""
    body = query_response(prometheus, expr, timeout)
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def values(prometheus: str, expr: str) -> list[float]:
    """The sample values of an instant query, in Prometheus's order."""
    return [float(sample["value"][1]) for sample in query(prometheus, expr)]


def scalar(prometheus: str, expr: str) -> float:
    """The first sample's value, NaN when the query returns nothing (yet)."""
    found = values(prometheus, expr)
    return found[0] if found else float("nan")
