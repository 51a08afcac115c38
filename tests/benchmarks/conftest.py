"""Every test under tests/benchmarks is a pytest-benchmark timing: mark them all ``benchmark``
so the default run (``-m 'not slow and not benchmark'``) skips them.

Run: ``pytest tests/benchmarks -m benchmark --benchmark-json=BENCHMARK.json``
(short mode for CI: ``KANBENCH_BENCH_QUICK=1``; threads: ``KANBENCH_BENCH_THREADS``, default 2).
"""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP's wait policy is left at its default (active), as users run: a quiet 2-core machine
# showed no slowdown of later steps after torch.compile'd kernels ran, while OMP_WAIT_POLICY=
# PASSIVE slowed the compiled kernels' many short parallel regions (native [784, 64, 10] G5
# train step 1.4x -> 2.0x the MLP). Other processes spinning on the same cores distort every
# timing: benchmark on an otherwise idle machine.

import pytest
import torch

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.benchmark)


@pytest.fixture(scope="session", autouse=True)
def _bench_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("KANBENCH_BENCH_THREADS", "2")))
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _native_compiled_as_users_run_it(monkeypatch):
    """tests/conftest.py turns the native kernel's compilation off for the fast tests; time it
    as users run it (compiled where torch.compile works), unless the environment chose."""
    if os.environ.get("_KANBENCH_COMPILE_OFF_BY_TESTS"):
        monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1")
