"""Token rotation without a restart, against a real gateway process: a token file renamed over
and a Kubernetes Secret's `..data` swap are picked up within `auth.reload_interval_seconds` by
both receivers (OTLP/HTTP and OTLP/gRPC) and the read guard; a broken file keeps the tokens in
use and shows in `gateway.config.reloads`, in /api/health and in one ERROR line; SIGHUP reloads
at once with polling off. A new TLS pair reaches new handshakes on both listeners; one whose
key does not fit is refused."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from tests.support.gateway_client import PB
from tests.support.otlp import Req
from tests.support.promtext import parse
from tests.support.servers import REPO, GatewayProcess, free_port, run_gateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
QUIET = "observers: {enabled: false}\nhealth: {details: always}\n"
INTERVAL = 0.3
#: a poll, a read in a thread and a swap take far less, but the machine is shared: generous,
#: and still nothing without the reload (each test fails with it switched off)
WITHIN = INTERVAL * 20
RELOADS = "coderunner_gateway_config_reloads_total"
STATUS = "coderunner_health_check_status"


def body() -> bytes:
    now = int(time.time())
    return Req(service="billing").sum("invoices", [({}, 1, now - 5, now)]).bytes()


def http_status(gw: GatewayProcess, token: str) -> int:
    r = httpx.post(gw.otlp_http, content=body(), headers={**PB, "Authorization": f"Bearer {token}"})
    return r.status_code


def grpc_code(gw: GatewayProcess, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(gw.grpc_target) as channel:
        call = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportMetricsServiceResponse.FromString,
        )
        try:
            call(body(), timeout=10, metadata=[("authorization", f"Bearer {token}")])
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


def read_status(gw: GatewayProcess, token: str) -> int:
    return httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {token}"}).status_code


def replace_file(path: Path, text: str) -> None:
    """Write beside and rename over, as an operator rotating a secret should."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.replace(path)


def ingest_only(gw: GatewayProcess, accepted: str, refused: str) -> bool:
    return (
        http_status(gw, accepted) == 200
        and http_status(gw, refused) == 401
        and grpc_code(gw, accepted) == grpc.StatusCode.OK
        and grpc_code(gw, refused) == grpc.StatusCode.UNAUTHENTICATED
    )


def config(tokens_file: Path, interval: float = INTERVAL, extra: str = "") -> str:
    return (
        f"auth: {{enabled: true, tokens_file: '{tokens_file}', "
        f"reload_interval_seconds: {interval}{extra}}}\n" + QUIET
    )


def reloads(gw: GatewayProcess, result: str, read_token: str = "") -> float:
    """`gateway.config.reloads{result}` from /metrics/self (with a read token if it is guarded)."""
    headers = {"Authorization": f"Bearer {read_token}"} if read_token else {}
    r = httpx.get(gw.url + "/metrics/self", headers=headers)
    assert r.status_code == 200, r.text
    return sum(v for _, v in parse(r.text).all(RELOADS, result=result))


def check_status(gw: GatewayProcess) -> float | None:
    """`health.check.status{component="secret_reload"}` on /metrics (None: not there yet)."""
    found = parse(httpx.get(gw.url + "/metrics").text).all(STATUS, component="secret_reload")
    return found[0][1] if found else None


def health(gw: GatewayProcess) -> dict[str, object]:
    r = httpx.get(gw.url + "/api/health")
    checks: dict[str, object] = r.json()["checks"]
    return checks


def reload_check(gw: GatewayProcess) -> list[dict[str, object]]:
    found: list[dict[str, object]] = health(gw).get("secret_reload:reloads", [])  # type: ignore[assignment]
    return found


def test_a_rotated_tokens_file_is_used_within_the_interval(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("team-a: old-7f3a\n")
    with run_gateway(tmp_path, config=config(tokens)) as gw:
        assert ingest_only(gw, "old-7f3a", "new-91c2")
        # Rotation in two steps, as the operations guide says: both, then only the new one.
        replace_file(tokens, "team-a: [old-7f3a, new-91c2]\n")
        eventually(lambda: http_status(gw, "new-91c2") == 200, timeout=WITHIN)
        assert http_status(gw, "old-7f3a") == 200
        replace_file(tokens, "team-a: new-91c2\n")
        eventually(lambda: ingest_only(gw, "new-91c2", "old-7f3a"), timeout=WITHIN)
        assert reloads(gw, "success") == 2
        assert reloads(gw, "error") == 0


def test_a_kubernetes_secret_update_is_picked_up(tmp_path: Path) -> None:
    """The kubelet's layout and update: a new timestamped directory, `..data` renamed over."""
    mount = tmp_path / "secret"
    (mount / "..2026_11_30_10_00_00.1").mkdir(parents=True)
    (mount / "..2026_11_30_10_00_00.1" / "tokens.yaml").write_text("team-a: old-7f3a\n")
    (mount / "..data").symlink_to("..2026_11_30_10_00_00.1")
    (mount / "tokens.yaml").symlink_to("..data/tokens.yaml")
    with run_gateway(tmp_path, config=config(mount / "tokens.yaml")) as gw:
        assert ingest_only(gw, "old-7f3a", "new-91c2")
        new = mount / "..2026_11_30_10_05_00.2"
        new.mkdir()
        (new / "tokens.yaml").write_text("team-a: new-91c2\n")
        (mount / "..data_tmp").symlink_to(new.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        eventually(lambda: ingest_only(gw, "new-91c2", "old-7f3a"), timeout=WITHIN)


def test_a_broken_file_keeps_the_tokens_and_says_so(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("team-a: old-7f3a\n")
    with run_gateway(tmp_path, config=config(tokens)) as gw:
        assert reload_check(gw)[0]["status"] == "pass"
        replace_file(tokens, "team-a: [\n")
        eventually(
            lambda: reloads(gw, "error") == 1,
            timeout=WITHIN,
        )
        time.sleep(INTERVAL * 4)  # more polls of the same bad file
        assert reloads(gw, "error") == 1
        assert ingest_only(gw, "old-7f3a", "new-91c2"), "the old tokens stay in use"
        check = eventually(
            lambda: [c for c in reload_check(gw) if c["status"] == "fail"],
            what=lambda: json.dumps(health(gw)),
        )[0]
        assert str(tokens) in str(check["output"]) and "auth.tokens_file" in str(check["output"])
        # what HealthCheckFailing (prometheus/rules/alerts.yml) alerts on after 2 minutes
        eventually(lambda: check_status(gw) == 0.0, what=lambda: f"status {check_status(gw)}")
        # not required for readiness: the old tokens still work
        assert httpx.get(gw.url + "/ready").status_code == 200
        assert httpx.get(gw.url + "/api/health").json()["status"] == "warn"
        errors = [ln for ln in gw.log.read_text().splitlines() if " ERROR " in ln]
        assert len(errors) == 1, errors
        assert str(tokens) in errors[0] and "while parsing" in errors[0], errors
        # fixed: used, and health passes again
        replace_file(tokens, "team-a: new-91c2\n")
        eventually(lambda: ingest_only(gw, "new-91c2", "old-7f3a"), timeout=WITHIN)
        eventually(lambda: reload_check(gw)[0]["status"] == "pass")
        eventually(lambda: check_status(gw) == 1.0, what=lambda: f"status {check_status(gw)}")
        assert reloads(gw, "success") == 1


def test_sighup_reloads_at_once_with_polling_off(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("team-a: old-7f3a\n")
    with run_gateway(tmp_path, config=config(tokens, interval=0)) as gw:
        replace_file(tokens, "team-a: new-91c2\n")
        time.sleep(1.0)
        assert ingest_only(gw, "old-7f3a", "new-91c2"), "polling is off: nothing read yet"
        gw.proc.send_signal(signal.SIGHUP)
        eventually(lambda: ingest_only(gw, "new-91c2", "old-7f3a"), timeout=5)
        assert gw.proc.poll() is None, "SIGHUP must not end the gateway"


def test_the_read_tokens_file_is_reloaded_for_metrics(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("team-a: ingest-5d1e\n")
    read = tmp_path / "read-token"
    read.write_text("read-old-2b7c\n")
    extra = f", read_tokens_file: '{read}'"
    with run_gateway(tmp_path, config=config(tokens, extra=extra)) as gw:
        assert read_status(gw, "read-old-2b7c") == 200
        assert read_status(gw, "read-new-e40f") == 401
        replace_file(read, "read-new-e40f\n")
        eventually(
            lambda: (
                read_status(gw, "read-new-e40f") == 200 and read_status(gw, "read-old-2b7c") == 401
            ),
            timeout=WITHIN,
        )
        # an empty read file would open nothing and lock nobody out: refused, old kept
        replace_file(read, "# nothing yet\n")
        eventually(
            lambda: reloads(gw, "error", "read-new-e40f") == 1,
            timeout=WITHIN,
        )
        assert read_status(gw, "read-new-e40f") == 200
        assert http_status(gw, "ingest-5d1e") == 200, "the ingest set is untouched"


# ------------------------------------------------------------------ TLS pair


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def self_signed(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed EC certificate for 127.0.0.1 (CN `name`) and its key."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "tls.key", "-out", "tls.crt", "-days", "1",
             "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)  # fmt: skip
    return d / "tls.crt", d / "tls.key"


def served_cn(port: int) -> str:
    """The CN of the certificate a new TLS handshake on `port` gets (no SNI: an IP)."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True, text=True
    ).stdout
    return text.strip().rsplit("=", 1)[-1].strip()


def grpc_trusts(port: int, cert: Path) -> bool:
    """An export over a new gRPC connection that trusts only `cert` gets through TLS (to the
    token check: no token, so UNAUTHENTICATED is a handshake that worked)."""
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        call = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportMetricsServiceResponse.FromString,
        )
        try:
            call(body(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[no-any-return]
        return True


@contextlib.contextmanager
def tls_gateway(tmp: Path, config: str) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """`run_gateway` waits with plain HTTP; this one waits for an HTTPS /live."""
    http_port, grpc_port = free_port(), free_port()
    (tmp / "gateway.yaml").write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    log = tmp / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(tmp / "gateway.yaml"),
             "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
    try:
        eventually(
            lambda: proc.poll() is None and _https_live(http_port),
            what=lambda: log.read_text()[-3000:],
        )
        yield proc, http_port, grpc_port
    finally:
        proc.terminate()
        proc.wait(15)


def _https_live(port: int) -> bool:
    try:
        r = httpx.get(f"https://127.0.0.1:{port}/live", verify=False, timeout=1)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def test_a_new_tls_pair_reaches_new_handshakes_on_both_listeners(tmp_path: Path) -> None:
    """A Kubernetes TLS Secret (tls.crt and tls.key swapped together under `..data`); then a
    pair that does not fit (the key of another certificate) is refused and the pair in use
    stays."""
    mount = tmp_path / "secret"
    old_crt, _ = self_signed(mount / "..1", "old-pair")
    (mount / "..data").symlink_to("..1")
    for name in ("tls.crt", "tls.key"):
        (mount / name).symlink_to(f"..data/{name}")
    (tmp_path / "tokens.yaml").write_text("team-a: t-1\n")
    text = f"tls: {{cert_file: '{mount / 'tls.crt'}', key_file: '{mount / 'tls.key'}'}}\n" + config(
        tmp_path / "tokens.yaml"
    )
    with tls_gateway(tmp_path, text) as (_, http_port, grpc_port):
        assert served_cn(http_port) == served_cn(grpc_port) == "old-pair"
        assert grpc_trusts(grpc_port, old_crt)
        # an open connection keeps its session; new ones get the new pair
        with httpx.Client(verify=False) as kept:
            assert kept.get(f"https://127.0.0.1:{http_port}/live").status_code == 200
            new_crt, _ = self_signed(mount / "..2", "new-pair")
            (mount / "..data_tmp").symlink_to("..2")
            os.replace(mount / "..data_tmp", mount / "..data")
            eventually(
                lambda: served_cn(http_port) == served_cn(grpc_port) == "new-pair",
                timeout=WITHIN,
                what=lambda: f"http {served_cn(http_port)}, grpc {served_cn(grpc_port)}",
            )
            assert kept.get(f"https://127.0.0.1:{http_port}/live").status_code == 200
        assert grpc_trusts(grpc_port, new_crt)
        assert not grpc_trusts(grpc_port, old_crt)
        # a key that does not belong to the certificate: refused, the new pair stays
        self_signed(mount / "..3", "other")
        (mount / "..3" / "tls.crt").write_bytes((mount / "..2" / "tls.crt").read_bytes())
        (mount / "..data_tmp").symlink_to("..3")
        os.replace(mount / "..data_tmp", mount / "..data")
        url = f"https://127.0.0.1:{http_port}"

        def failed() -> list[dict[str, object]]:
            checks = httpx.get(url + "/api/health", verify=False).json()["checks"]
            found: list[dict[str, object]] = checks.get("secret_reload:reloads", [])
            return [c for c in found if c["status"] == "fail"]

        check = eventually(failed, timeout=WITHIN)[0]
        assert "the key does not belong to the certificate" in str(check["output"])
        assert served_cn(http_port) == served_cn(grpc_port) == "new-pair"
        assert grpc_trusts(grpc_port, new_crt)
