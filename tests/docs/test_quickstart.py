"""docs/quickstart.md, executed (issue 19, items 2-3): its files written into a fresh
directory, its commands run with bash, its long-running commands (the gateway, the service)
started and waited for, and every `expect` block matched against the output of the block
before it. A real gateway, a real uvicorn service, real HTTP; the documented ports are swapped
for free ones.

Directives are HTML comments right above a fenced block:
`<!-- quickstart: file NAME -->`, `<!-- quickstart: run -->` (bash), `<!-- quickstart: python -->`,
`<!-- quickstart: background READY-URL -->` (bash, left running until the end),
`<!-- quickstart: expect -->` (each line must match a line of the previous output; `...`
stands for anything), `<!-- quickstart: skip (why) -->`. A bash block without one fails the
test, so a command added to the page cannot escape it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.config import GatewayConfig
from instrumentation._settings import DEFAULT_EXPORT_INTERVAL_S
from instrumentation.semconv import DEFAULT_NAMESPACE
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
BIN = Path(sys.executable).parent


@dataclass
class Block:
    directive: str  # "file app.py", "run", "background URL", "expect", "python", "skip ..."
    lang: str
    text: str


def blocks(markdown: str) -> list[Block]:
    out = []
    pattern = re.compile(r"(?:<!-- quickstart: (.*?) -->\n)?```(\w*)\n(.*?)```", re.S)
    for match in pattern.finditer(markdown):
        out.append(Block((match.group(1) or "").strip(), match.group(2), match.group(3)))
    return out


def _matches(expected: str, actual: str) -> bool:
    regex = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(regex, actual) is not None


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield tmp_path, started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_every_bash_block_is_run_or_says_why_not() -> None:
    for block in blocks(QUICKSTART.read_text(encoding="utf-8")):
        if block.lang == "bash":
            assert block.directive.split(" ")[0] in ("run", "background", "skip"), block.text


def test_the_defaults_it_states_are_the_code_defaults() -> None:
    text = QUICKSTART.read_text(encoding="utf-8")
    server = GatewayConfig().server
    assert f'| `{DEFAULT_NAMESPACE}`, so `job="{DEFAULT_NAMESPACE}/<service>"` |' in text
    assert f"| export interval | {DEFAULT_EXPORT_INTERVAL_S:g} s " in text
    assert f"| listen address | `{server.host}` |" in text
    assert f"| OTLP/HTTP, `/metrics`, health | {server.http_port} |" in text
    assert f"| OTLP/gRPC | {server.grpc_port} |" in text
    expiry = GatewayConfig().prometheus.metric_expiration_seconds
    assert f"| a series not updated for | {expiry:g} s disappears |" in text


def test_the_quickstart_runs_as_written(
    workdir: tuple[Path, list[subprocess.Popen[bytes]]],
) -> None:
    directory, started = workdir
    ports = {"4318": str(free_port()), "8000": str(free_port())}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    exports: list[str] = []  # `export` lines so far: the shell session the page describes
    output = ""
    expectations = 0
    for block in blocks(QUICKSTART.read_text(encoding="utf-8")):
        text = block.text
        for documented, port in ports.items():
            text = text.replace(documented, port)
        kind, _, arg = block.directive.partition(" ")
        if kind == "file":
            (directory / arg).write_text(text, encoding="utf-8")
        elif kind in ("run", "background"):
            exports += [line for line in text.splitlines() if line.startswith("export ")]
            script = "set -euo pipefail\n" + "\n".join(exports) + "\n" + text
            if kind == "run":
                done = subprocess.run(
                    ["bash", "-c", script],
                    cwd=directory,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert done.returncode == 0, f"{text}\n{done.stdout}\n{done.stderr}"
                output = done.stdout
            else:
                for documented, port in ports.items():
                    arg = arg.replace(documented, port)
                log = directory / f"background-{len(started)}.log"
                commands = [line for line in text.splitlines() if not line.startswith("export ")]
                assert len(commands) == 1, f"a background block runs one command: {text}"
                with log.open("wb") as sink:  # the child keeps its own copy of the file
                    started.append(
                        subprocess.Popen(
                            ["bash", "-c", "\n".join([*exports, "exec " + commands[0]])],
                            cwd=directory,
                            env=env,
                            stdout=sink,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                _wait_for(arg, started[-1], log)
        elif kind == "python":
            done = subprocess.run(
                [sys.executable, "-c", text],
                cwd=directory,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            output = done.stdout
        elif kind == "expect":
            expectations += 1
            lines = output.splitlines()
            for expected in text.splitlines():
                assert any(_matches(expected, line) for line in lines), (
                    f"not in the output: {expected}\n--- output:\n{output}"
                )
    assert expectations >= 3
    # The service warned about no missing deployment.environment: the page sets it.
    service_log = (directory / "background-1.log").read_text()
    assert "deployment.environment is not set" not in service_log, service_log
    # Metrics of the gateway itself carry the scope label, as docs/metrics.md says.
    metrics = httpx.get(f"http://127.0.0.1:{ports['4318']}/metrics").text
    assert re.search(r'^acme_gateway_\w+\{[^}]*otel_scope_name="telemetry-gateway"', metrics, re.M)
    system = re.findall(r"^acme_system_\w+\{[^}]*\}", metrics, re.M)
    assert system and not any("otel_scope" in line for line in system)


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: the process exited\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in 60 s\n{log.read_text()}")
