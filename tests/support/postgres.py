"""The PostgreSQL the tests use (the local one, trust auth), unless DATABASE_URL names another."""

from __future__ import annotations

import os

__all__ = ["DSN"]

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
