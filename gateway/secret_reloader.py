"""`SecretReloader`: re-reads `auth.tokens_file`, `auth.read_tokens_file` and the TLS pair
(`tls.cert_file`, `tls.key_file`) when they change.

Operators rotate secrets without a restart: Kubernetes updates a mounted Secret in place by
swapping the `..data` symlink to a new directory, and a file written elsewhere and renamed over
the old one is the usual way by hand. Either way the path's target changes, so a background task
compares each file's `os.stat` (which follows symlinks) every `auth.reload_interval_seconds`:
device, inode, size, mtime and ctime. A difference, or SIGHUP (`request`), reads the file (for
TLS, both files) again in a thread through `ConfigFiles.reread`, the code that read it at
start, so a reload checks exactly what start checks:

    10:00:00  stat (dev 8, ino 41, 120 bytes)   the file as read at start
    10:00:10  stat (dev 8, ino 41, 120 bytes)   same: nothing read
    10:00:14  kubelet swaps ..data -> ..2026_11_30_10_00_14.123
    10:00:20  stat (dev 8, ino 77, 121 bytes)   changed: read, check, swap in one assignment

What checks out is handed to `apply` (a whole token set, inline `auth.tokens` /
`auth.read_tokens` included as at start, or the new TLS pair); what does not (unreadable,
empty, malformed, a key that does not fit the certificate) keeps what is in use, logs one ERROR
naming the file and the problem, and stays the last result until a later change reads well. A
stat costs nothing new on a file that keeps failing, so the ERROR is logged once per bad
content, not once per poll. Results are counted by `reloads` (`gateway.config.reloads{result}`);
an unexpected error in the task itself is counted in `errors` and logged, and the task goes on.

Stdlib `os.stat` polling rather than inotify (watchfiles, watchdog): inotify on a path inside a
Secret volume sees the `..data` swap only as events on the parent directory, the
libraries' own reload logic differs per platform, and one stat per file per interval costs
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.config_files import RELOADABLE_KEYS, ConfigFiles, Reloadable
from gateway.pipeline.lifecycle import cancel

__all__ = ["FileStamp", "SecretReloader", "stamp"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What `os.stat` says of a file, or why it cannot (`error`): two differ when it changed."""

    device: int = 0
    inode: int = 0
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    error: str = ""


def stamp(path: str, stat: Callable[[str], os.stat_result] = os.stat) -> FileStamp:
    """The file's `FileStamp`, following symlinks (a Secret's `..data` swap changes the inode)."""
    try:
        st = stat(path)
    except OSError as exc:
        return FileStamp(error=exc.strerror or str(exc))
    return FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class SecretReloader:
    """A `Component`. `apply(files, which)` is awaited on the event loop with the values after
    every reload that checked out; it may raise `OSError`, `ValueError` or `ssl.SSLError` (a
    listener that cannot take the new pair), which counts as a failed reload."""

    def __init__(
        self,
        config: GatewayConfig,
        files: ConfigFiles,
        apply: Callable[[ConfigFiles, Reloadable], Awaitable[None]],
        *,
        stat: Callable[[str], os.stat_result] = os.stat,
    ) -> None:
        self._config = config
        self._apply = apply
        self._stat = stat
        self._interval = config.auth.reload_interval_seconds
        #: the values in use
        self.files = files
        #: the files watched, by what they hold: the ingest file only while ingest auth is on,
        #: the read file whenever it is set (start refused an empty one), the TLS pair when on
        self.paths: dict[Reloadable, tuple[str, ...]] = {}
        if config.auth.tokens_file and files.ingest_tokens is not None:
            self.paths["ingest"] = (config.auth.tokens_file,)
        if config.auth.read_tokens_file:
            self.paths["read"] = (config.auth.read_tokens_file,)
        if files.tls is not None:
            self.paths["tls"] = (config.tls.cert_file, config.tls.key_file)
        # Stamped now, just after `ConfigFiles.read` read them: a change in between is missed
        # until the next one (or SIGHUP).
        self._stamps = {which: self._stamp(paths) for which, paths in self.paths.items()}
        #: reloads by result, "success" or "error"
        self.reloads = {"success": 0, "error": 0}
        #: the problems of the last reload of each part that failed (cleared by a good one)
        self.problems: dict[Reloadable, list[str]] = {}
        #: unexpected errors the task survived, and the last one
        self.errors = 0
        self.error: str | None = None
        self._wake = asyncio.Event()
        self._forced = False
        self._task: asyncio.Task[None] | None = None

    def _stamp(self, paths: tuple[str, ...]) -> tuple[FileStamp, ...]:
        return tuple(stamp(path, self._stat) for path in paths)

    @property
    def enabled(self) -> bool:
        """Whether anything is watched (inline tokens never change at run time)."""
        return bool(self.paths)

    def request(self) -> None:
        """Read everything watched now, changed or not (SIGHUP)."""
        if not self.paths:
            log.info("SIGHUP: nothing to reload (no token file, no TLS)")
            return
        log.info("SIGHUP: reloading %s", ", ".join(RELOADABLE_KEYS[w] for w in self.paths))
        self._forced = True
        self._wake.set()

    async def poll(self, *, force: bool = False) -> None:
        """Stat each watched file; read again what changed (everything with `force`)."""
        for which, paths in self.paths.items():
            now = self._stamp(paths)
            if not force and now == self._stamps[which]:
                continue
            self._stamps[which] = now
            await self._reload(which, paths)

    async def _reload(self, which: Reloadable, paths: tuple[str, ...]) -> None:
        key = RELOADABLE_KEYS[which]
        files, problems = await asyncio.to_thread(self.files.reread, self._config, which)
        if not problems:
            try:
                await self._apply(files, which)
            except (OSError, ValueError, ssl.SSLError) as exc:
                problems = [f"{key}: {', '.join(paths)}: cannot be used: {exc}"]
        if problems:
            self.reloads["error"] += 1
            self.problems[which] = problems
            said = "; ".join(problems)
            if paths[0] not in said:  # the problems name the file; say which one if not
                said = f"{key}: {', '.join(paths)}: {said}"
            log.error("reload failed, what is in use stays: %s", said)
            return
        self.reloads["success"] += 1
        self.problems.pop(which, None)
        self.files = files
        log.info("%s: %s: reloaded (%s)", key, ", ".join(paths), _what(files, which))

    async def _wait(self) -> None:
        if self._interval > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
        else:
            await self._wake.wait()
        self._wake.clear()

    async def _run(self) -> None:
        """Poll forever. Any error is counted and logged and the loop goes on: a task that
        died would leave the tokens frozen while health said pass."""
        while True:
            await self._wait()
            force, self._forced = self._forced, False
            try:
                await self.poll(force=force)
            except Exception as exc:
                self.errors += 1
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("secret reload: unexpected error (what is in use stays)")
            else:
                self.error = None

    async def start(self) -> None:
        if self._task is None and self.paths:
            self._task = asyncio.create_task(self._run(), name="secret-reloader")

    async def shutdown(self) -> None:
        task, self._task = self._task, None
        await cancel(task)


def _what(files: ConfigFiles, which: Reloadable) -> str:
    if which == "ingest" and files.ingest_tokens is not None:
        return f"{sum(len(t) for t in files.ingest_tokens.values())} token(s) in use"
    if which == "read":
        return f"{len(files.read_tokens)} token(s) in use"
    return "new TLS handshakes use the new pair"
