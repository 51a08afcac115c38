"""Results store: one SQLite file per suite, one transaction per finished run.

Each run is keyed by the hash of its resolved configuration (``RunSpec.key``). A run's row and
its curve rows are written in a single transaction, so a process killed at any moment leaves
either the whole run or nothing; rerunning the suite skips the keys already finished.
Reports and exports read only this file.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import StoreError
from bench.plan import RunSpec
from bench.train import RunResult

SCHEMA_VERSION = 2
#: statements that bring a store of version v to v + 1 (older stores are upgraded in place)
_MIGRATIONS = {
    1: ["ALTER TABLE runs ADD COLUMN warmup_time_s REAL"],
}
#: statuses that count as done: rerunning the suite does not redo them
FINISHED = ("ok", "diverged")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    dataset TEXT NOT NULL,
    task TEXT,
    metric TEXT,
    model TEXT NOT NULL,
    adapter TEXT NOT NULL,
    impl TEXT,
    impl_version TEXT,
    family TEXT NOT NULL,
    arch TEXT,
    scheme TEXT NOT NULL,
    seed INTEGER NOT NULL,
    params INTEGER,
    budget_reference TEXT,
    budget_target INTEGER,
    budget_error REAL,
    train_metric REAL,
    val_metric REAL,
    test_metric REAL,
    gap REAL,
    test_metric_last REAL,
    test_metric_best_test REAL,
    best_epoch INTEGER,
    epochs INTEGER,
    steps INTEGER,
    train_time_s REAL,
    warmup_time_s REAL,
    eval_time_s REAL,
    wall_time_s REAL,
    throughput REAL,
    peak_memory_bytes INTEGER,
    device TEXT,
    threads INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    diverged_step INTEGER,
    config_json TEXT NOT NULL,
    provenance_json TEXT,
    data_json TEXT,
    env_json TEXT,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS curves (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (run_key, epoch)
);
"""

#: the tidy export's leading columns (one row per run)
EXPORT_COLUMNS = [
    "run_key", "suite", "dataset", "task", "metric", "model", "impl", "impl_version", "family",
    "adapter", "arch", "scheme", "seed", "params", "budget_reference", "budget_target",
    "budget_error", "train_metric", "val_metric", "test_metric", "gap", "test_metric_last",
    "test_metric_best_test", "best_epoch", "train_time_s", "warmup_time_s", "throughput", "peak_memory_bytes",
    "epochs", "steps", "device", "threads", "status", "error", "diverged_step", "finished_at",
]


class Store:
    """A results store at ``path`` (created on first write)."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"no results store at {self.path}; run a suite first "
                             f"(python -m bench run SUITE) or pass the right path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._db:
                self._db.executescript(_SCHEMA)
                row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                     (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(f"{self.path} has schema version {row[0]}, this kanbench "
                                     f"reads up to version {SCHEMA_VERSION}; upgrade kanbench "
                                     f"or use a new --store path")
                else:
                    for version in range(int(row[0]), SCHEMA_VERSION):
                        for statement in _MIGRATIONS[version]:
                            self._db.execute(statement)
                    self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                                     (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a kanbench results store ({exc})") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def save(self, spec: RunSpec, result: RunResult, env: dict[str, Any]) -> None:
        """Write one run (row + curves) atomically, replacing an earlier attempt of it."""
        budget = spec.budget or {}
        row = {
            "run_key": spec.key, "suite": spec.suite, "dataset": spec.dataset_label,
            "task": "classification" if result.metric == "accuracy" else
                    "regression" if result.metric == "rmse" else None,
            "metric": result.metric, "model": spec.model, "adapter": spec.adapter,
            "impl": result.provenance.get("provider"),
            "impl_version": result.provenance.get("version"), "family": spec.family,
            "arch": spec.arch.describe(spec.family), "scheme": spec.scheme, "seed": spec.seed,
            "params": result.params if result.params is not None else spec.params,
            "budget_reference": budget.get("reference"), "budget_target": budget.get("target"),
            "budget_error": _budget_error(result.params, budget.get("target")),
            "train_metric": result.train_metric, "val_metric": result.val_metric,
            "test_metric": result.test_metric, "gap": result.gap,
            "test_metric_last": result.test_metric_last,
            "test_metric_best_test": result.test_metric_best_test,
            "best_epoch": result.best_epoch, "epochs": result.epochs, "steps": result.steps,
            "train_time_s": result.train_time_s, "warmup_time_s": result.warmup_time_s,
            "eval_time_s": result.eval_time_s,
            "wall_time_s": result.wall_time_s, "throughput": result.throughput,
            "peak_memory_bytes": result.peak_memory_bytes, "device": spec.device,
            "threads": result.threads, "status": result.status, "error": result.error,
            "diverged_step": result.diverged_step,
            "config_json": json.dumps({**spec.model_dump(mode="json"), "key": spec.key},
                                      sort_keys=True),
            "provenance_json": json.dumps(result.provenance, sort_keys=True),
            "data_json": json.dumps(result.data_info, sort_keys=True, default=str),
            "env_json": json.dumps(env, sort_keys=True),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._db:  # one transaction: the run and its curves, or nothing
            self._db.execute("DELETE FROM curves WHERE run_key = ?", (spec.key,))
            self._db.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})",
                             tuple(row.values()))
            self._db.executemany(
                "INSERT INTO curves (run_key, epoch, values_json) VALUES (?, ?, ?)",
                [(spec.key, rec["epoch"], json.dumps(rec)) for rec in result.curves],
            )

    # -- reading ---------------------------------------------------------------------------
    def statuses(self) -> dict[str, tuple[str, str | None]]:
        """run_key -> (status, error) for every stored run."""
        return {k: (s, e) for k, s, e in self._db.execute("SELECT run_key, status, error FROM runs")}

    def finished_keys(self) -> set[str]:
        marks = ", ".join("?" for _ in FINISHED)
        rows = self._db.execute(f"SELECT run_key FROM runs WHERE status IN ({marks})", FINISHED)
        return {r[0] for r in rows}

    def runs(self) -> pd.DataFrame:
        """One row per run (every column of the runs table)."""
        return pd.read_sql_query("SELECT * FROM runs ORDER BY rowid", self._db)

    def curves(self) -> pd.DataFrame:
        """One row per (run, epoch) with the run's identifying columns."""
        rows = self._db.execute(
            "SELECT c.run_key, r.dataset, r.model, r.scheme, r.seed, r.metric, c.values_json "
            "FROM curves c JOIN runs r USING (run_key) ORDER BY r.rowid, c.epoch"
        ).fetchall()
        records = [{"run_key": k, "dataset": d, "model": m, "scheme": s, "seed": seed,
                    "metric": metric, **json.loads(v)} for k, d, m, s, seed, metric, v in rows]
        return pd.DataFrame.from_records(records)

    def export(self) -> pd.DataFrame:
        """The tidy table: one row per run, the documented columns first."""
        df = self.runs()
        return df[[c for c in EXPORT_COLUMNS if c in df.columns]]


def _budget_error(params: int | None, target: int | None) -> float | None:
    if params is None or not target:
        return None
    return (params - target) / target


def default_store_path(suite_name: str) -> Path:
    return Path("results") / f"{suite_name}.sqlite"
