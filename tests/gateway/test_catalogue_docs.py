"""docs/metrics.md is generated from the catalogue and the default views; stale fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.catalogue import CATALOGUE, RENAMED
from gateway.catalogue_docs import DOC_PATH, render


def test_docs_metrics_md_is_up_to_date() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/metrics.md is stale: run `python -m gateway.catalogue_docs`"
    )


def test_every_metric_and_every_rename_is_listed() -> None:
    text = render()
    for metric in CATALOGUE:
        assert f"| `{metric.prometheus_name()}` |" in text
    for original, (new, _) in RENAMED.items():
        assert original in text and new in text


@pytest.mark.integration
def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    copy = tmp_path / "metrics.md"

    def check() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gateway.catalogue_docs", "--check", "--path", str(copy)]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    copy.write_text(render(), encoding="utf-8")
    assert check().returncode == 0
    copy.write_text(render() + "\nhand edit\n", encoding="utf-8")
    result = check()
    assert result.returncode == 1
    assert "stale" in result.stderr


def test_a_namespace_renders_its_names() -> None:
    assert "`shop_api_requests_total`" in render("shop")
