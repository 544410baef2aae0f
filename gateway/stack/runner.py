"""`Stack`: the commands (`up`, `status`, `stop`, `logs`) over the stack's state file.

`up` starts what is not running yet, in `ORDER`, and waits for each component's health before
the next; if a required component fails it says which and why (with the end of its log) and
stops what this `up` started. The optional demo is reported and skipped instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from gateway.stack.components import (
    ORDER,
    Component,
    StackError,
    StackSettings,
    build_components,
    write_prometheus_config,
)
from gateway.stack.processes import (
    ProcessRecord,
    follow,
    health,
    is_alive,
    port_free,
    spawn,
    stop_process,
    tail,
)

__all__ = ["Stack"]

_LOG_LINES_ON_FAILURE = 15


@dataclass
class _State:
    settings: StackSettings
    running: dict[str, ProcessRecord] = field(default_factory=dict)
    #: optional components left out, and why
    skipped: dict[str, str] = field(default_factory=dict)


class Stack:
    """The local stack in `settings.directory`. `environ` is the environment the components
    inherit (the CLI passes `os.environ`)."""

    def __init__(self, settings: StackSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = dict(environ)
        self.dir = settings.directory
        self.log_dir = self.dir / "logs"
        self.run_dir = self.dir / "run"

    # ------------------------------------------------------------------ state

    @property
    def _state_file(self) -> Path:
        return self.dir / "stack.json"

    def load_state(self) -> _State | None:
        if not self._state_file.exists():
            return None
        try:
            data = json.loads(self._state_file.read_text())
            return _State(
                settings=StackSettings.from_json(data["settings"]),
                running={k: ProcessRecord(**v) for k, v in data["running"].items()},
                skipped=dict(data.get("skipped", {})),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(
                f"{self._state_file} is unreadable ({exc}); stop any stack processes by hand "
                "(pids in run/*.pid) and delete the file"
            ) from None

    def _save_state(self, state: _State) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {
            "settings": state.settings.to_json(),
            "running": {k: asdict(v) for k, v in state.running.items()},
            "skipped": state.skipped,
        }
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self._state_file)

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    # ------------------------------------------------------------------ commands

    def up(self, out: IO[str]) -> int:
        """Start what is not running and wait until each is healthy. Returns the exit code."""
        old = self.load_state()
        state = _State(self.settings)
        if old is not None:
            state.running = {k: r for k, r in old.running.items() if is_alive(r)}
            if state.running and old.settings.to_json() != self.settings.to_json():
                raise StackError(
                    "the stack is running with other settings: `telemetry-gateway stack stop` "
                    "first, or `stack restart` with the new flags"
                )
        for path in (self.log_dir, self.run_dir, self.dir / "alertmanager"):
            path.mkdir(parents=True, exist_ok=True)
        components = build_components(self.settings, self.environ)
        write_prometheus_config(self.settings)
        started: list[str] = []
        for component in components:
            name = component.name
            if name in state.running:
                out.write(f"{name:<14} already running (pid {state.running[name].pid})\n")
                continue
            error = self._start(component, state)
            if error is None:
                started.append(name)
                out.write(f"{name:<14} healthy   {component.url}\n")
            elif component.optional:
                state.skipped[name] = error
                out.write(f"{name:<14} skipped (optional): {error}\n")
            else:
                out.write(f"{name:<14} FAILED: {error}\n")
                for done in reversed(started):
                    self._stop_one(done, state.running.pop(done), out)
                self._save_state(state)
                out.write("stopped the components this run had started\n")
                return 1
            self._save_state(state)
            out.flush()
        out.write("\n")
        return self.status(out)

    def _start(self, component: Component, state: _State) -> str | None:
        """Start one component and wait for it; None when healthy, else what went wrong."""
        if not port_free(component.port):
            return (
                f"port {component.port} is in use by another process; pass "
                f"--{component.name}-port to use another one"
            )
        log = self.log_dir / f"{component.name}.log"
        try:
            proc, record = spawn(component, log, self.environ, self.dir)
        except OSError as exc:
            return f"cannot run {component.argv[0]}: {exc}"
        state.running[component.name] = record
        self._pid_file(component.name).write_text(f"{record.pid}\n")
        deadline = time.monotonic() + self.settings.timeout_s
        why = "not answering"
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                del state.running[component.name]
                self._pid_file(component.name).unlink(missing_ok=True)
                return (
                    f"exited with code {code}; last lines of {log}:\n"
                    f"{tail(log, _LOG_LINES_ON_FAILURE)}"
                )
            ok, why = health(component.health_url)
            if ok:
                return None
            time.sleep(0.2)
        self._stop_one(component.name, state.running.pop(component.name), None)
        return (
            f"not healthy after {self.settings.timeout_s:.0f}s ({why} at "
            f"{component.health_url}); last lines of {log}:\n{tail(log, _LOG_LINES_ON_FAILURE)}"
        )

    def status(self, out: IO[str]) -> int:
        """Print component, pid, health and URL; 0 when every required component is healthy,
        3 otherwise (as `systemctl status`)."""
        state = self.load_state()
        if state is None:
            out.write(f"the stack has not been started here ({self.dir})\n")
            return 3
        rows = [("COMPONENT", "PID", "HEALTH", "URL")]
        all_ok = True
        # Start order, as `up` recorded it (replicas and Collectors included), then what
        # was skipped.
        names = list(state.running) + [n for n in state.skipped if n not in state.running]
        for name in names:
            record = state.running.get(name)
            if record is None:
                if name in state.skipped:
                    rows.append((name, "-", "skipped (optional)", "-"))
                continue
            if not is_alive(record):
                rows.append((name, str(record.pid), "down", record.url))
                all_ok = all_ok and record.optional
                continue
            ok, shown = health(record.health_url)
            rows.append((name, str(record.pid), shown, record.url))
            all_ok = all_ok and (ok or record.optional)
        if len(rows) == 1:
            out.write("no component is running\n")
            return 3
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            out.write("\n")
        for name, why in state.skipped.items():
            out.write(f"\n{name} was skipped: {why.splitlines()[0]}\n")
        return 0 if all_ok else 3

    def stop(self, out: IO[str]) -> int:
        """Stop every component `up` started, in reverse start order."""
        state = self.load_state()
        if state is None or not state.running:
            out.write("nothing to stop\n")
            return 0
        for name in reversed(list(state.running)):
            record = state.running.pop(name, None)
            if record is not None:
                self._stop_one(name, record, out)
                self._save_state(state)
        state.skipped.clear()
        self._save_state(state)
        return 0

    def _stop_one(self, name: str, record: ProcessRecord, out: IO[str] | None) -> None:
        outcome = stop_process(record)
        self._pid_file(name).unlink(missing_ok=True)
        if out is not None:
            out.write(f"{name:<14} {outcome}\n")

    def logs(self, out: IO[str], component: str | None, lines: int, keep_following: bool) -> int:
        """Print the last `lines` of each log (or one component's); then follow them."""
        known = sorted(
            (p.stem for p in self.log_dir.glob("*.log")),
            key=lambda n: (ORDER.index(n.split("-")[0]) if n.split("-")[0] in ORDER else 99, n),
        )
        names = [component] if component else known
        paths = [(n, self.log_dir / f"{n}.log") for n in names]
        paths = [(n, p) for n, p in paths if p.exists()]
        if not paths:
            out.write(f"no logs in {self.log_dir}\n")
            return 1
        for name, path in paths:
            out.write(f"==> {name} ({path}) <==\n{tail(path, lines)}\n")
        out.flush()
        if keep_following:
            follow(paths, out)
        return 0
