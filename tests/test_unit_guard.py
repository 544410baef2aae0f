"""`make unit`'s guard (tests/support/unit_guard.py) really stops an unmarked test from starting
a server or a subprocess. Runs only where the guard is loaded, that is under `make unit`."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.unit_guard import UnitTestStartedSomething


@pytest.fixture
def guarded(request: pytest.FixtureRequest) -> None:
    if not request.config.pluginmanager.has_plugin("tests.support.unit_guard"):
        pytest.skip("the guard is loaded by `make unit` only")


def test_listening_connecting_and_spawning_are_refused(guarded: None) -> None:
    with socket.socket() as s, pytest.raises(UnitTestStartedSomething, match="listened"):
        s.listen()
    with socket.socket() as s, pytest.raises(UnitTestStartedSomething, match="connected"):
        s.connect(("127.0.0.1", 9))
    with pytest.raises(UnitTestStartedSomething, match="subprocess"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)


@pytest.mark.integration
def test_an_integration_test_may(guarded: None) -> None:
    out = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True)
    assert out.stdout == b"1\n"
