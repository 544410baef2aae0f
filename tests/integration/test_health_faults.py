"""Health probes and circuit breakers against the real PostgreSQL and Redis, through a TCP proxy
the test controls: cut, slow down, restore.

One FastAPI app with the health router, served by uvicorn in a thread, its registry built by
`build_registry` from a `HealthConfig` with short intervals and cooldowns. A list-collecting
consumer keeps every metrics batch the real `PipelineHealthMetrics` builds.
"""

from __future__ import annotations

import contextlib
import gc
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from gateway.health import build_registry, health_router
from gateway.health.config import HealthConfig
from gateway.health.registry import HealthRegistry
from tests.support.fakes import ListConsumer
from tests.support.points import breaker_states, points
from tests.support.servers import free_port, run_gateway, wait_http
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

INTERVAL = 0.25  # seconds between check runs
TIMEOUT = 0.5  # a run slower than this fails
THRESHOLD = 2  # consecutive failures that open a breaker
COOLDOWN = 1.5  # seconds a breaker stays open
# Cut to 503: at most THRESHOLD runs, each starting within an interval and ending within a
# timeout, plus scheduling slack for a busy CI machine.
TRIP_BOUND = THRESHOLD * (INTERVAL + TIMEOUT) + 1.0
PROBE_LIMIT = 0.100  # seconds: no probe may take longer, whatever the dependencies do


def health_config(pg_port: int, redis_port: int) -> HealthConfig:
    breaker = {
        "failure_threshold": THRESHOLD,
        "failure_rate_threshold": None,
        "cooldown_seconds": COOLDOWN,
        "half_open_trials": 1,
    }
    timing = {"interval_seconds": INTERVAL, "timeout_seconds": TIMEOUT}
    return HealthConfig.model_validate(
        {
            "details": "always",
            "service_id": "fault-test",
            "postgres": {
                "dsn": f"postgresql://postgres@127.0.0.1:{pg_port}/test",
                "required": True,
                "breaker": breaker,
                **timing,
            },
            "redis": {
                "url": f"redis://127.0.0.1:{redis_port}/0",
                "required": False,
                # through the proxy a PING is well under this; 10 s latency is far over it
                "latency_warn_ms": 250,
                "breaker": breaker,
                **timing,
            },
            # host load must not decide this test: covered by the unit tests
            "system": {"enabled": False},
        }
    )


@dataclass
class Served:
    url: str
    registry: HealthRegistry
    sink: ListConsumer
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=5.0)

    def get(self, path: str) -> tuple[int, dict[str, object], float]:
        started = time.perf_counter()
        r = self.client.get(path)
        elapsed = time.perf_counter() - started
        return r.status_code, r.json(), elapsed

    def wait_for(self, path: str, code: int, timeout: float) -> float:
        """Poll until `path` answers `code`; the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        last: object = None
        while time.monotonic() < deadline:
            status, body, _ = self.get(path)
            if status == code:
                return time.monotonic() - started
            last = (status, body)
            time.sleep(0.02)
        details = self.get("/api/health")[1]
        raise AssertionError(f"{path} not {code} within {timeout}s: {last}; {details}")


@contextlib.contextmanager
def serve(config: HealthConfig) -> Iterator[Served]:
    sink = ListConsumer()
    registry = build_registry(config, version="test", consumer=sink)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        registry.set_accepting(True)
        yield
        registry.set_accepting(False)
        await registry.shutdown()

    app = FastAPI(lifespan=lifespan)
    app.include_router(health_router(registry, details=config.details, token=config.token))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none", http="h11")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    served = Served(f"http://127.0.0.1:{port}", registry, sink)
    # The server shares this process with pytest and everything it imported; a full collection
    # of all that stalls every thread for ~50 ms, which would be measured as probe latency.
    # Freezing the startup objects, as a long-running server does after startup, keeps such
    # pauses out of the dependency-latency measurement.
    gc.collect()
    gc.freeze()
    try:
        yield served
    finally:
        gc.unfreeze()
        served.client.close()
        server.should_exit = True
        thread.join(10)


class LiveWatcher:
    """Polls /live every 50 ms in the background for the whole test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    code = client.get("/live").status_code
                except httpx.HTTPError:
                    code = 0
                self.samples.append((code, time.perf_counter() - started))
                self._stop.wait(0.05)

    def __enter__(self) -> LiveWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def statuses(sink: ListConsumer, component: str) -> list[float]:
    """health.check.status values for `component`, consecutive repeats folded."""
    out: list[float] = []
    for batch in sink.batches:
        for p in points(batch):
            if (
                p.name == "coderunner.health.check.status"
                and p.attributes["component"] == component
                and (not out or out[-1] != p.value)
            ):
                out.append(p.value)
    return out


def transitions(sink: ListConsumer, component: str) -> dict[tuple[str, str], float]:
    last: dict[tuple[str, str], float] = {}
    for batch in sink.batches:
        for p in points(batch):
            if p.name == "coderunner.circuit_breaker.transitions" and (
                p.attributes["component"] == component
            ):
                assert p.monotonic
                last[(p.attributes["from"], p.attributes["to"])] = p.value
    return last


def check_entry(served: Served, key: str) -> dict[str, object]:
    body = served.get("/api/health")[1]
    checks = body["checks"]
    assert isinstance(checks, dict)
    entry = checks[key][0]
    assert isinstance(entry, dict)
    return entry


def within(seconds: float, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_probes_follow_faults_between_the_app_and_postgres_and_redis() -> None:
    with (
        TcpProxy("127.0.0.1", 5432) as pg,
        TcpProxy("127.0.0.1", 6379) as rd,
        serve(health_config(pg.port, rd.port)) as app,
        LiveWatcher(app.url) as live,
    ):
        # --- healthy start -------------------------------------------------------------
        app.wait_for("/ready", 200, timeout=10)
        code, body, _ = app.get("/health")
        assert (code, body["status"]) == (200, "pass")
        assert check_entry(app, "postgresql:responseTime")["status"] == "pass"

        # --- cut the required database: 503 within the thresholds ----------------------
        pg.cut()
        took = app.wait_for("/ready", 503, timeout=TRIP_BOUND + 2)
        print(f"cut -> /ready 503 in {took:.2f}s (bound {TRIP_BOUND:.2f}s)")
        assert took <= TRIP_BOUND, f"/ready took {took:.2f}s to fail (bound {TRIP_BOUND:.2f}s)"
        opened_at = time.monotonic()
        code, body, _ = app.get("/health")
        assert (code, body["status"]) == (503, "fail")
        entry = check_entry(app, "postgresql:responseTime")
        assert entry["status"] == "fail"
        assert "observedValue" not in entry  # no made-up number while it is down

        # Still cut when the cooldown ends: the half-open trial fails and the breaker reopens.
        within(
            COOLDOWN + 2,
            lambda: (
                breaker_states(app.sink.batches, "postgresql")[-1:] == ["open"]
                and len(breaker_states(app.sink.batches, "postgresql")) >= 4
            ),
        )
        assert app.get("/ready")[0] == 503

        # --- restore: ready again after the cooldown and a successful trial ------------
        pg.restore()
        took = app.wait_for("/ready", 200, timeout=COOLDOWN + 3)
        recovered_after = time.monotonic() - opened_at
        print(f"restore -> /ready 200 in {took:.2f}s; {recovered_after:.2f}s after opening")
        assert recovered_after >= 2 * COOLDOWN - 0.3, "recovered before two cooldowns passed"
        code, body, _ = app.get("/health")
        assert (code, body["status"]) == (200, "pass")
        assert breaker_states(app.sink.batches, "postgresql") == [
            "closed",
            "open",
            "half_open",
            "open",
            "half_open",
            "closed",
        ]
        assert statuses(app.sink, "postgresql")[:3] == [1.0, 0.5, 0.0]
        assert statuses(app.sink, "postgresql")[-1] == 1.0
        assert transitions(app.sink, "postgresql") == {
            ("closed", "open"): 1.0,
            ("open", "half_open"): 2.0,
            ("half_open", "open"): 1.0,
            ("half_open", "closed"): 1.0,
        }

        # --- 10 s of latency: probes stay fast, the check times out --------------------
        pg.set_latency(10.0)
        probe_times: list[float] = []
        deadline = time.monotonic() + TRIP_BOUND + 2
        while time.monotonic() < deadline:
            for path in ("/live", "/ready", "/health", "/api/health"):
                probe_times.append(app.get(path)[2])
            if app.get("/ready")[0] == 503:
                break
        else:
            raise AssertionError("/ready did not fail under 10 s latency")
        entry = check_entry(app, "postgresql:responseTime")
        assert "timed out after 0.5s" in str(entry["output"])
        for _ in range(10):  # and more probes while the breaker is open
            for path in ("/live", "/ready", "/health", "/api/health"):
                probe_times.append(app.get(path)[2])
        print(
            f"{len(probe_times)} probes under 10 s latency: slowest "
            f"{max(probe_times) * 1000:.1f} ms, median "
            f"{sorted(probe_times)[len(probe_times) // 2] * 1000:.1f} ms"
        )
        assert max(probe_times) < PROBE_LIMIT, f"slowest probe {max(probe_times) * 1000:.0f} ms"

        pg.restore()
        app.wait_for("/ready", 200, timeout=COOLDOWN + 5)
        assert breaker_states(app.sink.batches, "postgresql")[-1] == "closed"

        # --- the optional cache: degraded, never unready ------------------------------
        rd.cut()
        within(TRIP_BOUND, lambda: app.get("/health")[1]["status"] == "warn")
        within(TRIP_BOUND, lambda: breaker_states(app.sink.batches, "redis")[-1:] == ["open"])
        code, body, _ = app.get("/health")
        assert (code, body["status"]) == (200, "warn")
        assert app.get("/ready")[0] == 200
        assert check_entry(app, "redis:responseTime")["status"] == "fail"
        rd.restore()
        within(COOLDOWN + 3, lambda: app.get("/health")[1]["status"] == "pass")
        assert breaker_states(app.sink.batches, "redis") == [
            "closed",
            "open",
            "half_open",
            "closed",
        ]

    # /live never failed, whatever the dependencies did
    assert live.samples, "the /live watcher took no samples"
    assert {code for code, _ in live.samples} == {200}
    print(
        f"/live: {len(live.samples)} samples, all 200, slowest "
        f"{max(t for _, t in live.samples) * 1000:.1f} ms"
    )


def test_the_gateway_serves_its_health_and_exports_it_on_metrics(tmp_path: Path) -> None:
    """The real `telemetry-gateway run` with an opt-in database check and a cut Redis."""
    with TcpProxy("127.0.0.1", 6379) as rd:
        rd.cut()
        config = (
            "health:\n"
            "  details: when-authorized\n"
            "  service_id: gw-under-test\n"
            "  postgres:\n"
            "    {dsn: 'postgresql://postgres@127.0.0.1:5432/test', interval_seconds: 0.2}\n"
            f"  redis: {{url: 'redis://127.0.0.1:{rd.port}/0', interval_seconds: 0.2,"
            " breaker: {failure_threshold: 1}}\n"
        )
        env = {"GATEWAY_HEALTH__TOKEN": "tok"}
        with run_gateway(tmp_path, config=config, grpc=False, env=env) as gw:
            wait_http(gw.url + "/ready", timeout=10)
            auth = {"Authorization": "Bearer tok"}

            def details() -> dict[str, object]:
                body = httpx.get(gw.url + "/api/health", headers=auth).json()
                assert isinstance(body, dict)
                return body

            within(5, lambda: details()["status"] == "warn")
            body = details()
            checks = body["checks"]
            assert isinstance(checks, dict)
            assert checks["postgresql:responseTime"][0]["status"] == "pass"
            assert body["serviceId"] == "gw-under-test"
            anonymous = httpx.get(gw.url + "/api/health")
            assert anonymous.headers["content-type"] == "application/health+json"
            assert "checks" not in anonymous.json()
            assert httpx.get(gw.url + "/health").status_code == 200  # redis is optional

            def exposed() -> str:
                return httpx.get(gw.url + "/metrics").text

            within(5, lambda: "coderunner_circuit_breaker_state{" in exposed())
            text = exposed()
            assert re.search(
                r'coderunner_health_check_status\{[^}]*component="postgresql"[^}]*\} 1(\.0)?\n',
                text,
            )
            assert re.search(
                r'coderunner_circuit_breaker_state\{[^}]*component="redis"[^}]*state="open"'
                r"[^}]*\} 1(\.0)?\n",
                text,
            )
            assert re.search(
                r'coderunner_circuit_breaker_transitions_total\{[^}]*component="redis"'
                r'[^}]*from="closed"[^}]*to="open"[^}]*\} 1(\.0)?\n',
                text,
            )


def test_the_probes_answer_head_like_get_without_a_body(tmp_path: Path) -> None:
    """Load balancers and uptime checkers send HEAD: the same status and headers as GET, no
    body, on a live gateway whose readiness fails (a required database nobody listens on)."""
    config = (
        "health:\n"
        f"  postgres: {{dsn: 'postgresql://postgres@127.0.0.1:{free_port()}/test',"
        " required: true, interval_seconds: 0.2, breaker: {failure_threshold: 1}}\n"
    )
    with run_gateway(tmp_path, config=config, grpc=False) as gw:
        within(10, lambda: httpx.get(gw.url + "/ready").status_code == 503)
        expected = {"/live": 200, "/ready": 503, "/health": 503, "/api/health": 503}
        for path, code in expected.items():
            get = httpx.get(gw.url + path)
            head = httpx.head(gw.url + path)
            assert (get.status_code, head.status_code) == (code, code), path
            assert head.content == b"", path
            assert len(get.content) > 0, path

            def comparable(r: httpx.Response) -> dict[str, str]:
                return {k: v for k, v in r.headers.items() if k != "date"}

            assert comparable(head) == comparable(get), path
            assert head.headers["content-type"] == "application/health+json", path
            assert head.headers["cache-control"] == "no-cache, no-store", path
            # the body's length as a GET would send it
            assert int(head.headers["content-length"]) == len(get.content), path
