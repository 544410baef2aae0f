"""setup(): the handle's lifecycle and its settings."""

from __future__ import annotations

from dataclasses import replace

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentation import InstrumentationSettings, setup
from tests.support.upstream import run_upstream

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


@pytest.mark.integration  # its exporter connects to a collector address
@pytest.mark.parametrize(
    ("resource_attributes", "environment", "warned"),
    [
        (None, None, True),
        ("deployment.environment=production", None, False),
        (None, "staging", False),
    ],
)
def test_an_exporting_service_without_an_environment_is_warned_once(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    resource_attributes: str | None,
    environment: str | None,
    warned: bool,
) -> None:
    """Issue 19: `deployment_environment="development"` would silently mislabel production."""
    from instrumentation import _setup

    monkeypatch.setattr(_setup, "_environment_warned", False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    if resource_attributes is not None:
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", resource_attributes)
    settings = InstrumentationSettings(
        service_name="svc", environment=environment, set_global=False
    )
    with run_upstream() as upstream:
        settings = replace(settings, endpoint=upstream.url)
        for _ in range(2):
            setup(settings).shutdown()
    lines = [r.getMessage() for r in caplog.records if "deployment.environment" in r.getMessage()]
    assert len(lines) == (1 if warned else 0), lines
    if warned:
        assert "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=production" in lines[0]
