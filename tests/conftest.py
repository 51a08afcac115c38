"""Shared fixtures: small suites written as real YAML files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write YAML text (dedented) to tmp_path/<name>.yaml and return its path."""

    def write(text: str, name: str = "suite") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
