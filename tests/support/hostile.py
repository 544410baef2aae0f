"""Helpers for attack tests: a `/live` probe that runs while an attack does, the RSS of a
gateway process, and OTLP bodies padded with empty nested messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from tests.support.servers import GatewayProcess

__all__ = [
    "PADDINGS",
    "LiveProbe",
    "packed_buckets",
    "padded_body",
    "peak_rss",
    "reset_peak_rss",
    "rss",
]


def rss(gw: GatewayProcess) -> int:
    """Resident bytes of the gateway process now."""
    return int(psutil.Process(gw.proc.pid).memory_info().rss)


def reset_peak_rss(gw: GatewayProcess) -> int:
    """Reset the gateway's peak RSS (VmHWM) to its RSS now (Linux `clear_refs`), and return
    that RSS: `peak_rss` afterwards says how high an attack took it, even if the memory was
    freed again before anyone looked."""
    Path(f"/proc/{gw.proc.pid}/clear_refs").write_text("5")
    return _status(gw, "VmRSS")


def peak_rss(gw: GatewayProcess) -> int:
    """The gateway's peak resident bytes since the last `reset_peak_rss` (or its start)."""
    return _status(gw, "VmHWM")


def _status(gw: GatewayProcess, field: str) -> int:
    for line in Path(f"/proc/{gw.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


class LiveProbe:
    """Polls `/live` in a thread; `worst` is the slowest answer (or the timeout) seen."""

    def __init__(self, gw: GatewayProcess) -> None:
        self._url = gw.url + "/live"
        self._stop = threading.Event()
        self.worst = 0.0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get(self._url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                took = time.monotonic() - started
                self.worst = max(self.worst, took)
                self.failures += not ok
                self._stop.wait(0.05)

    def __enter__(self) -> LiveProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte, the length, the payload."""
    return bytes([tag]) + _varint(len(payload)) + payload


_TIME = b"\x19" + (1_700_000_000_000_000_000).to_bytes(8, "little")  # fixed64 time_unix_nano


def _request(metric_fields: bytes, points: list[bytes], data_tag: int = 0x2A) -> bytes:
    """One resource, one scope, one metric (`data_tag`: gauge 0x2a, exponential histogram
    0x52) holding `points` (each an encoded data point)."""
    data = b"".join(_ld(0x0A, p) for p in points)
    metric = _ld(0x0A, b"padded") + metric_fields + _ld(data_tag, data)
    key_value = _ld(0x0A, b"service.name") + _ld(0x12, _ld(0x0A, b"pad"))
    resource_ = _ld(0x0A, _ld(0x0A, key_value))  # ResourceMetrics.resource.attributes
    return _ld(0x0A, resource_ + _ld(0x12, _ld(0x12, metric)))


def _fill(size: int, point: bytes, data_tag: int = 0x2A) -> bytes:
    return _request(b"", [point] * max(1, size // len(point)), data_tag)


def _attributes(size: int) -> bytes:
    return _fill(size, b"\x3a\x00" * 10_000 + _TIME + b"\x21" + bytes(8))


def _array_values(size: int) -> bytes:
    value = _ld(0x2A, b"\x0a\x00" * 10_000)  # AnyValue.array_value: ArrayValue.values
    return _fill(size, _ld(0x3A, _ld(0x0A, b"k") + _ld(0x12, value)) + _TIME)


def _kvlist_values(size: int) -> bytes:
    value = _ld(0x32, b"\x0a\x00" * 10_000)  # AnyValue.kvlist_value: KeyValueList.values
    return _fill(size, _ld(0x3A, _ld(0x0A, b"k") + _ld(0x12, value)) + _TIME)


def _exemplars(size: int) -> bytes:
    return _fill(size, b"\x2a\x00" * 10_000 + _TIME + b"\x21" + bytes(8))


def packed_buckets(size: int) -> bytes:
    """About `size` bytes of exponential histogram points whose positive buckets hold
    100,000 zero counts each (packed varints: one byte a count on the wire, 8 in memory)."""
    buckets = _ld(0x12, bytes(100_000))  # Buckets.bucket_counts: 100,000 zeros, packed
    return _fill(size, _TIME + _ld(0x42, buckets), data_tag=0x52)  # point.positive


PADDINGS: dict[str, Callable[[int], bytes]] = {
    "attributes": _attributes,
    "array values": _array_values,
    "kvlist values": _kvlist_values,
    "exemplars": _exemplars,
}


def padded_body(kind: str, size: int) -> bytes:
    """A valid OTLP request of about `size` bytes, padded with empty nested messages of
    `kind` (a key of `PADDINGS`): two bytes on the wire each, 50-90 bytes once parsed.
    Built as bytes: a protobuf message of millions of empties would take a while to make."""
    return PADDINGS[kind](size)
