"""The component lifecycle: start in order, stop in reverse within one deadline, a failing
component neither keeps the others from stopping nor leaves started ones running."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.pipeline.lifecycle import Graceful, Lifecycle, Timed, Untimed


class Recorder:
    def __init__(self, name: str, log: list[str], *, fail_start: bool = False) -> None:
        self.name, self.log, self.fail_start = name, log, fail_start
        self.graces: list[float] = []

    async def start(self) -> None:
        if self.fail_start:
            raise OSError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def shutdown(self, grace_seconds: float = 5.0) -> None:
        self.graces.append(grace_seconds)
        self.log.append(f"stop {self.name}")


class Plain:
    def __init__(self, name: str, log: list[str], *, fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_stop = name, log, fail_stop

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def shutdown(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("boom")


def test_starts_in_order_and_stops_in_reverse_within_the_deadline_shares() -> None:
    log: list[str] = []
    forwarder, receiver = Recorder("forwarder", log), Recorder("receiver", log)
    stages: list[Timed] = [
        Untimed(Plain("memory", log)),
        Graceful(forwarder, margin=1.0),
        Graceful(receiver, share=0.25),
        Untimed(Plain("observer", log)),
    ]
    lifecycle = Lifecycle(stages)

    async def run() -> None:
        await lifecycle.start()
        await lifecycle.shutdown(time.monotonic() + 8.0)
        await lifecycle.shutdown(time.monotonic() + 8.0)  # twice: nothing more happens

    asyncio.run(run())
    assert log == [
        "start memory", "start forwarder", "start receiver", "start observer",
        "stop observer", "stop receiver", "stop forwarder", "stop memory",
    ]  # fmt: skip
    assert receiver.graces[0] == pytest.approx(2.0, abs=0.1)  # a quarter of 8 s
    assert forwarder.graces[0] == pytest.approx(7.0, abs=0.1)  # what is left, less 1 s
    assert len(receiver.graces) == len(forwarder.graces) == 1


def test_a_past_deadline_gives_no_time_but_still_stops_everything() -> None:
    log: list[str] = []
    forwarder = Recorder("forwarder", log)
    lifecycle = Lifecycle([Graceful(forwarder, margin=1.0), Untimed(Plain("health", log))])

    async def run() -> None:
        await lifecycle.start()
        await lifecycle.shutdown(time.monotonic() - 5)

    asyncio.run(run())
    assert forwarder.graces == [0.0]
    assert log[-2:] == ["stop health", "stop forwarder"]


def test_a_failing_shutdown_does_not_keep_the_others_running() -> None:
    log: list[str] = []
    lifecycle = Lifecycle(
        [
            Untimed(Plain("a", log)),
            Untimed(Plain("b", log, fail_stop=True)),
            Untimed(Plain("c", log)),
        ]
    )

    async def run() -> None:
        await lifecycle.start()
        await lifecycle.shutdown(time.monotonic() + 1)

    asyncio.run(run())
    assert log[3:] == ["stop c", "stop b", "stop a"]


def test_a_failing_start_stops_what_had_started_and_raises() -> None:
    log: list[str] = []
    lifecycle = Lifecycle(
        [
            Untimed(Plain("a", log)),
            Graceful(Recorder("b", log, fail_start=True)),
            Untimed(Plain("c", log)),
        ]
    )
    with pytest.raises(OSError, match="b cannot start"):
        asyncio.run(lifecycle.start())
    assert log == ["start a", "stop a"]
