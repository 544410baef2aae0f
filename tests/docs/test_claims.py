"""Claims the docs make that the code can check (issue 19, item 3): links that resolve, the
limits table's defaults, the services' export interval, no references a reader cannot follow."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from gateway.config import GatewayConfig
from instrumentation._settings import DEFAULT_EXPORT_INTERVAL_S

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
OPERATIONS = REPO / "docs" / "operations.md"

_UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "s": 1, "chars": 1, "batches": 1}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    """docs/operations.md linked twice to a DESIGN.md the repository does not have."""
    text = doc.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not (doc.parent / t).exists()]
    assert missing == [], missing
    if not (REPO / "DESIGN.md").exists():
        assert "DESIGN.md" not in text, "names a DESIGN.md that is not in the repository"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_figures_from_an_issue_the_reader_cannot_see(doc: Path) -> None:
    assert "the issue's" not in doc.read_text(encoding="utf-8")


def _default(path: str) -> Any:
    node: Any = GatewayConfig()
    for part in path.split("."):
        assert isinstance(node, BaseModel), path
        node = getattr(node, part)
    return node


def _numbers(cell: str) -> list[float]:
    """'1.5 / 2 GiB' -> both in bytes; '1,000 batches / 256 MiB' -> [1000, 256 MiB];
    '4,096 chars (at most ...)' -> [4096]: a part without a unit takes the next part's."""
    parts = cell.split("(")[0].split(" / ")
    units: list[int | None] = []
    for part in parts:
        found = [f for name, f in _UNITS.items() if re.search(rf"\b{name}\b", part)]
        units.append(found[0] if found else None)
    for i in range(len(units) - 2, -1, -1):
        if units[i] is None:
            units[i] = units[i + 1]
    out = []
    for part, unit in zip(parts, units, strict=True):
        number = re.search(r"\d[\d,]*(?:\.\d+)?", part)
        if number:
            out.append(float(number.group().replace(",", "")) * (unit or 1))
    return out


def _limit_rows() -> list[tuple[list[str], str]]:
    text = OPERATIONS.read_text(encoding="utf-8")
    table = text.split("## Limits against hostile clients", 1)[1].split("\n\n")[2]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        paths = re.findall(r"`([a-z_]+(?:\.[a-z_]+)?)`", cells[1])
        if not paths or "." not in paths[0]:
            continue
        section = paths[0].split(".")[0]
        full = [p if "." in p else f"{section}.{p}" for p in paths]
        rows.append((full, cells[2]))
    return rows


def test_the_limits_table_states_the_code_defaults() -> None:
    rows = _limit_rows()
    assert len(rows) >= 15, rows  # the table's settings were found
    for paths, cell in rows:
        expected = [float(_default(p)) for p in paths]
        stated = _numbers(cell)
        assert stated[: len(expected)] == expected, f"{paths}: docs say {cell!r}"


def test_the_export_interval_row_states_the_instrumentation_default() -> None:
    row = next(
        line
        for line in OPERATIONS.read_text(encoding="utf-8").splitlines()
        if line.startswith("| service export interval")
    )
    assert f"{DEFAULT_EXPORT_INTERVAL_S:g} s with `instrumentation`" in row


def test_the_quickstart_is_linked_from_the_readme_first_screen() -> None:
    first_screen = "\n".join((REPO / "README.md").read_text(encoding="utf-8").splitlines()[:25])
    assert "](docs/quickstart.md)" in first_screen
