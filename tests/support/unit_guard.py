"""A pytest plugin for `make unit`: a test that is not marked `integration` must start no server
and no subprocess and connect to nothing. Any attempt fails the test with what it tried, so a
test that needs a real server is marked and leaves the fast set, instead of slowing it down.

Loaded with `pytest -p tests.support.unit_guard`; the full suite runs without it.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["UnitTestStartedSomething"]


class UnitTestStartedSomething(AssertionError):
    pass


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise UnitTestStartedSomething(
            f"a unit test {what}: mark it `integration` (pytestmark = pytest.mark.integration) "
            "or give it an in-process stand-in"
        )

    return refuse


@pytest.fixture(autouse=True)
def _no_servers_no_subprocesses(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "listen", _refuse("listened on a socket (a server)"))
        mp.setattr(socket.socket, "connect", _refuse("connected to a server"))
        mp.setattr(socket.socket, "connect_ex", _refuse("connected to a server"))
        mp.setattr(subprocess.Popen, "__init__", _refuse("started a subprocess"))
        yield
