"""torch.compile's cache lives under kanbench's cache folder and a second process reuses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.base import compile_cache_dir, use_compile_cache


def test_the_cache_folder_follows_kanbench_cache_and_a_users_choice_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("KANBENCH_CACHE", str(tmp_path / "kb"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    use_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "kb" / "compile")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    use_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
    monkeypatch.delenv("KANBENCH_CACHE")
    assert compile_cache_dir() == Path.home() / ".cache" / "kanbench" / "cache" / "compile"


WARM_UP = """
import adapters, torch
from adapters import ModelSpec
a = adapters.get("native")
model = a.build(ModelSpec(hidden=(4,)), 3, 2, seed=0)
assert a.warm_up(model, torch.rand(32, 3))
from torch._dynamo.utils import counters
print(counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"])
"""


@pytest.mark.slow
def test_a_second_process_reads_the_compiled_kernels_from_the_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(KANBENCH_CACHE=str(tmp_path), KANBENCH_NATIVE_COMPILE="1")

    def hits_and_misses() -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", WARM_UP], env=env, capture_output=True,
                             text=True, timeout=600, check=True).stdout.split()
        return int(out[-2]), int(out[-1])

    first = hits_and_misses()
    assert first[0] == 0 and first[1] > 0 and (tmp_path / "compile" / "fxgraph").is_dir()
    assert hits_and_misses() == (first[1], 0)  # everything compiled before is read back
