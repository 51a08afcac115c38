"""Helpers shared by test modules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import adapters
from adapters import Adapter


def available(name: str) -> Adapter:
    """The adapter registered as ``name``; the test is skipped where it cannot run here."""
    a = adapters.get(name)
    reason = a.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{name} unavailable: {reason}")
    return a


FIXTURES = Path(__file__).parent / "fixtures"


def schema2_store(path: Path) -> Path:
    """Write at ``path`` the schema-2 results store kanbench 0490682 made for
    fixtures/schema2_suite.yaml, rebuilt from its SQL dump (fixtures/schema2.sql)."""
    db = sqlite3.connect(path)
    try:
        db.executescript((FIXTURES / "schema2.sql").read_text(encoding="utf-8"))
    finally:
        db.close()
    return path
