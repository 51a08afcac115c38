"""Every test under tests/benchmarks is a pytest-benchmark timing: mark them all ``benchmark``
so the default run (``-m 'not slow and not benchmark'``) skips them.

Run: ``pytest tests/benchmarks -m benchmark --benchmark-json=BENCHMARK.json``
(short mode for CI: ``KANBENCH_BENCH_QUICK=1``; threads: ``KANBENCH_BENCH_THREADS``, default 2).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Measured here: once a torch.compile'd CPU kernel had run (inkan's compiled basis), later steps
# in the same process ran 10-30x slower under OpenMP's default active waiting (spinning worker
# threads competing for the 2 cores); passive waiting removed that. It must be set before the
# OpenMP runtime starts, i.e. before torch is imported.
_TORCH_ALREADY_IMPORTED = "torch" in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

_HERE = Path(__file__).parent


def pytest_configure(config):
    if _TORCH_ALREADY_IMPORTED and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        sys.stderr.write(
            "kanbench benchmarks: torch was imported before OMP_WAIT_POLICY=PASSIVE could be set; "
            "timings after a torch.compile'd model may be distorted (export it in the shell)\n"
        )


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
