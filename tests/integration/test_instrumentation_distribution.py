"""The instrumentation package as a service installs it: its wheel alone in a fresh virtual
environment (no gateway, no repository on the path), a FastAPI + asyncpg app on the real
PostgreSQL, and a real gateway that must receive exact counts. Then the same app without a line
of instrumentation code under `opentelemetry-instrument`, with uvicorn and with gunicorn, two
workers each: the same metrics, exactly counted.

The gateway runs with `views: []`, so its /metrics shows the OpenTelemetry names the package
emits (http_server_request_duration_seconds_count{http_route=...}).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.promtext import Samples, parse
from tests.support.servers import (
    REPO,
    GatewayProcess,
    ServerProcess,
    free_port,
    run_gateway,
    wait_http,
)
from tests.support.waiting import settled

pytestmark = pytest.mark.integration

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
HTTP_COUNT = "http_server_request_duration_seconds_count"
DB_COUNT = "db_client_operation_duration_seconds_count"
ROUTE = "/users/{user_id}"
#: what a service must not get by installing the package (the gateway's own dependencies)
HEAVY = {
    "telemetry-gateway",
    "grpcio",
    "psutil",
    "redis",
    "pydantic",
    "pyyaml",
    "websockets",
    "fastapi",
    "uvicorn",
    "asyncpg",
}

APP = """
import contextlib
import os

import asyncpg
from fastapi import FastAPI, HTTPException


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=4)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/users/{user_id}")
async def user(user_id: int):
    found = await app.state.pool.fetchval("SELECT $1::int WHERE $1::int < 1000", user_id)
    if found is None:
        raise HTTPException(404, "no such user")
    return {"id": found}


@app.get("/live")
async def live():
    return "ok"


if os.environ.get("INSTRUMENT_IN_CODE"):
    from instrumentation import instrument_app

    instrument_app(app, exclude_paths=["/live"])
"""


@dataclass(frozen=True)
class Venv:
    root: Path
    app_dir: Path

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise AssertionError(
            f"{argv[:4]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The package's wheel, built from a copy of its folder, installed alone in a fresh venv
    with what the test app itself needs (FastAPI, uvicorn, asyncpg, gunicorn), from PyPI."""
    tmp = tmp_path_factory.mktemp("distribution")
    source = tmp / "source"
    shutil.copytree(
        REPO / "instrumentation",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    wheels = tmp / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(source),
        ]
    )
    (wheel,) = wheels.glob("telemetry_gateway_instrumentation-*.whl")
    env = Venv(tmp / "venv", tmp / "app")
    _run([sys.executable, "-m", "venv", str(env.root)])
    pip = [env.bin("python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, str(wheel)])
    listed = _run([env.bin("python"), "-m", "pip", "list", "--format=freeze"])
    (tmp / "alone.txt").write_text(listed.stdout)
    # What the test app itself needs, on top.
    _run([*pip, "fastapi", "uvicorn", "asyncpg", "gunicorn"])
    env.app_dir.mkdir()
    (env.app_dir / "app.py").write_text(APP)
    return env


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "GATEWAY_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


def test_the_wheel_installs_alone_with_light_dependencies(venv: Venv) -> None:
    alone = (venv.root.parent / "alone.txt").read_text()
    installed = {line.split("==")[0].lower() for line in alone.splitlines()}
    assert "telemetry-gateway-instrumentation" in installed
    assert not installed & HEAVY, installed & HEAVY
    # Importable and usable without the gateway or the repository anywhere on the path.
    code = (
        "import importlib.util, instrumentation\n"
        "from instrumentation import InstrumentationSettings, instrument_app, setup\n"
        "assert importlib.util.find_spec('gateway') is None\n"
        "assert importlib.util.find_spec('demo') is None\n"
        "print(instrumentation.__file__)\n"
    )
    done = _run([venv.bin("python"), "-c", code], cwd=venv.app_dir, env=_clean_env())
    assert str(venv.root) in done.stdout


@contextlib.contextmanager
def serve(venv: Venv, argv: list[str], port: int, **env: str) -> Iterator[ServerProcess]:
    """`argv` (a console script of the venv) in the app's folder; yields once /live answers."""
    log = venv.app_dir / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=venv.app_dir,
            env=_clean_env(DATABASE_URL=DSN, OTEL_METRIC_EXPORT_INTERVAL="300", **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log)
    try:
        try:
            wait_http(server.url + "/live", timeout=60, proc=proc)
        except Exception as exc:
            log = server.log_text()[-3000:]
            raise AssertionError(f"{argv[0]} did not start: {exc}\n{log}") from exc
        yield server
    finally:
        server.stop()


def drive(url: str, ok: int, missing: int) -> None:
    # A new connection per request, so every worker gets some of them.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, timeout=10, limits=limits) as c:
        for i in range(ok):
            assert c.get(f"/users/{i}").status_code == 200
        for i in range(missing):
            assert c.get(f"/users/{1000 + i}").status_code == 404


def total(samples: Samples, name: str, job: str, **labels: str) -> float:
    return sum(v for _, v in samples.all(name, job=job, **labels))


def scrape_when(gateway: GatewayProcess, ready: Callable[[Samples], bool]) -> Samples:
    # A few more export intervals after `ready`: exact means nothing late either.
    return settled(
        lambda: parse(httpx.get(gateway.url + "/metrics", timeout=5).text), ready, 20, settle=1.0
    )


def check_exact(gateway: GatewayProcess, service: str, ok: int, missing: int) -> Samples:
    job = f"coderunner/{service}"
    samples = scrape_when(
        gateway, lambda s: total(s, HTTP_COUNT, job, http_route=ROUTE) >= ok + missing
    )
    assert total(samples, HTTP_COUNT, job, http_route=ROUTE, http_response_status_code="200") == ok
    assert (
        total(samples, HTTP_COUNT, job, http_route=ROUTE, http_response_status_code="404")
        == missing
    )
    assert total(samples, HTTP_COUNT, job, http_request_method="GET", http_route=ROUTE) == (
        ok + missing
    )
    # One SELECT per request, timed by the asyncpg wrapper; the pool's housekeeping is not.
    assert total(samples, DB_COUNT, job, db_operation_name="SELECT") == ok + missing
    assert total(samples, "http_server_active_requests", job) == 0
    return samples


def series_shape(samples: Samples, job: str) -> set[tuple[str, tuple[str, ...]]]:
    """Metric names and label names of a service's series, without the per-process ones."""
    own = {"job", "instance", "le"}
    return {
        (name, tuple(sorted(k for k in labels if k not in own)))
        for name, labels, _ in samples.rows
        if labels.get("job") == job and not name.startswith("target_info")
    }


def instances(samples: Samples, job: str) -> set[str]:
    return {labels["instance"] for labels, v in samples.all(HTTP_COUNT, job=job) if v > 0}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with run_gateway(tmp_path_factory.mktemp("gateway"), grpc=False, config="views: []\n") as gw:
        yield gw


@pytest.fixture(scope="module")
def in_code(venv: Venv, gateway: GatewayProcess) -> Samples:
    """The app with `instrument_app(app)`, under uvicorn: the reference for the zero-code runs."""
    port = free_port()
    argv = [venv.bin("uvicorn"), "app:app", "--port", str(port), "--log-level", "warning"]
    with serve(
        venv,
        argv,
        port,
        OTEL_SERVICE_NAME="in-code",
        INSTRUMENT_IN_CODE="1",
        OTEL_EXPORTER_OTLP_ENDPOINT=gateway.url,
    ) as server:
        drive(server.url, 17, 4)
        return check_exact(gateway, "in-code", 17, 4)


def test_instrument_app_from_the_wheel_gives_exact_counts(in_code: Samples) -> None:
    assert instances(in_code, "coderunner/in-code") != set()


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_zero_code_start_with_two_workers_gives_the_same_metrics_exactly(
    venv: Venv, gateway: GatewayProcess, in_code: Samples, server: str
) -> None:
    port = free_port()
    if server == "uvicorn":
        command = [venv.bin("uvicorn"), "app:app", "--workers", "2"]
        command += ["--port", str(port), "--log-level", "warning"]
    else:
        command = [venv.bin("gunicorn"), "-k", "uvicorn.workers.UvicornWorker", "-w", "2"]
        command += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", "app:app"]
    service = f"zero-code-{server}"
    # The stock instrumentors' exclusion variable, the specific one under uvicorn and the
    # generic one under gunicorn: /live (polled by `serve` until it answers) is not measured.
    excluded = (
        "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS" if server == "uvicorn" else "OTEL_PYTHON_EXCLUDED_URLS"
    )
    with serve(
        venv,
        [venv.bin("opentelemetry-instrument"), *command],
        port,
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=gateway.url,
        **{excluded: "/live$"},
    ) as running:
        for _ in range(3):
            assert httpx.get(running.url + "/live").status_code == 200
        drive(running.url, 40, 6)
        samples = check_exact(gateway, service, 40, 6)
    job = f"coderunner/{service}"
    # Both workers served requests, each as its own instance, and the totals above sum them.
    assert len(instances(samples, job)) == 2, instances(samples, job)
    # The same names and label sets as instrument_app() gives, and neither measured /live.
    assert series_shape(samples, job) == series_shape(in_code, "coderunner/in-code")
    for run, run_job in ((samples, job), (in_code, "coderunner/in-code")):
        routes = {labels.get("http_route") for labels, _ in run.all(HTTP_COUNT, job=run_job)}
        assert ROUTE in routes
        assert "/live" not in routes
