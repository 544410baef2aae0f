"""Real servers for tests: free ports, subprocesses that are always cleaned up, and launchers for
the gateway, Prometheus and Alertmanager (Debian's binaries)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "GatewayProcess",
    "ServerProcess",
    "free_port",
    "run_alertmanager",
    "run_demo_service",
    "run_gateway",
    "run_prometheus",
    "wait_http",
]

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str,
    *,
    timeout: float = 20.0,
    proc: subprocess.Popen[bytes] | None = None,
    expect: int | None = 200,
) -> None:
    """Poll `url` until it answers (with `expect`, when given) or fail with what the log says."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=1.0)
            if expect is None or r.status_code == expect:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def _spawn(
    argv: Sequence[str],
    log: Path,
    url: str,
    health: str,
    *,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[ServerProcess]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    server = ServerProcess(proc, url, log)
    try:
        try:
            wait_http(url + health, timeout=timeout, proc=proc)
        except Exception as exc:
            raise RuntimeError(
                f"{argv[0]} did not start: {exc}\n{server.log_text()[-3000:]}"
            ) from exc
        yield server
    finally:
        server.stop()


@dataclass
class GatewayProcess(ServerProcess):
    http_port: int = 0
    grpc_port: int = 0

    @property
    def otlp_http(self) -> str:
        return f"{self.url}/v1/metrics"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@contextlib.contextmanager
def run_gateway(
    tmp: Path,
    *args: str,
    grpc: bool = True,
    config: str | None = None,
    env: dict[str, str] | None = None,
    ports: tuple[int, int] | None = None,
    prefix: Sequence[str] = (),
) -> Iterator[GatewayProcess]:
    """`telemetry-gateway run` in a subprocess on free ports (or on `ports`, (http, grpc), to
    restart one in its place); yields once /live answers. `prefix`: a command the gateway runs
    under (`prlimit --nofile=...`, for example)."""
    if ports is not None:
        http_port, grpc_port = ports
    else:
        http_port = free_port()
        grpc_port = free_port() if grpc else 0
    argv = [
        *prefix,
        sys.executable,
        "-m",
        "gateway",
        "run",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        *args,
    ]
    if config is not None:
        cfg = tmp / f"gateway-{http_port}.yaml"
        cfg.write_text(config)
        argv += ["--config", str(cfg)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    full_env.update(env or {})
    url = f"http://127.0.0.1:{http_port}"
    with _spawn(
        argv, tmp / f"gateway-{http_port}.log", url, "/live", env=full_env, cwd=REPO
    ) as server:
        yield GatewayProcess(server.proc, server.url, server.log, http_port, grpc_port)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make system-deps`")
    return path


@contextlib.contextmanager
def run_prometheus(
    tmp: Path, config: str, *, extra_files: dict[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[ServerProcess]:
    """A real Prometheus with `config` (YAML text) and its own data directory under `tmp`.
    `extra_files` are written beside the config (rule files, for example)."""
    port = free_port()
    home = tmp / f"prometheus-{port}"
    home.mkdir(parents=True)
    (home / "prometheus.yml").write_text(config)
    for name, text in (extra_files or {}).items():
        target = home / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    argv = [
        _binary("prometheus"),
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        *args,
    ]
    with _spawn(
        argv, home / "prometheus.log", f"http://127.0.0.1:{port}", "/-/ready", cwd=home
    ) as server:
        yield server


@contextlib.contextmanager
def run_alertmanager(
    tmp: Path, config: str, *, args: Sequence[str] = ()
) -> Iterator[ServerProcess]:
    """A real Alertmanager (Debian's `prometheus-alertmanager`) with `config` (YAML text)."""
    port = free_port()
    home = tmp / f"alertmanager-{port}"
    home.mkdir(parents=True)
    (home / "alertmanager.yml").write_text(config)
    argv = [
        _binary("prometheus-alertmanager"),
        f"--config.file={home / 'alertmanager.yml'}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        *args,
    ]
    with _spawn(
        argv, home / "alertmanager.log", f"http://127.0.0.1:{port}", "/-/ready", cwd=home
    ) as server:
        yield server


@contextlib.contextmanager
def run_demo_service(
    tmp: Path, gateway_url: str, env: dict[str, str], *, workers: int = 1
) -> Iterator[ServerProcess]:
    """The demo service under uvicorn on a free port, exporting to `gateway_url` every 300 ms,
    with `env` added (DATABASE_URL, DEMO_*); yields once /live answers, stops with SIGTERM
    (uvicorn's lifespan shutdown flushes the last metrics)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DEMO_"))}
    full_env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=gateway_url,
        OTEL_METRIC_EXPORT_INTERVAL="300",
        PYTHONPATH=str(REPO),
        **env,
    )
    argv = [sys.executable, "-m", "uvicorn", "demo.app:create_app_from_env", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    argv += ["--log-level", "warning"]
    with _spawn(
        argv, tmp / f"demo-{port}.log", f"http://127.0.0.1:{port}", "/live", env=full_env, cwd=REPO
    ) as server:
        yield server
