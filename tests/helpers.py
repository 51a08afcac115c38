"""Helpers shared by test modules."""

from __future__ import annotations

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
