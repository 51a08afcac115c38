"""The CLI end to end: run -> store -> reports -> export, and an identical rerun changes nothing."""

from __future__ import annotations

import csv
import io
import sqlite3

import pytest

from bench.cli import main
from bench.store import EXPORT_COLUMNS

SUITE = """
name: e2e
seeds: [0, 1]
training: {epochs: 3, batch_size: 32, lr: 0.01}
datasets: [wine, diabetes]
models:
  - {name: native, adapter: native, hidden: [4], grid: 4, k: 3}
  - {name: efficient_kan, adapter: efficient_kan, grid: 4, budget: {match: native}}
  - {name: pykan, adapter: pykan, hidden: [4], grid: 4, k: 3}
  - {name: mlp, adapter: mlp, budget: {match: native}}
"""


def dump(db_path):
    db = sqlite3.connect(db_path)
    try:
        return (db.execute("SELECT * FROM runs ORDER BY run_key").fetchall(),
                db.execute("SELECT * FROM curves ORDER BY run_key, epoch").fetchall())
    finally:
        db.close()


@pytest.fixture
def ran(write_suite, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_suite(SUITE)
    assert main(["run", str(path), "-q"]) == 0
    out = capsys.readouterr().out
    return path, tmp_path, out


def test_run_writes_store_and_reports_with_every_pair(ran):
    path, root, out = ran
    assert "16 runs: 0 already finished, ran 16 (16 ok)" in out
    store = root / "results" / "e2e.sqlite"
    md = (root / "reports" / "e2e.md").read_text()
    html = (root / "reports" / "e2e.html").read_text()
    for dataset in ("wine", "diabetes"):
        assert f"## {dataset}" in md and f"<h2>{dataset}" in html
    for model in ("native", "efficient_kan", "pykan", "mlp"):
        rows = [line for line in md.splitlines()
                if line.startswith((f"| {model} |", f"| **{model}** |")) and line.count("|") > 10]
        assert len(rows) == 2, model  # one row of the results table per dataset
    assert "matched to native" in md
    assert "data:image/png;base64," in html
    assert (root / "reports" / "e2e_files" / "wine.png").is_file()
    runs, curves = dump(store)
    assert len(runs) == 16 and len(curves) == 16 * 3


def test_second_identical_run_changes_nothing(ran, capsys):
    path, root, _ = ran
    store = root / "results" / "e2e.sqlite"
    before = dump(store)
    assert main(["run", str(path), "-q", "--no-report"]) == 0
    assert "16 already finished, ran 0" in capsys.readouterr().out
    assert dump(store) == before


def test_export_csv_is_tidy_and_budget_is_matched(ran, capsys):
    _, root, _ = ran
    assert main(["export", str(root / "results" / "e2e.sqlite"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 16
    required = ["run_key", "suite", "dataset", "task", "metric", "model", "impl", "family", "seed",
                "params", "train_metric", "test_metric", "gap", "train_time_s", "epochs",
                "status", "error"]
    assert set(required) <= set(rows[0]) and list(rows[0])[:3] == EXPORT_COLUMNS[:3]
    impls = {r["model"]: r["impl"] for r in rows}
    assert impls["efficient_kan"] in ("ikan", "efficient_kan")
    assert impls["pykan"] == "pykan" and impls["native"] == "kanbench-native"
    for r in rows:
        if r["model"] == "mlp":
            assert r["budget_reference"] == "native"
            assert abs(float(r["budget_error"])) <= 0.02
            native = next(x for x in rows if x["model"] == "native" and x["dataset"] == r["dataset"])
            assert abs(int(r["params"]) - int(native["params"])) <= 0.02 * int(native["params"])
        assert r["status"] == "ok"
        assert r["task"] == ("regression" if r["dataset"] == "diabetes" else "classification")
        assert r["metric"] == ("rmse" if r["dataset"] == "diabetes" else "accuracy")


def test_unavailable_adapter_is_skipped_and_suite_goes_on(write_suite, tmp_path, monkeypatch,
                                                          capsys):
    import adapters
    from adapters.mlp import MLPAdapter

    class Missing(MLPAdapter):
        name = "missing_lib_test"

        def unavailable_reason(self):
            return "No module named 'missing_lib' (pip install missing_lib)"

    if "missing_lib_test" not in adapters.names():
        adapters.register(Missing)
    monkeypatch.chdir(tmp_path)
    path = write_suite("""
        seeds: [0]
        training: {epochs: 1}
        datasets: [iris]
        models:
          - {name: gone, adapter: missing_lib_test, hidden: [4]}
          - {name: mlp, adapter: mlp, hidden: [4]}
    """, name="skip")
    assert main(["run", str(path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "1 ok" in out and "1 skipped" in out
    md = (tmp_path / "reports" / "skip.md").read_text()
    assert "skipped: No module named 'missing_lib'" in md
    before = dump(tmp_path / "results" / "skip.sqlite")
    assert main(["run", str(path), "-q", "--no-report"]) == 0
    assert dump(tmp_path / "results" / "skip.sqlite") == before


def test_report_is_rebuilt_from_the_store_alone(ran, capsys):
    path, root, _ = ran
    out_dir = root / "rebuilt"
    assert main(["report", str(root / "results" / "e2e.sqlite"), "--out-dir", str(out_dir),
                 "--suite", str(path)]) == 0
    rebuilt = (out_dir / "e2e.md").read_text()
    original = (root / "reports" / "e2e.md").read_text()
    strip = lambda text: [l for l in text.splitlines() if not l.startswith("Generated")]  # noqa: E731
    assert strip(rebuilt) == strip(original)


def test_cuda_request_without_cuda_is_a_clear_error(write_suite, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    path = write_suite("datasets: [iris]\nmodels: [{name: m, adapter: mlp, hidden: [2]}]\n", "dev")
    assert main(["budget", str(path), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
