"""Shared fixtures: small suites written as real YAML files."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

# The native kernel's torch.compile'd path costs seconds of compilation per configuration and
# shape; tests run the eager kernels unless they ask for the compiled path (``compile_on``).
# Set KANBENCH_NATIVE_COMPILE=1 in the environment to run every test compiled. The speed
# benchmarks (tests/benchmarks) measure what users run: compiled, unless set in the environment.
if "KANBENCH_NATIVE_COMPILE" not in os.environ:
    os.environ["KANBENCH_NATIVE_COMPILE"] = "0"
    os.environ["_KANBENCH_COMPILE_OFF_BY_TESTS"] = "1"


@pytest.fixture
def compile_on(monkeypatch):
    """Let the native adapter compile its kernels (tests skip themselves where torch.compile
    does not work)."""
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1")


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write YAML text (dedented) to tmp_path/<name>.yaml and return its path."""

    def write(text: str, name: str = "suite") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
