"""Issue 17, findings 3 and 4: headers without end, URLs without end, and sockets that never
send their headers. Each attack runs against a real `telemetry-gateway run`; `/live` must keep
answering within a second, and the gateway's memory must not follow the attacker's bytes."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hostile import LiveProbe, rss
from tests.support.servers import GatewayProcess, run_gateway

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    config = "observers: {enabled: false}\nlimits: {header_read_timeout_seconds: 1.0}\n"
    with run_gateway(tmp_path, config=config) as process:
        yield process


def _stream(port: int, head: bytes, chunk: bytes, total: int) -> tuple[int, bytes]:
    """Send `head` then `chunk` repeatedly up to `total` bytes, stopping when the server
    closes; returns (bytes sent, what the server answered)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        sent += len(head)
        try:
            while sent < total:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        with contextlib.suppress(OSError):
            while chunk_in := s.recv(65536):
                answer += chunk_in
    return sent, answer


def test_endless_headers_are_refused_with_431(gw: GatewayProcess) -> None:
    """Finding 3: one connection streaming small headers grew RSS by ~13 bytes per byte sent
    (100 MiB: 1.3 GB), before authentication."""
    before = rss(gw)
    with LiveProbe(gw) as probe:
        sent, answer = _stream(
            gw.http_port,
            b"GET /live HTTP/1.1\r\nHost: x\r\n",
            b"X-Pad: aaaaaaaaaaaa\r\n" * 1000,
            16 * MiB,
        )
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert sent < 16 * MiB  # the gateway closed the connection long before the end
    assert rss(gw) - before < 30 * MiB
    assert probe.worst < 1.0 and probe.failures == 0


def test_one_endless_header_and_an_endless_url_are_refused(gw: GatewayProcess) -> None:
    before = rss(gw)
    _, answer = _stream(gw.http_port, b"GET /live HTTP/1.1\r\nX-Big: ", b"a" * 65536, 16 * MiB)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    _, answer = _stream(gw.http_port, b"GET /", b"a" * 65536, 16 * MiB)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert rss(gw) - before < 30 * MiB
    metrics = httpx.get(gw.url + "/metrics", timeout=10).text
    assert "coderunner_gateway_connections_refused_total{" in metrics
    assert 'reason="header_too_large"' in metrics


def test_too_many_header_lines_are_refused(gw: GatewayProcess) -> None:
    headers = "".join(f"X-H{i}: v\r\n" for i in range(150))
    with socket.create_connection(("127.0.0.1", gw.http_port), timeout=10) as s:
        s.sendall(f"GET /live HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"limits.max_header_count" in answer
    # an ordinary request still works
    assert (
        httpx.get(gw.url + "/live", headers={f"X-H{i}": "v" for i in range(20)}).status_code == 200
    )


def _closed_within(s: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing `s`, or None if it is still open after `seconds`."""
    s.settimeout(seconds)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


def test_silent_and_slow_sockets_are_closed(gw: GatewayProcess) -> None:
    """Finding 4: a socket that never finished its headers was never closed, on either port."""
    http_socks = [socket.create_connection(("127.0.0.1", gw.http_port)) for _ in range(30)]
    grpc_socks = [socket.create_connection(("127.0.0.1", gw.grpc_port)) for _ in range(10)]
    slow = socket.create_connection(("127.0.0.1", gw.http_port))
    started = time.monotonic()
    try:
        closed_after = None
        for b in b"GET /live HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n":  # a byte every 0.1 s
            try:
                slow.send(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)
        for s in http_socks:
            answer = _closed_within(s, 3.0)
            assert answer is not None, "silent HTTP socket still open"
            assert answer.startswith(b"HTTP/1.1 408")
        for s in grpc_socks:
            assert _closed_within(s, 5.0) is not None, "silent gRPC socket still open"
        assert closed_after is not None or _closed_within(slow, 1.0) is not None, (
            "slow-loris socket still open"
        )
    finally:
        for s in [*http_socks, *grpc_socks, slow]:
            s.close()
    assert httpx.get(gw.url + "/live", timeout=2).status_code == 200


def test_a_thousand_silent_sockets_do_not_exhaust_descriptors(tmp_path: Path) -> None:
    """Finding 4: with the usual soft limit of 1,024 open files, ~1,100 silent sockets made HTTP,
    /live and gRPC time out for everyone. The gateway raises its soft limit to the hard one."""
    config = "observers: {enabled: false}\n"
    with run_gateway(tmp_path, config=config, prefix=["prlimit", "--nofile=1024:8192"]) as gw:
        socks = [socket.create_connection(("127.0.0.1", gw.http_port)) for _ in range(1100)]
        try:
            with LiveProbe(gw) as probe:
                time.sleep(1.0)
                r = httpx.get(gw.url + "/live", timeout=2)
            assert r.status_code == 200
            assert probe.worst < 1.0 and probe.failures == 0
        finally:
            for s in socks:
                s.close()
        assert "Too many open files" not in gw.log_text()
