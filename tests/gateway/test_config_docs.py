"""docs/configuration.md is generated from the config models and must be current."""

from __future__ import annotations

from gateway.config import GatewayConfig
from gateway.config_docs import DOC_PATH, main, render


def test_committed_reference_is_current() -> None:
    assert main(["--check"]) == 0, "run: python -m gateway.config_docs"


def test_every_setting_is_documented_with_its_comment() -> None:
    text = render()
    assert DOC_PATH.read_text(encoding="utf-8") == text
    for section in GatewayConfig.model_fields:
        if section == "views":
            continue
        assert f"## `{section}`" in text, section
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) > 50
    undocumented = [row.split("`")[1] for row in rows if row.rstrip().endswith("|  |")]
    assert undocumented == []
