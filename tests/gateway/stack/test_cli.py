"""`stack` options: --dir before or after the sub-command, and the stack last started found
through the per-user pointer (issue 19, item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.stack.cli import DEFAULT_DIR, _remember, pointer_file, stack_dir


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["stack", "up", "--dir", "after"], Path("after")),
        (["stack", "--dir", "before", "status"], Path("before")),
        (["stack", "--dir", "before", "stop", "--dir", "after"], Path("after")),
        (["stack", "logs"], None),
    ],
)
def test_dir_before_or_after_the_subcommand(argv: list[str], expected: Path | None) -> None:
    assert build_parser().parse_args(argv).dir == expected


def test_the_stack_last_started_is_found_while_its_state_is_there(tmp_path: Path) -> None:
    environ = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    assert stack_dir(None, environ) == DEFAULT_DIR  # nothing remembered
    running = tmp_path / "somewhere" / ".stack"
    running.mkdir(parents=True)
    _remember(running, environ)
    assert pointer_file(environ) == tmp_path / "state" / "telemetry-gateway" / "stack-dir"
    assert stack_dir(None, environ) == DEFAULT_DIR  # no stack.json: not a stack (yet)
    (running / "stack.json").write_text("{}")
    assert stack_dir(None, environ) == running
    assert stack_dir(tmp_path / "other", environ) == tmp_path / "other"  # --dir wins
    assert pointer_file({"HOME": str(tmp_path)}) == (
        tmp_path / ".local" / "state" / "telemetry-gateway" / "stack-dir"
    )
