"""`run_demo` for real: gateway and demo subprocesses, traffic, summary, and Ctrl-C (SIGINT)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import threading
import time
from pathlib import Path

import asyncpg
import pytest

from demo.runner import run_demo
from gateway.stack.processes import port_free
from tests.support.postgres import DSN
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

SUMMARY = re.compile(r"req/s ([\d.]+) deployments (\d+)/(\d+) errors (\d+) series (\d+)")


async def _drop(prefix: str) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}deployments, {prefix}users")
    finally:
        await conn.close()


def test_demo_runs_summarises_and_stops_on_ctrl_c(
    tmp_path: Path, table_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Steady traffic sends no server errors and few failed builds: fail half of them, so a
    # few seconds surely count some errors.
    monkeypatch.setenv("DEMO_FAILURE_RATE", "0.5")
    http, grpc, demo = free_port(), free_port(), free_port()
    out = io.StringIO()

    done = threading.Event()

    # Ctrl-C once a few summaries are out (however long this machine takes to start things).
    def interrupt_after_summaries() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(SUMMARY.findall(out.getvalue())) < 4:
            if done.wait(0.2):
                return  # run_demo returned by itself (it failed): nothing to interrupt
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt_after_summaries, daemon=True)
    timer.start()
    try:
        code = run_demo(
            http_port=http,
            grpc_port=grpc,
            demo_port=demo,
            rate=30,
            summary_interval_s=1.0,
            export_interval_s=0.5,
            log_dir=str(tmp_path),
            out=out,
        )
    finally:
        done.set()
        timer.join()
        asyncio.run(_drop(table_prefix))
    text = out.getvalue()
    assert code == 0, text
    assert f"http://127.0.0.1:{http}/metrics" in text
    assert f"http://127.0.0.1:{http}/api/health" in text
    assert f"http://127.0.0.1:{http}/ui/" in text
    assert f"http://127.0.0.1:{demo}/" in text
    assert "\x1b[" not in text  # not a terminal: plain lines
    # Not a TTY: one line per summary; the last one shows traffic reached the gateway.
    lines = SUMMARY.findall(text)
    assert len(lines) >= 3, text
    _, ok, failed, errors, series = lines[-1]
    assert int(errors) > 0, text  # failed builds and simulated errors
    assert int(ok) + int(failed) > 0 and int(series) > 0, text
    assert "demo stopped" in text
    # Everything it started is gone: the ports are free again.
    for port in (http, grpc, demo):
        assert port_free(port), port
    assert (tmp_path / "gateway.log").exists() and (tmp_path / "demo.log").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_screen_is_redrawn_in_place(tmp_path: Path, table_prefix: str) -> None:
    out = _Terminal()
    try:
        code = run_demo(
            http_port=free_port(),
            grpc_port=0,
            demo_port=free_port(),
            rate=20,
            summary_interval_s=1.0,
            export_interval_s=0.5,
            duration_s=6.0,
            log_dir=str(tmp_path),
            out=out,
        )
    finally:
        asyncio.run(_drop(table_prefix))
    text = out.getvalue()
    assert code == 0, text
    frames = text.split("\x1b[H")[1:]
    assert len(frames) >= 3, text
    last = frames[-1]
    # Every frame is one whole screen: each line cleared to its end, the rest cleared after.
    assert last.count("\x1b[K\n") == len(last.split("\x1b[J")[0].splitlines())
    assert len(last.split("\x1b[J")[0].splitlines()) <= 24
    assert "status page" in last and "points/s in" in last and "try next" in last
    assert "scenario: none" in last
    assert (
        text.startswith("")
        and "\x1b[?25l" in text
        and text.rstrip().endswith("demo stopped (logs in " + str(tmp_path) + ")")
    )
    assert "\x1b[?25h" in text  # the cursor is given back
