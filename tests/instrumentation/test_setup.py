"""setup(): the handle's lifecycle and its settings."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentation import InstrumentationSettings, setup

QUIET = InstrumentationSettings(service_name="svc", export=False, set_global=False)


def test_shutdown_is_safe_twice(reader: InMemoryMetricReader) -> None:
    h = setup(QUIET, readers=[reader])
    h.shutdown()
    h.shutdown()


def test_a_provider_inherited_through_fork_is_reported(
    reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    from instrumentation import _setup

    h = setup(QUIET, readers=[reader])
    _setup._after_fork_in_child()  # what os.register_at_fork runs in a forked child
    instance = str(h.resource.attributes["service.instance.id"])
    assert "before this process was forked" in caplog.text
    assert instance in caplog.text
    # Other tests' handles may still be open in this process, and handles of one process
    # share its service.instance.id: count the warnings, one per open handle.
    open_handles = len(caplog.records)
    caplog.clear()
    h.shutdown()
    _setup._after_fork_in_child()
    assert len(caplog.records) == open_handles - 1
