"""Debian's node_exporter on a free port, the reference the system observers are compared with."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import ServerProcess, free_port, wait_http


@contextlib.contextmanager
def node_exporter(tmp: Path) -> Iterator[ServerProcess]:
    """Debian's node_exporter on a free port, with only the collectors compared here."""
    binary = shutil.which("prometheus-node-exporter")
    if binary is None:
        pytest.fail("prometheus-node-exporter is not installed: run `make system-deps`")
    port = free_port()
    argv = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.meminfo",
        "--collector.loadavg",
        "--collector.netdev",
        "--collector.filesystem",
    ]
    log = tmp / f"node-exporter-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_http(server.url + "/metrics", proc=proc)
        yield server
    finally:
        server.stop()
