"""Test modules share helpers only through tests/support: a test module that imports another test
module runs (and collects) that module's tests twice and breaks when it is renamed, and helpers
kept in a test module get copied instead of found."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Helpers that stay beside their tests for now: tests/alertmanager is being reworked on another
# branch (the notification wiring); move them into tests/support once that has landed.
ALLOWED_OUTSIDE_SUPPORT = {"tests.alertmanager.amconfig", "tests.alertmanager.sinks"}


def imported_test_modules(source: str, package: str) -> list[str]:
    """The `tests.*` modules that `source`, a module of `package`, imports (relative imports
    resolved), outside tests.support."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from tests.x import y` may import module y: name both.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            if name == "tests" or not name.startswith("tests."):
                continue
            if name.startswith("tests.support") or name in ALLOWED_OUTSIDE_SUPPORT:
                continue
            if (TESTS.parent / (name.replace(".", "/") + ".py")).exists():
                found.append(name)
    return found


def test_no_test_module_imports_another_test_module_or_a_helper_outside_support() -> None:
    offenders = {
        str(path.relative_to(TESTS.parent)): mods
        for path in sorted(TESTS.rglob("*.py"))
        if (
            mods := imported_test_modules(
                path.read_text(), ".".join(path.relative_to(TESTS.parent).parent.parts)
            )
        )
    }
    assert offenders == {}, "import helpers from tests/support instead"


def test_the_check_sees_absolute_and_relative_imports() -> None:
    source = (
        "from tests.integration.test_stack import stack_dir\n"
        "from .test_status_api import get\n"
        "from . import test_scale_out\n"
        "from tests.support.waiting import eventually\n"
    )
    found = imported_test_modules(source, "tests.integration")
    assert "tests.integration.test_stack" in found
    assert "tests.integration.test_status_api" in found
    assert "tests.integration.test_scale_out" in found
    assert not [m for m in found if m.startswith("tests.support")]
