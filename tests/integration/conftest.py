"""Fixtures shared by several integration test modules (their code lives in tests/support)."""

from tests.support.stack_cli import stack_dir

__all__ = ["stack_dir"]
