"""`SecretReloader`: re-reads `auth.tokens_file` and `auth.read_tokens_file` when they change.

Operators rotate secrets without a restart: Kubernetes updates a mounted Secret in place by
swapping the `..data` symlink to a new directory, and a file written elsewhere and renamed over
the old one is the usual way by hand. Either way the path's target changes, so a background task
compares each file's `os.stat` (which follows symlinks) every `auth.reload_interval_seconds`:
device, inode, size, mtime and ctime. A difference, or SIGHUP (`request`), reads the file again
in a thread through `ConfigFiles.reread_tokens`, the code that read it at start, so a reload
checks exactly what start checks:

    10:00:00  stat (dev 8, ino 41, 120 bytes)   the file as read at start
    10:00:10  stat (dev 8, ino 41, 120 bytes)   same: nothing read
    10:00:14  kubelet swaps ..data -> ..2026_11_30_10_00_14.123
    10:00:20  stat (dev 8, ino 77, 121 bytes)   changed: read, check, swap in one assignment

A file that checks out replaces the whole set (inline `auth.tokens` / `auth.read_tokens`
included, as at start) through `apply`; one that does not (unreadable, empty, malformed) keeps
the tokens in use, logs one ERROR naming the file and the problem, and stays the last result
until a later change reads well. A stat costs nothing new on a file that keeps failing, so the
ERROR is logged once per bad content, not once per poll. Results are counted by `reloads`
(`gateway.config.reloads{result}`); an unexpected error in the task itself is counted in
`errors` and logged, and the task goes on.

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
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.config_files import TOKEN_FILE_KEYS, ConfigFiles, TokenFile

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
    """A `Component`; `apply(files)` is called on the event loop with the values after every
    reload that changed one of the sets."""

    def __init__(
        self,
        config: GatewayConfig,
        files: ConfigFiles,
        apply: Callable[[ConfigFiles], None],
        *,
        stat: Callable[[str], os.stat_result] = os.stat,
    ) -> None:
        self._config = config
        self._apply = apply
        self._stat = stat
        self._interval = config.auth.reload_interval_seconds
        #: the values in use
        self.files = files
        #: the files watched, by which set they hold: the ingest file only while ingest auth
        #: is on, the read file whenever it is set (start refused an empty one)
        self.paths: dict[TokenFile, str] = {}
        if config.auth.tokens_file and files.ingest_tokens is not None:
            self.paths["ingest"] = config.auth.tokens_file
        if config.auth.read_tokens_file:
            self.paths["read"] = config.auth.read_tokens_file
        # Stamped now, just after `ConfigFiles.read` read them: a change in between is missed
        # until the next one (or SIGHUP).
        self._stamps = {which: stamp(path, stat) for which, path in self.paths.items()}
        #: reloads by result, "success" or "error"
        self.reloads = {"success": 0, "error": 0}
        #: the problems of the last reload of each file that failed (cleared by a good one)
        self.problems: dict[TokenFile, list[str]] = {}
        #: unexpected errors the task survived, and the last one
        self.errors = 0
        self.error: str | None = None
        self._wake = asyncio.Event()
        self._forced = False
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether any file is watched (inline tokens never change at run time)."""
        return bool(self.paths)

    def request(self) -> None:
        """Read every watched file now, changed or not (SIGHUP)."""
        if not self.paths:
            log.info("SIGHUP: no token file to reload (auth.tokens_file, auth.read_tokens_file)")
            return
        log.info("SIGHUP: reloading %s", ", ".join(TOKEN_FILE_KEYS[w] for w in self.paths))
        self._forced = True
        self._wake.set()

    async def poll(self, *, force: bool = False) -> None:
        """Stat each watched file; read again those that changed (all of them with `force`)."""
        for which, path in self.paths.items():
            now = stamp(path, self._stat)
            if not force and now == self._stamps[which]:
                continue
            self._stamps[which] = now
            await self._reload(which, path)

    async def _reload(self, which: TokenFile, path: str) -> None:
        key = TOKEN_FILE_KEYS[which]
        files, problems = await asyncio.to_thread(self.files.reread_tokens, self._config, which)
        if problems:
            self.reloads["error"] += 1
            self.problems[which] = problems
            said = "; ".join(problems)
            if path not in said:  # the problems name the file; say which one if not
                said = f"{key}: {path}: {said}"
            log.error("token reload failed, the tokens in use stay: %s", said)
            return
        self.reloads["success"] += 1
        self.problems.pop(which, None)
        self._apply(files)
        self.files = files
        count = (
            sum(len(t) for t in files.ingest_tokens.values())
            if which == "ingest" and files.ingest_tokens is not None
            else len(files.read_tokens)
        )
        log.info("%s: %s: reloaded, %d token(s) in use", key, path, count)

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
                log.exception("token reload: unexpected error (the tokens in use stay)")
            else:
                self.error = None

    async def start(self) -> None:
        if self._task is None and self.paths:
            self._task = asyncio.create_task(self._run(), name="secret-reloader")

    async def shutdown(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
