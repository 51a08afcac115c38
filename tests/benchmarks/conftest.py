"""Every test under tests/benchmarks is a pytest-benchmark timing: mark them all ``benchmark``
so the default run (``-m 'not slow and not benchmark'``) skips them.

Run: ``pytest tests/benchmarks -m benchmark --benchmark-json=BENCHMARK.json``
(short mode for CI: ``KANBENCH_BENCH_QUICK=1``; threads: ``KANBENCH_BENCH_THREADS``, default 2).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# torch.compile'd CPU kernels (inkan's compiled basis) bring a second OpenMP runtime; with the
# default active wait its spinning threads and ATen's fight over the cores and every later
# step in the process runs 10-30x slower. Passive waiting removes that. It must be set before
# the OpenMP runtimes start, i.e. before torch is imported.
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
