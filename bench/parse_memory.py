"""Memory that protobuf's parser (upb) takes for an OTLP metrics body, per body byte: realistic
bodies next to bodies padded with empty containers, in the same script.

    .venv/bin/python bench/parse_memory.py [--sizes 1,5,20] [--cases all] [--gateway]

Each case and size is parsed in a fresh subprocess (upb allocates outside tracemalloc, and a
process keeps what its allocator once took): the child reads the body from a file, resets its
peak RSS (`/proc/self/clear_refs`, Linux), parses, and reports the rise of the peak over the
RSS before the parse (`VmHWM - VmRSS`), the parse time, and the
gateway's cheap bound on the parse's memory (`gateway.receivers.wire.decoded_bound`, with the
default point and metric limits, as the receivers call it) with the
time that bound took, and the time and verdict of the receivers' check at the default
`limits.max_decoded_bytes` (`check_decoded`: no scan for small bodies, no per-tag count when
the rough bound fits).

Cases:
* `service mix`, `counters`: bench/ingest.py's bodies (the instrumentation package's export of
  one service instance; counters with 5 attributes a point), concatenated up to the size
  (concatenated OTLP requests are one valid request);
* `empty attributes`: points each carrying 10,000 empty KeyValues (`3a 00` repeated);
* `empty array values`: one attribute per point whose AnyValue holds an ArrayValue of 10,000
  empty AnyValues (`0a 00` repeated);
* `empty kvlist values`: the same with a KeyValueList of empty KeyValues;
* `empty exemplars`: points each carrying 10,000 empty Exemplars (`2a 00` repeated);
* `packed bucket counts`: exponential histogram points whose positive buckets hold 100,000
  zero counts each (one byte per count on the wire, packed varints).
(The padded bodies are built by `tests.support.hostile`, which the attack tests use too.)

`--gateway` instead posts padded bodies to a real `telemetry-gateway run` (a fresh one per
body: a process reuses memory it freed, which would hide the next peak) with the default
limits, about the largest of each kind that the default `limits.max_decoded_bytes` lets through and
a 19 MiB one it refuses, next to the same 19 MiB body with the limit off; it reports the
answer and the gateway's peak RSS (`VmHWM`, reset before the request) over its RSS before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.hostile import PADDINGS, packed_buckets, padded_body

MiB = 1024 * 1024


def _concatenated(bodies: list[bytes], size: int) -> bytes:
    out: list[bytes] = []
    total = 0
    while total < size:
        for b in bodies:
            out.append(b)
            total += len(b)
            if total >= size:
                break
    return b"".join(out)


def service_mix(size: int) -> bytes:
    from bench.ingest import service_bodies

    return _concatenated(service_bodies(), size)


def counters(size: int) -> bytes:
    from bench.ingest import otlp_bodies

    return _concatenated(otlp_bodies()[:10], size)


CASES: dict[str, Callable[[int], bytes]] = {
    "service mix": service_mix,
    "counters": counters,
    **{f"empty {kind}": partial(padded_body, kind) for kind in PADDINGS},
    "packed bucket counts": packed_buckets,
}


def _status(field: str) -> int:
    """VmRSS or VmHWM (the peak) of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def child(path: str) -> None:
    """Parse the body in `path` and print what it cost, as JSON."""
    import gc

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    from gateway.config import LimitsConfig
    from gateway.errors import PermanentError
    from gateway.receivers.limits import InputLimits
    from gateway.receivers.wire import check_decoded, decoded_bound

    config = LimitsConfig()
    shape = InputLimits(config).shape  # the receivers' container limits, checked first
    body = Path(path).read_bytes()
    gc.collect()
    started = time.perf_counter()
    bound = decoded_bound(body, shape)
    bound_seconds = time.perf_counter() - started
    started = time.perf_counter()
    try:
        check_decoded(body, config.max_decoded_bytes, shape)
        verdict = "pass"
    except PermanentError:
        verdict = "413"
    check_seconds = time.perf_counter() - started
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to VmRSS
    before = _status("VmRSS")
    started = time.perf_counter()
    request = ExportMetricsServiceRequest.FromString(body)
    parse_seconds = time.perf_counter() - started
    after = _status("VmHWM")
    del request
    print(
        json.dumps(
            {
                "body": len(body),
                "parse_bytes": after - before,
                "parse_seconds": parse_seconds,
                "bound": bound,
                "bound_seconds": bound_seconds,
                "check_seconds": check_seconds,
                "verdict": verdict,
            }
        )
    )


#: about the largest body of each padding the default limit lets through (MiB)
_THROUGH = [
    ("attributes", 11.0),
    ("exemplars", 8.5),
    ("array values", 11.0),
    ("kvlist values", 11.0),
]


def gateway_runs() -> None:
    import httpx

    from tests.support.hostile import peak_rss, reset_peak_rss
    from tests.support.servers import run_gateway

    runs = [(kind, size, "") for kind, size in _THROUGH]
    runs += [("exemplars", 19.0, ""), ("exemplars", 19.0, "limits: {max_decoded_bytes: 0}\n")]
    print(
        f"{'case':<16}{'MiB':>6}  {'limit':<8}{'answer':>7}{'RSS MiB':>9}{'peak MiB':>10}"
        f"{'rise':>7}{'s':>6}"
    )
    for kind, size, extra in runs:
        body = padded_body(kind, int(size * MiB))
        with (
            tempfile.TemporaryDirectory() as d,
            run_gateway(Path(d), config="observers: {enabled: false}\n" + extra) as gw,
        ):
            base = reset_peak_rss(gw)
            started = time.perf_counter()
            r = httpx.post(
                gw.otlp_http,
                content=body,
                headers={"Content-Type": "application/x-protobuf"},
                timeout=120,
            )
            took = time.perf_counter() - started
            peak = peak_rss(gw)
        print(
            f"{kind:<16}{len(body) / MiB:>6.1f}  {'off' if extra else 'default':<8}"
            f"{r.status_code:>7}{base / MiB:>9.0f}{peak / MiB:>10.0f}"
            f"{(peak - base) / MiB:>7.0f}{took:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,5,20", help="body sizes in MiB, comma-separated")
    parser.add_argument("--cases", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--gateway", action="store_true", help="padded bodies to a real gateway")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.gateway:
        print(f"load before the run: {os.getloadavg()[0]:.2f} (1 min)")
        gateway_runs()
        print(f"load after the run: {os.getloadavg()[0]:.2f} (1 min)")
        return
    names = list(CASES) if args.cases == "all" else args.cases.split(",")
    sizes = [float(s) for s in args.sizes.split(",")]
    print(f"load before the run: {os.getloadavg()[0]:.2f} (1 min)")
    print(
        f"{'case':<22}{'MiB':>6}{'parse MiB':>11}{'x body':>8}{'parse s':>9}"
        f"{'bound MiB':>11}{'bound/parse':>13}{'bound ms':>10}{'check ms':>10}  default"
    )
    with tempfile.TemporaryDirectory() as d:
        for name in names:
            for size in sizes:
                body = CASES[name](int(size * MiB))
                path = Path(d) / "body"
                path.write_bytes(body)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout)
                parsed = max(r["parse_bytes"], 1)
                print(
                    f"{name:<22}{r['body'] / MiB:>6.1f}{parsed / MiB:>11.1f}"
                    f"{parsed / r['body']:>8.1f}{r['parse_seconds']:>9.2f}"
                    f"{r['bound'] / MiB:>11.1f}{r['bound'] / parsed:>13.2f}"
                    f"{r['bound_seconds'] * 1000:>10.1f}{r['check_seconds'] * 1000:>10.1f}"
                    f"  {r['verdict']}"
                )
    print(f"load after the run: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
