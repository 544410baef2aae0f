"""The names the package emits are the ones the gateway's default views select and rename."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from gateway.catalogue import DEFAULT_NAMESPACE
from gateway.processors.defaults import DEFAULT_VIEWS_YAML
from instrumentation import semconv

EMITTED = {
    semconv.HTTP_SERVER_REQUEST_DURATION: {
        semconv.HTTP_REQUEST_METHOD,
        semconv.URL_SCHEME,
        semconv.HTTP_ROUTE,
        semconv.HTTP_RESPONSE_STATUS_CODE,
        semconv.ERROR_TYPE,
    },
    semconv.HTTP_SERVER_ACTIVE_REQUESTS: {semconv.HTTP_REQUEST_METHOD, semconv.URL_SCHEME},
    semconv.DB_CLIENT_OPERATION_DURATION: {
        semconv.DB_SYSTEM_NAME,
        semconv.DB_OPERATION_NAME,
        semconv.ERROR_TYPE,
    },
}


def test_default_views_select_emitted_instruments_and_attributes() -> None:
    views = yaml.safe_load(DEFAULT_VIEWS_YAML)
    selected = 0
    for view in views:
        instrument = view["select"]["instrument"]
        if instrument.startswith("{namespace}") or "from_namespace" in view:
            continue  # catalogue names, not semantic conventions
        assert instrument in EMITTED, view["name"]
        selected += 1
        for key in view["attributes"]["keep"]:
            assert key in EMITTED[instrument], (view["name"], key)
    assert selected == 4


def test_the_catalogue_shares_the_namespace() -> None:
    assert DEFAULT_NAMESPACE == semconv.DEFAULT_NAMESPACE


@pytest.mark.integration
def test_importing_the_names_loads_neither_the_sdk_nor_the_gateway() -> None:
    code = (
        "import sys, instrumentation.semconv\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry', 'gateway'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
