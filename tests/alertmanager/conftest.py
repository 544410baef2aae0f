"""The Slack/PagerDuty stand-in and the SMTP server the receiver tests point Alertmanager at."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.alertmanager.sinks import HttpSink, SmtpSink, running


@pytest.fixture
def sinks() -> Iterator[tuple[HttpSink, SmtpSink]]:
    with running() as both:
        yield both
