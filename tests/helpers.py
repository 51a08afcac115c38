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


def one_run_store(path: Path) -> Path:
    """A store at ``path`` with one finished run, for report tests that need some store."""
    from adapters.spec import ModelSpec
    from bench.records import RunResult, RunSpec, SplitSpec, TrainingSpec
    from bench.store import Store

    spec = RunSpec(
        suite="one", dataset="iris", dataset_label="iris", dataset_options={}, split=SplitSpec(),
        model="mlp", adapter="mlp", family="mlp", arch=ModelSpec(hidden=(4,)), params=50,
        budget=None, scheme="default", training=TrainingSpec(epochs=1), seed=0, device="cpu")
    with Store(path) as store:
        store.save(spec, RunResult(status="ok", metric="accuracy", params=50, test_metric=0.9,
                                   val_metric=0.9, train_metric=0.9, gap=0.0, best_epoch=1,
                                   epochs=1, steps=1, train_time_s=1.0, throughput=10.0),
                   env={})
    return path


def break_torch_compile(monkeypatch) -> None:
    """Make every ``torch.compile``'d function raise at its first call, as where no C++
    compiler exists, and empty the native kernel cache so that kernels are made again."""
    import torch

    from adapters.native import fused

    def broken_compile(fn, **kwargs):
        def raises(*args):
            raise RuntimeError("no C++ compiler")
        return raises

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(fused, "_cache", {})
