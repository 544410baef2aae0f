"""Issue 17, finding 15: start-up errors in one line, and `check-config` checking the files a
config names as `run` does. Real processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO, free_port

pytestmark = pytest.mark.integration


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_finds_missing_tls_and_token_files(tmp_path: Path) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text(
        f"tls: {{cert_file: {tmp_path / 'no.crt'}, key_file: {tmp_path / 'no.key'}}}\n"
        f"auth: {{enabled: true, tokens_file: {tmp_path / 'no-tokens.yaml'}}}\n"
    )
    done = gateway("check-config", str(cfg))
    assert done.returncode == 1, done.stdout
    assert "no.key" in done.stderr or "no.crt" in done.stderr
    assert "auth.tokens_file" in done.stderr


def test_a_bad_pem_is_named_at_check_and_at_start(tmp_path: Path) -> None:
    (tmp_path / "bad.crt").write_text("-----BEGIN CERTIFICATE-----\nnot really\n")
    (tmp_path / "bad.key").write_text("nope\n")
    cfg = tmp_path / "g.yaml"
    cfg.write_text(
        f"tls: {{cert_file: {tmp_path / 'bad.crt'}, key_file: {tmp_path / 'bad.key'}}}\n"
    )
    done = gateway("check-config", str(cfg))
    assert done.returncode == 1 and "not a usable PEM" in done.stderr
    done = gateway("run", "--config", str(cfg), "--http-port", str(free_port()))
    assert done.returncode == 2
    assert "not a usable PEM" in done.stderr and "Traceback" not in done.stderr


def test_a_busy_grpc_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "g.yaml"
        cfg.write_text("observers: {enabled: false}\n")
        done = gateway(
            "run", "--config", str(cfg), "--http-port", str(free_port()), "--grpc-port", str(port)
        )
    assert done.returncode == 1
    assert f"cannot listen for OTLP/gRPC on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("which", ["--http-port", "--grpc-port"])
def test_a_busy_port_is_one_clean_line_naming_the_setting(tmp_path: Path, which: str) -> None:
    """Issue 19, item 4: uvicorn logged its own line and exited, grpc logged a C-core error
    before ours; now each is one line that names the setting and how to change it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"--http-port": str(free_port()), "--grpc-port": str(free_port())}
        ports[which] = str(port)
        cfg = tmp_path / "g.yaml"
        cfg.write_text("observers: {enabled: false}\n")
        done = gateway("run", "--config", str(cfg), *(x for kv in ports.items() for x in kv))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    key = which.removeprefix("--").replace("-", "_")
    assert f"server.{key}: cannot listen for " in lines[0]
    assert f"127.0.0.1:{port}: address already in use" in lines[0]
    assert which in lines[0]


def test_an_unusable_host_is_one_line(tmp_path: Path) -> None:
    done = gateway("run", "--host", "nosuchhost.invalid", "--http-port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "telemetry-gateway: cannot start: server.host: cannot resolve 'nosuchhost.invalid': "
        "Name or service not known"
    ]
