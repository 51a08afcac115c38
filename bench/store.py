"""Results store: one SQLite file per suite, one transaction per finished run.

Tables (schema 3):

- ``runs``: one row per run, the headline columns of :data:`RUN_COLUMNS` (identity, metrics,
  times, status, the resolved configuration as JSON), keyed by the run's key; ``pair_key``
  joins the runs one comparison pairs;
- ``run_values``: any number of named per-run values ``(run_key, name, value)``, a number or a
  text (``RunResult.record``): a new quantity needs no schema change;
- ``series``: per-step values ``(run_key, step, epoch, name, value)`` (``RunResult.log``);
- ``curves``: one record per (run, epoch): losses, metrics, epoch time, probes (JSON);
- ``meta``: the schema version.

A run's rows in every table are written in a single transaction, so a process killed at any
moment leaves either the whole run or nothing; rerunning the suite skips the keys already
finished. Older stores are upgraded in place when opened; reports and exports read only this
file, and this module imports no training code, datasets or adapters.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import StoreError
from bench.records import FINISHED, RunResult, RunSpec

log = logging.getLogger(__name__)

__all__ = ["EXPORT_COLUMNS", "FINISHED", "RUN_COLUMNS", "SCHEMA_VERSION", "Store",
           "default_store_path"]

SCHEMA_VERSION = 3

#: the runs table, in export order: (column, SQL declaration)
RUN_COLUMNS: list[tuple[str, str]] = [
    ("run_key", "TEXT PRIMARY KEY"),
    ("pair_key", "TEXT"),
    ("suite", "TEXT NOT NULL"),
    ("dataset", "TEXT NOT NULL"),
    ("task", "TEXT"),
    ("metric", "TEXT"),
    ("model", "TEXT NOT NULL"),
    ("impl", "TEXT"),
    ("impl_version", "TEXT"),
    ("family", "TEXT NOT NULL"),
    ("adapter", "TEXT NOT NULL"),
    ("arch", "TEXT"),
    ("scheme", "TEXT NOT NULL"),
    ("seed", "INTEGER NOT NULL"),
    ("params", "INTEGER"),
    ("budget_reference", "TEXT"),
    ("budget_target", "INTEGER"),
    ("budget_error", "REAL"),
    ("train_metric", "REAL"),
    ("val_metric", "REAL"),
    ("test_metric", "REAL"),
    ("gap", "REAL"),
    ("test_metric_last", "REAL"),
    ("test_metric_best_test", "REAL"),
    ("best_epoch", "INTEGER"),
    ("train_time_s", "REAL"),
    ("warmup_time_s", "REAL"),
    ("eval_time_s", "REAL"),
    ("wall_time_s", "REAL"),
    ("throughput", "REAL"),
    ("peak_memory_bytes", "INTEGER"),
    ("epochs", "INTEGER"),
    ("steps", "INTEGER"),
    ("device", "TEXT"),
    ("threads", "INTEGER"),
    ("status", "TEXT NOT NULL"),
    ("error", "TEXT"),
    ("diverged_step", "INTEGER"),
    ("finished_at", "TEXT NOT NULL"),
    ("config_json", "TEXT NOT NULL"),
    ("provenance_json", "TEXT"),
    ("data_json", "TEXT"),
    ("env_json", "TEXT"),
]
_BLOBS = ("config_json", "provenance_json", "data_json", "env_json")
#: the export's headline columns (one row per run); named per-run values follow them
EXPORT_COLUMNS = [name for name, _ in RUN_COLUMNS if name not in _BLOBS]
_RUN_COLUMN_NAMES = frozenset(name for name, _ in RUN_COLUMNS)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS runs (\n    "
    + ",\n    ".join(f"{name} {decl}" for name, decl in RUN_COLUMNS)
    + "\n);\n"
    """
CREATE TABLE IF NOT EXISTS curves (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (run_key, epoch)
);
CREATE TABLE IF NOT EXISTS run_values (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value,
    PRIMARY KEY (run_key, name)
);
CREATE TABLE IF NOT EXISTS series (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_key, name, step)
);
"""
)
#: created after migrations (an older runs table has no pair_key until migrated)
_INDEXES = "CREATE INDEX IF NOT EXISTS runs_pair_key ON runs(pair_key);"


def _spec_from_config(config_json: str) -> RunSpec:
    data = json.loads(config_json)
    data.pop("key", None)
    return RunSpec.model_validate(data)


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    """Schema 3 adds ``pair_key`` to runs (computed from each run's stored configuration) and
    the run_values and series tables (created by the schema script)."""
    if "pair_key" not in {r[1] for r in db.execute("PRAGMA table_info(runs)")}:
        db.execute("ALTER TABLE runs ADD COLUMN pair_key TEXT")
    for run_key, config in db.execute("SELECT run_key, config_json FROM runs").fetchall():
        try:
            spec = _spec_from_config(config)
        except Exception as exc:  # a configuration this kanbench cannot read: keep the run
            log.warning("run %s: no pair_key (%s)", run_key, exc)
            continue
        if spec.key != run_key:
            log.warning("run %s: its stored configuration hashes to %s", run_key, spec.key)
        db.execute("UPDATE runs SET pair_key = ? WHERE run_key = ?", (spec.pair_key, run_key))


#: what brings a store of version v to v + 1 (older stores are upgraded in place)
_MIGRATIONS: dict[int, list[str] | Callable[[sqlite3.Connection], None]] = {
    1: ["ALTER TABLE runs ADD COLUMN warmup_time_s REAL"],
    2: _migrate_2_to_3,
}


class Store:
    """A results store at ``path`` (created on first write unless ``create`` is False)."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"no results store at {self.path}; run a suite first "
                             f"(python -m bench run SUITE) or pass the right path")
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a results store")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30)
            self._open()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a kanbench results store ({exc})") from None

    def _open(self) -> None:
        db = self._db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version_row = None
        if "meta" in tables:
            version_row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if tables and version_row is None:  # never write kanbench's tables into another file
            raise StoreError(f"{self.path} is an SQLite file but not a kanbench results store "
                             f"(it has no kanbench schema version); pass a store that "
                             f"'python -m bench run' wrote, or a new path")
        if version_row is not None and int(version_row[0]) > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version_row[0]}, this kanbench "
                             f"reads up to version {SCHEMA_VERSION}; upgrade kanbench "
                             f"or use a new --store path")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        with db:  # the upgrade is one transaction: all of it or nothing
            db.execute("BEGIN")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if version_row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            else:
                for version in range(int(version_row[0]), SCHEMA_VERSION):
                    step = _MIGRATIONS[version]
                    if callable(step):
                        step(db)
                    else:
                        for statement in step:
                            db.execute(statement)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                           (str(SCHEMA_VERSION),))
            db.execute(_INDEXES)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def save(self, spec: RunSpec, result: RunResult, env: dict[str, Any]) -> None:
        """Write one run (row, values, series, curves) atomically, replacing an earlier
        attempt of it."""
        clash = sorted(set(result.values) & _RUN_COLUMN_NAMES)
        if clash:
            raise ValueError(f"per-run values {clash} would shadow headline columns of the store")
        row = _run_row(spec, result, env)
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        key = spec.key
        with self._db:  # one transaction: the run and everything it recorded, or nothing
            for table in ("curves", "run_values", "series"):
                self._db.execute(f"DELETE FROM {table} WHERE run_key = ?", (key,))
            self._db.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})",
                             tuple(row.values()))
            self._db.executemany(
                "INSERT INTO curves (run_key, epoch, values_json) VALUES (?, ?, ?)",
                [(key, rec["epoch"], json.dumps(rec)) for rec in result.curves],
            )
            self._db.executemany(
                "INSERT INTO run_values (run_key, name, value) VALUES (?, ?, ?)",
                [(key, name, value) for name, value in result.values.items()],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO series (run_key, step, epoch, name, value) "
                "VALUES (?, ?, ?, ?, ?)",
                [(key, p.step, p.epoch, p.name, p.value) for p in result.series],
            )

    # -- reading ---------------------------------------------------------------------------
    def statuses(self) -> dict[str, tuple[str, str | None]]:
        """run_key -> (status, error) for every stored run."""
        return {k: (s, e) for k, s, e in self._db.execute("SELECT run_key, status, error FROM runs")}

    def finished_keys(self) -> set[str]:
        marks = ", ".join("?" for _ in FINISHED)
        rows = self._db.execute(f"SELECT run_key FROM runs WHERE status IN ({marks})", FINISHED)
        return {r[0] for r in rows}

    def values(self) -> pd.DataFrame:
        """Named per-run values, long: one row per (run, name)."""
        return pd.read_sql_query(
            "SELECT v.run_key, v.name, v.value FROM run_values v JOIN runs r USING (run_key) "
            "ORDER BY r.rowid, v.name", self._db)

    def runs(self) -> pd.DataFrame:
        """One row per run: every column of the runs table, then one column per named per-run
        value (sorted by name; empty where a run did not record it)."""
        runs = pd.read_sql_query("SELECT * FROM runs ORDER BY rowid", self._db)
        values = self.values()
        if values.empty:
            return runs
        wide = values.pivot(index="run_key", columns="name", values="value")
        wide = wide[sorted(wide.columns)]
        wide.columns.name = None
        return runs.merge(wide, how="left", left_on="run_key", right_index=True)

    def value_names(self) -> list[str]:
        """The names of every named per-run value in the store."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT name FROM run_values ORDER BY name")]

    def curves(self) -> pd.DataFrame:
        """One row per (run, epoch) with the run's identifying columns."""
        rows = self._db.execute(
            "SELECT c.run_key, r.dataset, r.model, r.scheme, r.seed, r.metric, c.values_json "
            "FROM curves c JOIN runs r USING (run_key) ORDER BY r.rowid, c.epoch"
        ).fetchall()
        records = [{"run_key": k, "dataset": d, "model": m, "scheme": s, "seed": seed,
                    "metric": metric, **json.loads(v)} for k, d, m, s, seed, metric, v in rows]
        return pd.DataFrame.from_records(records)

    def series(self, *, wide: bool = False) -> pd.DataFrame:
        """Per-step series with the run's identifying columns: long (one row per run, step and
        name) or ``wide`` (one row per run and step, one column per name)."""
        long = pd.read_sql_query(
            "SELECT s.run_key, r.pair_key, r.dataset, r.model, r.scheme, r.seed, s.step, "
            "s.epoch, s.name, s.value FROM series s JOIN runs r USING (run_key) "
            "ORDER BY r.rowid, s.step, s.name", self._db)
        if not wide or long.empty:
            return long
        ids = ["run_key", "pair_key", "dataset", "model", "scheme", "seed", "step", "epoch"]
        order = long[ids].drop_duplicates()
        table = long.pivot_table(index=["run_key", "step"], columns="name", values="value",
                                 aggfunc="first")
        table.columns.name = None
        return order.merge(table, how="left", left_on=["run_key", "step"],
                           right_index=True).reset_index(drop=True)

    def export(self) -> pd.DataFrame:
        """The tidy table: one row per run, the headline columns, then every named per-run
        value stored."""
        df = self.runs()
        return df[[c for c in EXPORT_COLUMNS if c in df.columns] + self.value_names()]


def _run_row(spec: RunSpec, result: RunResult, env: dict[str, Any]) -> dict[str, Any]:
    budget = spec.budget or {}
    params = result.params if result.params is not None else spec.params
    row = {
        "run_key": spec.key, "pair_key": spec.pair_key, "suite": spec.suite,
        "dataset": spec.dataset_label,
        "task": "classification" if result.metric == "accuracy" else
                "regression" if result.metric == "rmse" else None,
        "metric": result.metric, "model": spec.model,
        "impl": result.provenance.get("provider"),
        "impl_version": result.provenance.get("version"), "family": spec.family,
        "adapter": spec.adapter, "arch": spec.arch.describe(spec.family), "scheme": spec.scheme,
        "seed": spec.seed, "params": params,
        "budget_reference": budget.get("reference"), "budget_target": budget.get("target"),
        "budget_error": _budget_error(result.params, budget.get("target")),
        "device": spec.device, "finished_at":
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_json": spec.config_json(),
        "provenance_json": json.dumps(result.provenance, sort_keys=True),
        "data_json": json.dumps(result.data_info, sort_keys=True, default=str),
        "env_json": json.dumps(env, sort_keys=True),
    }
    for name in _RUN_COLUMN_NAMES - row.keys():  # the rest are RunResult's headline fields
        row[name] = getattr(result, name)
    return {name: row[name] for name, _ in RUN_COLUMNS}


def _budget_error(params: int | None, target: int | None) -> float | None:
    if params is None or not target:
        return None
    return (params - target) / target


def default_store_path(suite_name: str) -> Path:
    return Path("results") / f"{suite_name}.sqlite"
