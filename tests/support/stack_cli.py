"""Drive `telemetry-gateway stack` as a user would (a subprocess on free ports) and find what it
left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.servers import REPO, free_port


def run_stack(
    directory: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # The demo gets tables of its own, apart from other tests' demos in the shared database;
    # the pointer to the last stack (`up` writes it, on main) goes next to the test's
    # directory, not into the user's state directory.
    env = {
        **os.environ,
        "DEMO_TABLE_PREFIX": "stacktest_",
        "XDG_STATE_HOME": str(directory.parent / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway", "stack", "--dir", str(directory), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env=env,
    )


def stack_ports() -> dict[str, int]:
    # free_port() may hand out the same free port twice in a row: five distinct ones.
    names = ("prometheus", "alertmanager", "node-exporter", "gateway", "demo", "notifications")
    ports: set[int] = set()
    while len(ports) < len(names):
        ports.add(free_port())
    return dict(zip(names, sorted(ports), strict=True))


def port_flags(ports: dict[str, int]) -> list[str]:
    flags = [f"--{name}-port={port}" for name, port in ports.items()]
    return [*flags, "--gateway-grpc-port=0"]


def stack_processes(directory: Path) -> list[psutil.Process]:
    """Every process the stack recorded, with all their descendants."""
    state = json.loads((directory / "stack.json").read_text())
    procs = []
    for record in state["running"].values():
        proc = psutil.Process(record["pid"])
        procs += [proc, *proc.children(recursive=True)]
    return procs


def leftovers(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "stack"
    yield directory
    # Whatever a failing test left running is stopped here, through the command under test.
    if (directory / "stack.json").exists():
        run_stack(directory, "stop")
