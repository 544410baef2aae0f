"""`GATEWAY_NAMESPACE=acme` gives an `acme_*` world on /metrics: every catalogue metric of every
layer (system and process from the observers, application and business from a real service's
OpenTelemetry SDK, health and breakers, the gateway's own), and no `coderunner` anywhere, not
in a name, a HELP text or a label.

The service names its business metrics under the default namespace (`coderunner.deployments`,
as the demo does) and knows nothing of `acme`: the gateway's default views move catalogue names
into its namespace, as they rename the HTTP semantic conventions. Events that only trouble
produces (an overflowing metric, a cut label value, a refused point, request and connection,
an upstream that is down) are caused on purpose, so that their counters exist too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from demo.meters import Meters
from gateway.catalogue import CATALOGUE, Kind, Metric
from instrumentation import InstrumentationSettings, instrument_app, setup
from instrumentation import _asyncpg as asyncpg_metrics
from tests.support.promtext import parse
from tests.support.servers import free_port, run_gateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _config(tmp: Path) -> str:
    down = free_port()  # nothing listens: the upstream is down, the breaker opens
    return f"""\
forwarder:
  endpoint: http://127.0.0.1:{down}
  initial_backoff_seconds: 0.1
  max_backoff_seconds: 0.2
  max_elapsed_seconds: 0.5
  timeout_seconds: 1
health:
  upstream:
    interval_seconds: 1
    # any waiting batch fails the check, and one failure opens the breaker
    queue_warn_ratio: 0.0001
    queue_fail_ratio: 0.0002
    breaker: {{failure_threshold: 1, cooldown_seconds: 60}}
cardinality:
  max_series_per_stream: 3
  max_label_value_length: 20
limits:
  max_attribute_value_length: 200
  max_header_count: 20
observers:
  interval_seconds: 1
  min_interval_seconds: 1
  adaptive: false
"""


def _service_traffic(endpoint: str) -> None:
    handle = setup(
        InstrumentationSettings(
            service_name="billing",
            service_namespace="acme",
            endpoint=endpoint,
            export_interval_s=3600,
            set_global=False,
        )
    )
    try:
        app = FastAPI()

        @app.get("/invoices/{number}")
        async def invoice(number: int) -> dict[str, int]:
            return {"number": number}

        instrument_app(app, handle)

        async def requests_and_queries() -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                await client.get("/invoices/1")
            conn = await asyncpg.connect(DSN)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close()

        asyncio.run(requests_and_queries())
        m = Meters(handle.meter_provider.get_meter("billing"))  # the default namespace
        m.deployment(status="success", type="python", duration_s=3.0)
        m.websocket_accepted()
        m.error(type="Timeout", service="billing", severity="warning")
        m.user_activity(action="pay", plan_type="team")
        m.feature_used(feature="invoices", user_type="paid")
        m.resource_cost(resource_type="compute", plan="team", amount_usd=0.5)
        m.observe_plan_distribution(lambda: {"team": 2})
        trouble = handle.meter_provider.get_meter("trouble").create_counter("billing.jobs")
        for n in range(6):  # more series than the stream may hold: overflow
            trouble.add(1, {"queue": f"q{n}"})
        trouble.add(1, {"queue": "x" * 50})  # longer than max_label_value_length: cut
        trouble.add(1, {"queue": "y" * 300})  # longer than the input limit: refused
        assert handle.force_flush()
    finally:
        handle.shutdown()
        asyncpg_metrics.unbind(handle.meter_provider)


def _families(metric: Metric, namespace: str) -> set[str]:
    base = metric.prometheus_name(namespace)
    if metric.kind is Kind.HISTOGRAM:
        return {base + "_bucket", base + "_count", base + "_sum"}
    return {base}


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("namespace")
    with run_gateway(tmp, config=_config(tmp), env={"GATEWAY_NAMESPACE": "acme"}) as gw:
        _service_traffic(gw.url)
        garbage = httpx.post(
            gw.url + "/v1/metrics",
            content=b"not protobuf",
            headers={"content-type": "application/x-protobuf"},
        )
        assert garbage.status_code == 400
        too_many = {f"x-extra-{n}": "1" for n in range(30)}
        assert httpx.get(gw.url + "/live", headers=too_many).status_code == 431
        wanted = {name for m in CATALOGUE for name in _families(m, "acme")}

        # Only the second gateway below has these.
        later = {"acme_gateway_forward_queue_corrupt_total", "acme_gateway_config_reloads_total"}

        def complete() -> bool:
            names = parse(httpx.get(gw.url + "/metrics").text).names()
            return wanted - later <= set(names)

        with contextlib.suppress(AssertionError):  # the tests below say what is missing
            eventually(complete)
        text = httpx.get(gw.url + "/metrics").text
    # The disk queue's own counter: a gateway with a disk queue (its capacity is in bytes, so
    # it has no gateway_forward_queue_capacity, which the memory queue above has); and the
    # secret reloader's, which counts only where a config names a file to watch.
    tokens = tmp / "tokens.yaml"
    tokens.write_text("billing: s3cret\n")
    disk = f"queue:\n  kind: disk\n  path: {tmp / 'queue' / 'forward.db'}\n"
    disk += f"forwarder:\n  endpoint: http://127.0.0.1:{free_port()}\n"
    disk += f"auth:\n  enabled: true\n  tokens_file: {tokens}\n"
    with run_gateway(tmp, config=disk, env={"GATEWAY_NAMESPACE": "acme"}, grpc=False) as gw:
        eventually(lambda: all(name in httpx.get(gw.url + "/metrics").text for name in later))
        text += httpx.get(gw.url + "/metrics").text
    yield text


def test_every_catalogue_metric_is_under_the_namespace(exposition: str) -> None:
    names = set(parse(exposition).names())
    missing = {
        m.prometheus_name("acme"): sorted(_families(m, "acme") - names)
        for m in CATALOGUE
        if _families(m, "acme") - names
    }
    assert not missing


def test_nothing_names_the_default_namespace(exposition: str) -> None:
    lines = [line for line in exposition.splitlines() if "coderunner" in line.lower()]
    assert not lines, lines[:10]
    samples = parse(exposition)
    jobs = {labels.get("job") for name in samples.names() for labels, _ in samples.all(name)}
    assert "acme/billing" in jobs


def test_the_trouble_was_counted(exposition: str) -> None:
    """Guards the test: the counters exist because the events happened, with their labels."""
    samples = parse(exposition)

    def total(name: str) -> float:
        return sum(value for _, value in samples.all(name))

    assert total("acme_gateway_points_overflowed_total") > 0
    assert total("acme_gateway_series_truncated_total") > 0
    assert total("acme_gateway_points_rejected_total") > 0
    assert total("acme_gateway_requests_refused_total") >= 1
    assert total("acme_gateway_connections_refused_total") >= 1
    assert total("acme_circuit_breaker_transitions_total") >= 1
