"""`ConfigFiles`: the files a config names, read once by the config layer, every problem at once;
and a `Gateway` built from the values, doing no file IO for them.

The TLS tests make real key pairs with the `openssl` CLI (a subprocess: marked integration).
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import ConfigError, load
from gateway.config_files import ConfigFiles, TlsPair
from gateway.receivers.auth import TokenAuth
from tests.support.gateway_client import PB
from tests.support.otlp import Req


def files_of(raw: dict[str, Any]) -> ConfigFiles:
    return ConfigFiles.read(load(raw))


def problems_of(raw: dict[str, Any]) -> list[str]:
    return ConfigFiles.problems(load(raw))


# ------------------------------------------------------------------ ingest tokens


def test_tokens_file_with_rotation_and_config_tokens(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("team-a: old-token\nteam-b: [b-one, b-two]\n")
    files = files_of(
        {"auth": {"enabled": True, "tokens": {"team-a": "new"}, "tokens_file": str(f)}}
    )
    assert files.ingest_tokens == {"team-a": ("new", "old-token"), "team-b": ("b-one", "b-two")}
    auth = TokenAuth(files.ingest_tokens)
    assert auth.tenant("Bearer old-token") == auth.tenant("Bearer new") == "team-a"
    assert auth.tenant("Bearer b-two") == "team-b"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("- just\n- a list\n", "must map tenant to token(s)"),
        ("team: ''\n", "team: tokens must be non-empty strings"),
        ("team: [1, 2]\n", "team: tokens must be non-empty strings"),
        ("team: []\n", "team: tokens must be non-empty strings"),
        (": [", "while parsing"),
        ("", "must map tenant to token(s)"),
        ("{}\n", "no tenant in the file"),
    ],
)
def test_a_bad_tokens_file_is_named_with_what_is_wrong(
    tmp_path: Path, text: str, says: str
) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text(text)
    problems = problems_of({"auth": {"enabled": True, "tokens_file": str(f)}})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"auth.tokens_file: {f}: ")
    assert says in problems[0]


def test_every_bad_tenant_in_a_tokens_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("good: fine\nempty: ''\nnumbers: [1]\n")
    problems = problems_of({"auth": {"enabled": True, "tokens_file": str(f)}})
    assert [p.split(": ")[2] for p in problems] == ["empty", "numbers"]


def test_a_missing_tokens_file() -> None:
    with pytest.raises(ConfigError) as info:
        files_of({"auth": {"enabled": True, "tokens_file": "/nonexistent/tokens.yaml"}})
    assert info.value.errors == [
        "auth.tokens_file: /nonexistent/tokens.yaml: No such file or directory"
    ]


def test_ingest_auth_off_unless_enabled() -> None:
    assert files_of({}).ingest_tokens is None
    # Off: the tokens file is not read (as before this module), so its absence is no problem.
    assert files_of({"auth": {"tokens_file": "/nonexistent/tokens.yaml"}}).ingest_tokens is None


# ------------------------------------------------------------------ read tokens


def test_read_tokens_from_the_config_and_the_file(tmp_path: Path) -> None:
    f = tmp_path / "read-tokens"
    f.write_text("# for Prometheus\n\n  scrape-token  \n# old\nbrowser-token\n")
    files = files_of({"auth": {"read_tokens": [" env-token "], "read_tokens_file": str(f)}})
    assert files.read_tokens == ("env-token", "scrape-token", "browser-token")


def test_an_empty_read_token_file_is_a_problem_not_open_reads(tmp_path: Path) -> None:
    f = tmp_path / "read-tokens"
    f.write_text("# nothing but a comment\n\n")
    assert problems_of({"auth": {"read_tokens_file": str(f)}}) == [
        f"auth.read_tokens_file: {f}: no token in the file"
    ]


def test_a_missing_or_undecodable_read_token_file(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00token\n")
    for path, says in [(tmp_path / "absent", "No such file"), (binary, "can't decode")]:
        problems = problems_of({"auth": {"read_tokens_file": str(path)}})
        assert len(problems) == 1 and problems[0].startswith(f"auth.read_tokens_file: {path}: ")
        assert says in problems[0]


# ------------------------------------------------------------------ queue path, all at once


def test_a_disk_queue_path_that_is_a_directory(tmp_path: Path) -> None:
    assert problems_of({"queue": {"kind": "disk", "path": str(tmp_path)}}) == [
        f"queue.path: {str(tmp_path)!r} is a directory, not a file"
    ]
    assert problems_of({"queue": {"kind": "disk", "path": str(tmp_path / "q.db")}}) == []


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    empty = tmp_path / "read-tokens"
    empty.write_text("\n")
    config = load(
        {
            "tls": {"cert_file": str(tmp_path / "no.crt"), "key_file": str(tmp_path / "no.key")},
            "auth": {
                "enabled": True,
                "tokens_file": str(tmp_path / "no-tokens.yaml"),
                "read_tokens_file": str(empty),
            },
            "queue": {"kind": "disk", "path": str(tmp_path)},
        }
    )
    with pytest.raises(ConfigError) as info:
        ConfigFiles.read(config, source="gateway.yaml")
    keys = [e.split(":")[0] for e in info.value.errors]
    assert keys == [
        "tls.cert_file",
        "tls.key_file",
        "auth.tokens_file",
        "auth.read_tokens_file",
        "queue.path",
    ]
    assert info.value.lines == [f"gateway.yaml: {e}" for e in info.value.errors]
    assert ConfigFiles.problems(config) == info.value.errors


def test_the_result_is_frozen() -> None:
    files = ConfigFiles(ingest_tokens={"t": ["a"]}, read_tokens=["r"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        files.read_tokens = ()  # type: ignore[misc]
    assert files.ingest_tokens is not None
    with pytest.raises(TypeError):
        files.ingest_tokens["u"] = ("b",)  # type: ignore[index]
    assert files.ingest_tokens == {"t": ("a",)} and files.read_tokens == ("r",)


# ------------------------------------------------------------------ TLS (real keys, openssl)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _pair(directory: Path, name: str) -> tuple[Path, Path]:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "1", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("tls-pairs")
    made = {name: _pair(directory, name) for name in ("one", "two")}
    _openssl(
        "pkey", "-in", "one.key", "-aes256", "-passout", "pass:secret", "-out", "locked.key",
        cwd=directory,
    )  # fmt: skip
    made["locked"] = (made["one"][0], directory / "locked.key")
    return made


def tls_problems(cert: Path, key: Path) -> list[str]:
    return problems_of({"tls": {"cert_file": str(cert), "key_file": str(key)}})


@pytest.mark.integration
def test_a_matching_pair_is_read_once_into_bytes(pairs: dict[str, tuple[Path, Path]]) -> None:
    cert, key = pairs["one"]
    files = files_of({"tls": {"cert_file": str(cert), "key_file": str(key)}})
    assert files.tls == TlsPair(key=key.read_bytes(), cert=cert.read_bytes())
    assert files_of({}).tls is None


@pytest.mark.integration
def test_a_mismatched_pair_is_named(pairs: dict[str, tuple[Path, Path]]) -> None:
    assert tls_problems(pairs["one"][0], pairs["two"][1]) == [
        "tls.cert_file / tls.key_file: not a usable PEM certificate and key "
        "(the key does not belong to the certificate)"
    ]


@pytest.mark.integration
def test_key_and_cert_swapped_is_named(pairs: dict[str, tuple[Path, Path]]) -> None:
    cert, key = pairs["one"]
    assert tls_problems(key, cert) == [
        "tls.cert_file / tls.key_file: swapped? tls.cert_file holds a private key and "
        "tls.key_file does not"
    ]


@pytest.mark.integration
def test_an_encrypted_key_is_refused_without_a_password_prompt(
    pairs: dict[str, tuple[Path, Path]],
) -> None:
    assert tls_problems(*pairs["locked"]) == [
        "tls.cert_file / tls.key_file: not a usable PEM certificate and key (the key is encrypted)"
    ]


def test_a_file_that_is_no_pem_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.crt").write_text("-----BEGIN CERTIFICATE-----\nnot really\n")
    (tmp_path / "bad.key").write_text("nope\n")
    problems = tls_problems(tmp_path / "bad.crt", tmp_path / "bad.key")
    assert len(problems) == 1
    assert problems[0].startswith("tls.cert_file / tls.key_file: not a usable PEM")


def test_a_missing_key_and_certificate_are_both_named(tmp_path: Path) -> None:
    assert tls_problems(tmp_path / "no.crt", tmp_path / "no.key") == [
        f"tls.cert_file: {tmp_path / 'no.crt'}: No such file or directory",
        f"tls.key_file: {tmp_path / 'no.key'}: No such file or directory",
    ]


# ------------------------------------------------------------------ the Gateway reads no file


def test_the_gateway_is_built_from_the_values_without_reading_the_files(tmp_path: Path) -> None:
    """Every file the config names is absent: building the gateway works, and the values in
    `ConfigFiles` are what it enforces (ingest and read tokens, over in-process HTTP)."""
    absent = tmp_path / "absent"
    config = load(
        {
            "server": {"grpc_port": 0},
            "observers": {"enabled": False},
            "tls": {"cert_file": str(absent / "tls.crt"), "key_file": str(absent / "tls.key")},
            "auth": {
                "enabled": True,
                "tokens_file": str(absent / "tokens.yaml"),
                "read_tokens_file": str(absent / "read-tokens"),
            },
        }
    )
    assert len(ConfigFiles.problems(config)) == 4, "the config does name absent files"
    files = ConfigFiles(ingest_tokens={"team": ["ingest-token"]}, read_tokens=["read-token"])
    gateway = Gateway(config, files)
    body = Req(service="svc").sum("c", [({"i": 1}, 1.0, 0, 1)]).bytes()

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=gateway.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            answers = [
                await client.post("/v1/metrics", content=body, headers=PB),
                await client.post(
                    "/v1/metrics",
                    content=body,
                    headers={**PB, "Authorization": "Bearer ingest-token"},
                ),
                await client.get("/metrics"),
                await client.get("/metrics", headers={"Authorization": "Bearer read-token"}),
            ]
        return [a.status_code for a in answers]

    assert asyncio.run(calls()) == [401, 200, 401, 200]
