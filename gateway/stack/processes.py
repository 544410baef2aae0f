"""One background process of the stack: start it in a session of its own with its output in a
log file, ask its health endpoint, stop it with everything it spawned.

A process is identified by pid *and* start time (`ProcessRecord`), so a pid reused by an
unrelated process after a reboot or a crash is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psutil

from gateway.stack.components import Component

__all__ = [
    "ProcessRecord",
    "follow",
    "health",
    "is_alive",
    "port_free",
    "spawn",
    "start_logged",
    "stop_process",
    "tail",
]

_STOP_TIMEOUT_S = 10.0


@dataclass
class ProcessRecord:
    """What `up` remembers about a process it started."""

    pid: int
    create_time: float
    url: str
    health_url: str
    optional: bool = False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on the port now. SO_REUSEADDR, as the servers themselves
    set it: without it, connections in TIME_WAIT (a stopped component's last scrapes and
    health polls) make a free port look taken, and `restart` fails."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def health(url: str) -> tuple[bool, str]:
    """(healthy, what to show): 200 is healthy; anything else says what was seen."""
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        return False, f"not answering ({type(exc).__name__})"
    if response.status_code == 200:
        return True, "healthy"
    return False, f"unhealthy (HTTP {response.status_code})"


def tail(path: Path, lines: int) -> str:
    if not path.exists() or lines <= 0:
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_logged(
    argv: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own, its output appended to `log` after a line saying
    when it started. Its own session: Ctrl-C at the terminal reaches only the caller, which
    stops its children in order, and a signal to the process group reaches all it spawned.
    Raises OSError when the binary cannot run."""
    with log.open("ab") as sink:
        sink.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting\n".encode())
        sink.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def spawn(
    component: Component, log: Path, environ: Mapping[str, str], cwd: Path
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start the component detached from this process (its own session, so it outlives the
    command and `stop` can signal its whole process group). Raises OSError when the binary
    cannot run."""
    env = component.env if component.env is not None else environ
    proc = start_logged(component.argv, log, env, component.cwd or cwd)
    record = ProcessRecord(
        proc.pid,
        psutil.Process(proc.pid).create_time(),
        component.url,
        component.health_url,
        component.optional,
    )
    return proc, record


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_alive(record: ProcessRecord) -> bool:
    """The recorded process still runs: same pid *and* start time (pids are reused)."""
    try:
        proc = psutil.Process(record.pid)
        return abs(proc.create_time() - record.create_time) < 0.5 and _running(proc)
    except psutil.Error:
        return False


def _wait_exited(procs: Sequence[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until the processes have exited; returns those still running after `timeout_s`.

    A zombie counts as exited: components started by an earlier `up` have been reparented, and
    how soon init reaps them is not ours to wait for (psutil.wait_procs would wait for it).
    """
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        for p in alive:
            with contextlib.suppress(ChildProcessError, psutil.Error):
                if p.ppid() == os.getpid():
                    p.wait(0)  # reap our own children (an `up` that failed half-way)
        alive = [p for p in alive if _running(p)]
    return alive


def stop_process(record: ProcessRecord, timeout_s: float = _STOP_TIMEOUT_S) -> str:
    """SIGTERM the process group, SIGKILL what is left after `timeout_s`; wait until all of it
    has exited. Returns "stopped", "killed" or "was not running"."""
    if not is_alive(record):
        return "was not running"
    try:
        leader = psutil.Process(record.pid)
        group = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return "was not running"
    # Each component leads its own session, so its process group is everything it spawned.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    alive = _wait_exited(group, timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_exited(alive, timeout_s)
    return "killed" if alive else "stopped"


def follow(paths: Sequence[tuple[str, Path]], out: IO[str]) -> None:
    """Print lines appended to the logs, prefixed with the component, until Ctrl-C."""
    positions = {path: path.stat().st_size for _, path in paths}
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            for name, path in paths:
                size = path.stat().st_size if path.exists() else 0
                if size < positions[path]:
                    positions[path] = 0  # truncated or recreated
                if size > positions[path]:
                    with path.open("rb") as f:
                        f.seek(positions[path])
                        chunk = f.read()
                    positions[path] += len(chunk)
                    for line in chunk.decode(errors="replace").splitlines():
                        out.write(f"{name:<14}| {line}\n")
                    out.flush()
            time.sleep(0.3)
