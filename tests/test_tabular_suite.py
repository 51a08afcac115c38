"""The shipped tabular suite end to end, as a user runs it (slow: CI runs it, `pytest -q` not)."""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUITE = Path(__file__).resolve().parents[1] / "suites" / "tabular.yaml"
DATASETS = ["breast_cancer", "wine", "digits", "iris", "diabetes"]
MODELS = ["native", "efficient_kan", "pykan", "mlp"]


def bench(*args, cwd):
    # as a user runs it: the native kernel compiled where torch.compile works (conftest turns
    # compiling off for the fast tests)
    env = {**os.environ, "KANBENCH_NATIVE_COMPILE": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=1800, env=env)


def test_tabular_suite_end_to_end(tmp_path):
    started = time.perf_counter()
    first = bench("run", str(SUITE), "-q", cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert first.returncode == 0, first.stderr
    assert "60 runs: 0 already finished, ran 60 (60 ok)" in first.stdout, first.stdout
    print(f"\ntabular suite: {elapsed:.1f}s for 60 runs")  # measured, reported, not asserted

    md = (tmp_path / "reports" / "tabular.md").read_text()
    assert (tmp_path / "reports" / "tabular.html").is_file()
    for dataset in DATASETS:
        assert f"## {dataset} (" in md
    # the per-dataset tables (the Paired comparisons tables also start with a model's name)
    tables = md[min(md.index(f"\n## {dataset} (") for dataset in DATASETS):]
    for model in MODELS:
        rows = [line for line in tables.splitlines()
                if line.startswith((f"| {model} |", f"| **{model}** |")) and line.count("|") > 10]
        assert len(rows) == len(DATASETS), model
    # 3 seeds: every KAN against the MLP, each with 3 pairs, too few for a verdict at 0.05
    summary = md.split("## Summary\n", 1)[1].split("\n## ", 1)[0]
    for dataset in DATASETS:
        assert re.search(rf"^\| {dataset} \| .* \| mlp \| .*too few paired seeds \(n = 3\)",
                         summary, re.M), summary

    export = bench("export", "results/tabular.sqlite", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(export.stdout)))
    assert len(rows) == 60
    native = {(r["dataset"], r["seed"]): int(r["params"]) for r in rows if r["model"] == "native"}
    for r in rows:
        if r["model"] == "mlp":
            assert abs(int(r["params"]) - native[r["dataset"], r["seed"]]) \
                <= 0.02 * native[r["dataset"], r["seed"]]
    accuracy = [float(r["test_metric"]) for r in rows if r["metric"] == "accuracy"]
    assert min(accuracy) > 0.5  # every classifier learned something real

    db = tmp_path / "results" / "tabular.sqlite"
    snapshot = sqlite3.connect(db).execute("SELECT * FROM runs ORDER BY run_key").fetchall()
    second = bench("run", str(SUITE), "-q", cwd=tmp_path)
    assert second.returncode == 0
    assert "60 already finished, ran 0" in second.stdout
    assert sqlite3.connect(db).execute("SELECT * FROM runs ORDER BY run_key").fetchall() == snapshot
