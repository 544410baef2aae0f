"""`SecretReloader`: change detection by stat (tmp files, and a fake stat for what a real
filesystem does too fast to show), reloads through `ConfigFiles.reread`, bad files kept
out, SIGHUP's forced read, and a polling loop that survives errors. The gateway process itself
is tested in tests/integration/test_secret_reload.py."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, load
from gateway.config_files import ConfigFiles, Reloadable, TlsPair
from gateway.secret_reloader import FileStamp, SecretReloader, stamp


class Applied:
    """An `apply` that records what it was given (and raises `fail` if set)."""

    def __init__(self) -> None:
        self.calls: list[ConfigFiles] = []
        self.which: list[Reloadable] = []
        self.fail: Exception | None = None

    async def __call__(self, files: ConfigFiles, which: Reloadable) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(files)
        self.which.append(which)


def config_of(tmp: Path, **auth: Any) -> GatewayConfig:
    return load({"auth": {"enabled": True, "tokens_file": str(tmp / "tokens.yaml"), **auth}})


def reloader(config: GatewayConfig, **kw: Any) -> tuple[SecretReloader, Applied]:
    applied = Applied()
    return SecretReloader(config, ConfigFiles.read(config), applied, **kw), applied


def replace_file(path: Path, text: str) -> None:
    """Write beside and rename over: what a careful operator (and kubelet) does."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.replace(path)


# ------------------------------------------------------------------ change detection


def test_stamp_follows_symlinks_and_names_a_missing_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("one")
    b.write_text("two")
    link = tmp_path / "link"
    link.symlink_to(a)
    first = stamp(str(link))
    assert first == stamp(str(a)) and first.error == ""
    link.unlink()
    link.symlink_to(b)
    assert stamp(str(link)) != first
    assert stamp(str(tmp_path / "gone")) == FileStamp(error="No such file or directory")


def test_unchanged_files_are_not_read_again(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text("team-a: one\n")
    r, applied = reloader(config_of(tmp_path))
    for _ in range(3):
        asyncio.run(r.poll())
    assert applied.calls == [] and r.reloads == {"success": 0, "error": 0}


def test_a_file_renamed_over_is_read_and_applied(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("team-a: one\n")
    r, applied = reloader(config_of(tmp_path, tokens={"ops": "inline"}))
    replace_file(f, "team-a: [one, two]\nteam-b: three\n")
    asyncio.run(r.poll())
    assert r.reloads == {"success": 1, "error": 0}
    # the whole set, inline tokens included, as at start
    want = {"ops": ("inline",), "team-a": ("one", "two"), "team-b": ("three",)}
    assert [c.ingest_tokens for c in applied.calls] == [want]
    assert r.files.ingest_tokens == want
    asyncio.run(r.poll())
    assert len(applied.calls) == 1, "read again without a change"


def test_a_change_in_mtime_alone_is_seen(tmp_path: Path) -> None:
    """Same inode and size, a later mtime: an in-place rewrite of a same-length token."""
    f = tmp_path / "tokens.yaml"
    f.write_text("team-a: one\n")
    mtime = [f.stat().st_mtime_ns]

    def stat(path: str) -> os.stat_result:
        real = os.stat(path)
        fields = list(real)
        fields[8] = mtime[0] // 1_000_000_000  # st_mtime (int), for completeness
        return os.stat_result((*fields,), {"st_mtime_ns": mtime[0], "st_ctime_ns": 0})

    r, applied = reloader(config_of(tmp_path), stat=stat)
    f.write_text("team-a: two\n")  # same size; the fake stat keeps mtime (coarse clock)
    asyncio.run(r.poll())
    assert applied.calls == [], "nothing in the stamp changed"
    mtime[0] += 1_000_000  # one millisecond later
    asyncio.run(r.poll())
    assert [c.ingest_tokens for c in applied.calls] == [{"team-a": ("two",)}]


def test_a_kubernetes_secret_swap_is_seen(tmp_path: Path) -> None:
    """The kubelet's layout: tokens.yaml -> ..data/tokens.yaml, ..data -> ..<timestamp>;
    an update writes a new timestamped directory and renames a new `..data` link over."""
    mount = tmp_path / "secret"
    mount.mkdir()
    (mount / "..2026_01").mkdir()
    (mount / "..2026_01" / "tokens.yaml").write_text("team-a: one\n")
    (mount / "..data").symlink_to("..2026_01")
    (mount / "tokens.yaml").symlink_to("..data/tokens.yaml")
    config = load({"auth": {"enabled": True, "tokens_file": str(mount / "tokens.yaml")}})
    r, applied = reloader(config)
    (mount / "..2026_02").mkdir()
    (mount / "..2026_02" / "tokens.yaml").write_text("team-a: one\n")  # same content, size
    (mount / "..data_tmp").symlink_to("..2026_02")
    (mount / "..data_tmp").replace(mount / "..data")
    (mount / "..2026_01" / "tokens.yaml").unlink()
    (mount / "..2026_01").rmdir()
    asyncio.run(r.poll())
    assert r.reloads == {"success": 1, "error": 0}
    assert [c.ingest_tokens for c in applied.calls] == [{"team-a": ("one",)}]


# ------------------------------------------------------------------ bad files


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "must map tenant to token(s)"),
        ("{}\n", "no tenant in the file"),
        (": [", "while parsing"),
        ("team-a: ''\n", "team-a: tokens must be non-empty strings"),
        (None, "No such file or directory"),
    ],
)
def test_a_bad_file_keeps_the_tokens_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str | None, says: str
) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("team-a: one\n")
    r, applied = reloader(config_of(tmp_path))
    before = r.files
    if text is None:
        f.unlink()
    else:
        replace_file(f, text)
    with caplog.at_level(logging.ERROR, logger="gateway.secret_reloader"):
        for _ in range(3):
            asyncio.run(r.poll())
    assert applied.calls == [] and r.files is before
    assert r.reloads == {"success": 0, "error": 1}
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 1, "once per bad content, not once per poll"
    assert str(f) in errors[0].getMessage() and says in errors[0].getMessage()
    assert "auth.tokens_file" in errors[0].getMessage()
    assert says in r.problems["ingest"][0]
    replace_file(f, "team-a: two\n")
    asyncio.run(r.poll())
    assert r.problems == {} and r.reloads == {"success": 1, "error": 1}
    assert [c.ingest_tokens for c in applied.calls] == [{"team-a": ("two",)}]


def test_read_tokens_file_is_watched_apart(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text("team-a: one\n")
    read = tmp_path / "read-token"
    read.write_text("r1\n")
    r, applied = reloader(config_of(tmp_path, read_tokens=["inline"], read_tokens_file=str(read)))
    assert set(r.paths) == {"ingest", "read"}
    replace_file(read, "# comment only\n")
    asyncio.run(r.poll())
    assert r.reloads["error"] == 1 and "no token in the file" in r.problems["read"][0]
    replace_file(read, "r2\nr3\n")
    asyncio.run(r.poll())
    assert [c.read_tokens for c in applied.calls] == [("inline", "r2", "r3")]
    assert applied.calls[0].ingest_tokens == {"team-a": ("one",)}, "the other set is untouched"


def test_inline_tokens_only_watch_nothing() -> None:
    config = load({"auth": {"enabled": True, "tokens": {"a": "b"}, "read_tokens": ["r"]}})
    r, _ = reloader(config)
    assert not r.enabled and r.paths == {}
    r.request()  # SIGHUP with nothing to read: a log line, no task needed
    asyncio.run(r.start())
    assert r._task is None


def test_a_tokens_file_with_auth_off_is_not_watched(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text("team-a: one\n")
    r, _ = reloader(config_of(tmp_path, enabled=False))
    assert r.paths == {}


# ------------------------------------------------------------------ the task


def test_the_loop_polls_at_the_interval(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("team-a: one\n")
    r, applied = reloader(config_of(tmp_path, reload_interval_seconds=0.05))

    async def run() -> None:
        await r.start()
        replace_file(f, "team-a: two\n")
        for _ in range(100):
            if applied.calls:
                break
            await asyncio.sleep(0.02)
        await r.shutdown()
        await r.shutdown()  # twice is safe

    asyncio.run(run())
    assert [c.ingest_tokens for c in applied.calls] == [{"team-a": ("two",)}]


def test_with_the_interval_zero_only_a_request_reads(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("team-a: one\n")
    r, applied = reloader(config_of(tmp_path, reload_interval_seconds=0))

    async def run() -> None:
        await r.start()
        replace_file(f, "team-a: two\n")
        await asyncio.sleep(0.3)
        assert applied.calls == [], "polled with the interval off"
        r.request()
        for _ in range(100):
            if applied.calls:
                break
            await asyncio.sleep(0.02)
        r.request()  # forced: read again although nothing changed
        for _ in range(100):
            if len(applied.calls) == 2:
                break
            await asyncio.sleep(0.02)
        await r.shutdown()

    asyncio.run(run())
    assert [c.ingest_tokens for c in applied.calls] == [{"team-a": ("two",)}] * 2


def test_the_loop_survives_an_unexpected_error_and_says_so(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("team-a: one\n")
    fail = [True]

    def stat(path: str) -> os.stat_result:
        if fail[0]:
            raise RuntimeError("stat broke")
        return os.stat(path)

    config = config_of(tmp_path, reload_interval_seconds=0.02)
    applied = Applied()
    r = SecretReloader(config, ConfigFiles.read(config), applied)
    r._stat = stat  # start stamped the real file; now every poll fails

    async def run() -> None:
        await r.start()
        for _ in range(100):
            if r.errors >= 2:
                break
            await asyncio.sleep(0.02)
        assert r.errors >= 2 and r.error == "RuntimeError: stat broke"
        fail[0] = False
        replace_file(f, "team-a: two\n")
        for _ in range(100):
            if applied.calls:
                break
            await asyncio.sleep(0.02)
        assert r.error is None
        await r.shutdown()

    asyncio.run(run())
    assert [c.ingest_tokens for c in applied.calls] == [{"team-a": ("two",)}]


def test_an_apply_that_fails_is_a_failed_reload(tmp_path: Path) -> None:
    """A listener that cannot take what checked out (the TLS pair changed again between the
    check and the HTTP listener's own read) keeps what it had, as a bad file does."""
    f = tmp_path / "tokens.yaml"
    f.write_text("team-a: one\n")
    r, applied = reloader(config_of(tmp_path))
    before = r.files
    applied.fail = ValueError("no good")
    replace_file(f, "team-a: two\n")
    asyncio.run(r.poll())
    assert r.reloads == {"success": 0, "error": 1} and r.files is before
    assert r.problems["ingest"] == [f"auth.tokens_file: {f}: cannot be used: no good"]


def test_the_tls_pair_is_watched_as_one(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    config = load({"tls": {"cert_file": str(cert), "key_file": str(key)}})
    # values given directly: what `ConfigFiles.read` would have checked (real pairs are in
    # tests/integration/test_secret_reload.py)
    files = ConfigFiles(tls=TlsPair(key=b"key", cert=b"cert"))
    applied = Applied()
    r = SecretReloader(config, files, applied)
    assert r.paths == {"tls": (str(cert), str(key))}
    replace_file(key, "another key")
    asyncio.run(r.poll())
    # not a usable PEM pair: refused with the start's own message, nothing applied
    assert applied.calls == [] and r.reloads["error"] == 1
    assert (
        "tls.cert_file / tls.key_file: not a usable PEM certificate and key"
        in (r.problems["tls"][0])
    )
    asyncio.run(r.poll())
    assert r.reloads["error"] == 1, "the same bad pair is not read again"
