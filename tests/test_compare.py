"""`python -m bench compare OLD NEW`: runs added, missing, changed status, metric changes judged
against seed noise. Hand-made run records in real stores: no training."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

from adapters.spec import ModelSpec
from bench.cli import main
from bench.compare import compare_stores
from bench.records import RunResult, RunSpec, SplitSpec, TrainingSpec
from bench.store import Store


def _save(store: Store, model: str, seed: int, test: float | None, status: str = "ok") -> str:
    spec = RunSpec(
        suite="cmp", dataset="iris", dataset_label="iris", dataset_options={}, split=SplitSpec(),
        model=model, adapter="mlp", family="mlp", arch=ModelSpec(hidden=(4,)), params=50,
        budget=None, scheme="default", training=TrainingSpec(epochs=1), seed=seed, device="cpu")
    ok = status == "ok"
    store.save(spec, RunResult(status=status, metric="accuracy", params=50,
                               test_metric=test if ok else None, val_metric=test if ok else None,
                               train_metric=test if ok else None, epochs=1, steps=1,
                               error=None if ok else "boom"), env={})
    return spec.key


OLD = {"same": [0.9, 0.91, 0.92, 0.93], "worse": [0.90, 0.91, 0.92, 0.93],
       "noisy": [0.90, 0.80, 0.95, 0.85]}
NEW = {"same": [0.9, 0.91, 0.92, 0.93], "worse": [0.70, 0.71, 0.72, 0.73],
       "noisy": [0.91, 0.79, 0.94, 0.86]}


@pytest.fixture
def stores(tmp_path):
    old, new = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    with Store(old) as s:
        for model, values in OLD.items():
            for seed, v in enumerate(values):
                _save(s, model, seed, v)
        _save(s, "gone", 0, 0.5)
        _save(s, "flaky", 0, None, status="error")
    with Store(new) as s:
        for model, values in NEW.items():
            for seed, v in enumerate(values):
                _save(s, model, seed, v)
        _save(s, "fresh", 0, 0.6)
        _save(s, "flaky", 0, 0.8)
    return old, new


def test_compare_finds_added_missing_changed_and_judges_metric_changes(stores):
    c = compare_stores(*map(str, stores))
    assert c.added.title.tolist() == ["iris / fresh [default] / seed 0"]
    assert c.missing.title.tolist() == ["iris / gone [default] / seed 0"]
    assert c.status_changed[["old_status", "new_status"]].values.tolist() == [["error", "ok"]]
    m = c.metrics.set_index("model")
    assert m.loc["same", "verdict"] == "unchanged"
    assert m.loc["worse", "verdict"] == "worse"
    assert m.loc["worse", "delta"] == pytest.approx(-0.2)
    expected = stats.ttest_ind(NEW["worse"], OLD["worse"], equal_var=False).pvalue
    assert m.loc["worse", "p_value"] == pytest.approx(expected)
    assert m.loc["noisy", "verdict"] == "within seed noise"
    assert "flaky" not in m.index  # no finished run in the old store to compare with


def test_compare_command_prints_the_changes_and_writes_the_table(stores, tmp_path, capsys):
    out = tmp_path / "changes.csv"
    assert main(["compare", *map(str, stores), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("runs added: 1, missing: 1, status changed: 1, result groups "
                           "compared: 3")
    assert "iris / flaky [default] / seed 0: error -> ok" in text
    assert "iris / worse [default]: accuracy 0.915 -> 0.715 (-0.2" in text and ": worse" in text
    assert "1 of 3 groups gave identical test metrics." in text
    assert set(pd.read_csv(out).model) == {"same", "worse", "noisy"}
    assert main(["compare", *map(str, stores), "--level", "2"]) == 2
