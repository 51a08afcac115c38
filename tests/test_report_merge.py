"""Several stores in one report: the union of their runs, a run stored twice shown once."""

from __future__ import annotations

import time

from adapters.spec import ModelSpec
from bench.cli import main
from bench.records import RunResult, RunSpec, SplitSpec, TrainingSpec
from bench.report.sources import MergedStores
from bench.store import Store


def _save(store: Store, model: str, seed: int, test: float) -> str:
    spec = RunSpec(
        suite="merge", dataset="iris", dataset_label="iris", dataset_options={},
        split=SplitSpec(), model=model, adapter="mlp" if model == "mlp" else "native",
        family="mlp" if model == "mlp" else "kan", arch=ModelSpec(hidden=(4,)), params=50,
        budget=None, scheme="default", training=TrainingSpec(epochs=1), seed=seed, device="cpu")
    result = RunResult(status="ok", metric="accuracy", params=50, test_metric=test,
                       val_metric=test, train_metric=test, gap=0.0, best_epoch=1, epochs=1,
                       steps=1, train_time_s=1.0, throughput=10.0,
                       curves=[{"epoch": 1, "val_metric": test, "train_metric": test}])
    result.record("answer", test)
    store.save(spec, result, env={})
    return spec.key


def test_merged_stores_show_every_run_once_the_latest_copy(tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with Store(a) as s:
        shared = _save(s, "kan", 0, 0.5)
        only_a = _save(s, "mlp", 0, 0.6)
    time.sleep(1.1)  # finished_at has one-second resolution
    with Store(b) as s:
        assert _save(s, "kan", 0, 0.9) == shared  # the same configuration, run again later
        only_b = _save(s, "kan", 1, 0.7)
    with Store(a, readonly=True) as sa, Store(b, readonly=True) as sb:
        merged = MergedStores([sa, sb])
        runs = merged.runs()
        assert sorted(runs.run_key) == sorted([shared, only_a, only_b])
        assert runs.set_index("run_key").test_metric[shared] == 0.9  # the later copy
        values = merged.values()
        assert values[values.run_key == shared].value.tolist() == [0.9]
        curves = merged.curves()
        assert curves[curves.run_key == shared].val_metric.tolist() == [0.9]
        assert len(curves) == 3
    assert main(["report", str(a), str(b), "--out-dir", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "merge.md").read_text()
    assert "3 runs" in text
