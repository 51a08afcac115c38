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
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import StoreError
from bench.records import FINISHED, RunResult, RunSpec, TrainingSpec

log = logging.getLogger(__name__)

__all__ = ["EXPORT_COLUMNS", "FINISHED", "RUN_COLUMNS", "SCHEMA_VERSION", "Store",
           "default_store_path", "reusable"]

SCHEMA_VERSION = 3
#: a running process renews its claims this often; a claim from another host that has not been
#: renewed for CLAIM_EXPIRY_S is taken for the claim of a process that has gone
HEARTBEAT_S = 30.0
CLAIM_EXPIRY_S = 300.0

#: the runs table, in export order: (column, SQL declaration)
RUN_COLUMNS: list[tuple[str, str]] = [
    ("run_key", "TEXT PRIMARY KEY"),
    ("pair_key", "TEXT"),
    ("suite", "TEXT NOT NULL"),
    ("dataset", "TEXT NOT NULL"),
    ("data_hash", "TEXT"),
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
CREATE TABLE IF NOT EXISTS claims (
    run_key TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_start TEXT NOT NULL,
    claimed_at TEXT NOT NULL
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
    """Schema 3 adds ``pair_key`` to runs (computed from each run's stored configuration),
    ``data_hash`` (unknown for older runs, which are reused as before) and the run_values,
    series and claims tables (created by the schema script)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    for column in ("pair_key", "data_hash"):
        if column not in columns:
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
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


def _retry_locked(statement: Callable[[], Any], attempts: int = 50) -> None:
    """Run ``statement``, retrying while another process holds the lock it needs (switching
    to WAL does not wait on SQLite's busy timeout)."""
    for attempt in range(attempts):
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


def _schema_version(path: Path, row: tuple | None) -> int | None:
    if row is None:
        return None
    try:
        version = int(row[0])
    except (TypeError, ValueError):
        version = -1
    if version < min(_MIGRATIONS) or version > 10**6:
        raise StoreError(f"{path} has an unreadable schema version {row[0]!r} (kanbench stores "
                         f"have versions {min(_MIGRATIONS)} to {SCHEMA_VERSION}); it was not "
                         f"written by kanbench or is damaged: pass another --store path")
    return version


class Store:
    """A results store at ``path``: created on first write unless ``create`` is False;
    ``readonly`` never writes to the file (export and report: a read-only file or folder works;
    an older schema is then upgraded in a copy in memory)."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if (readonly or not create) and not self.path.is_file():
            raise StoreError(f"no results store at {self.path}; run a suite first "
                             f"(python -m bench run SUITE) or pass the right path")
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a results store")
        try:
            self._db = self._connect_readonly() if readonly else self._connect_writable()
            self._open()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a kanbench results store ({exc})") from None

    def _connect_writable(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's folder {self.path.parent} "
                             f"({exc.strerror}); pass --store PATH in a writable folder") from None
        if not os.access(self.path.parent, os.W_OK) or (
                self.path.exists() and not os.access(self.path, os.W_OK)):
            raise StoreError(f"cannot write the results store {self.path} (no write permission "
                             f"on the file or its folder); pass --store PATH in a writable "
                             f"folder (export and report read a read-only store)")
        return sqlite3.connect(self.path, timeout=30)

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=30)
            db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            # A WAL store in a read-only folder cannot open its shared-memory file: read it as
            # an immutable file (no other process may write it meanwhile: nothing can).
            uri = f"{self.path.resolve().as_uri()}?immutable=1"
            db = sqlite3.connect(uri, uri=True, timeout=30)
        return db

    def _open(self) -> None:
        version = self._checked_version()
        if self.readonly:
            if version == SCHEMA_VERSION:
                return
            memory = sqlite3.connect(":memory:")  # upgrade a copy, leave the file as it is
            self._db.backup(memory)
            self._db.close()
            self._db = memory
        else:
            _retry_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        db = self._db
        db.execute("PRAGMA foreign_keys=ON")
        with db:  # the upgrade is one transaction: all of it or nothing
            db.execute("BEGIN IMMEDIATE")  # the write lock first: another process may open too
            version = self._checked_version()  # it may have created or upgraded the store
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            else:
                for old in range(version, SCHEMA_VERSION):
                    step = _MIGRATIONS[old]
                    if callable(step):
                        step(db)
                    else:
                        for statement in step:
                            db.execute(statement)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                           (str(SCHEMA_VERSION),))
            db.execute(_INDEXES)

    def _checked_version(self) -> int | None:
        """The store's schema version (None: an empty file); refuses foreign and newer files."""
        db = self._db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = None
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = _schema_version(self.path, row)
        if tables and version is None:  # never write kanbench's tables into another file
            raise StoreError(f"{self.path} is an SQLite file but not a kanbench results store "
                             f"(it has no kanbench schema version); pass a store that "
                             f"'python -m bench run' wrote, or a new path")
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, this kanbench "
                             f"reads up to version {SCHEMA_VERSION}; upgrade kanbench "
                             f"or use a new --store path")
        return version

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
            for table in ("curves", "run_values", "series", "claims"):
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

    # -- claims: which process is running which run ---------------------------------------
    def claim(self, key: str, data_hash: str | None = None, retry_errors: bool = False) -> bool:
        """Claim the run ``key`` for this process: False when a stored result of it stands
        meanwhile (see :func:`reusable`) or a live process holds it. A claim whose process is
        gone (killed, crashed) is taken over."""
        me = _process_identity()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # one claimer at a time
            row = self._db.execute("SELECT status, data_hash FROM runs WHERE run_key = ?",
                                   (key,)).fetchone()
            if row is not None and reusable(row[0], row[1], data_hash, retry_errors):
                return False
            holder = self._db.execute(
                "SELECT host, pid, process_start, claimed_at FROM claims WHERE run_key = ?",
                (key,)).fetchone()
            if holder is not None and tuple(holder[:3]) != me and _alive(*holder):
                return False
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                             (key, *me, _now()))
        return True

    def release(self, key: str) -> None:
        """Give up this process's claim of ``key`` (the run is not finished)."""
        host, pid, start = _process_identity()
        with self._db:
            self._db.execute("DELETE FROM claims WHERE run_key = ? AND host = ? AND pid = ? "
                             "AND process_start = ?", (key, host, pid, start))

    def claims(self) -> dict[str, tuple[str, int, bool]]:
        """run_key -> (host, pid, alive) of every claim."""
        rows = self._db.execute("SELECT run_key, host, pid, process_start, claimed_at FROM claims")
        return {k: (h, p, _alive(h, p, s, at)) for k, h, p, s, at in rows}

    @contextmanager
    def heartbeat(self, key: str, every_s: float = HEARTBEAT_S) -> Iterator[None]:
        """While the block runs, renew this process's claim of ``key`` every ``every_s``
        seconds (from a thread with its own connection), so that processes on other hosts,
        which cannot see whether this one lives, let the claim expire only when it stops."""
        stop = threading.Event()
        host, pid, start = _process_identity()

        def beat() -> None:
            db = sqlite3.connect(self.path, timeout=30)
            try:
                while not stop.wait(every_s):
                    with db:
                        db.execute("UPDATE claims SET claimed_at = ? WHERE run_key = ? AND "
                                   "host = ? AND pid = ? AND process_start = ?",
                                   (_now(), key, host, pid, start))
            finally:
                db.close()

        thread = threading.Thread(target=beat, name=f"kanbench-claim-{key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    # -- reading ---------------------------------------------------------------------------
    def statuses(self) -> dict[str, tuple[str, str | None]]:
        """run_key -> (status, error) for every stored run."""
        return {k: (s, e) for k, s, e in self._db.execute("SELECT run_key, status, error FROM runs")}

    def stored(self, key: str) -> tuple[str | None, str | None]:
        """(status, data_hash) of the run ``key`` ((None, None) when it is not stored)."""
        row = self._db.execute("SELECT status, data_hash FROM runs WHERE run_key = ?",
                               (key,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def data_hashes(self) -> dict[str, str | None]:
        """run_key -> the content hash of the data each stored run trained on (None: unknown,
        a run stored before hashes were recorded)."""
        return dict(self._db.execute("SELECT run_key, data_hash FROM runs"))

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

    def series(self, *, wide: bool = False, names: Iterable[str] | None = None) -> pd.DataFrame:
        """Per-step series with the run's identifying columns: long (one row per run, step and
        name) or ``wide`` (one row per run and step, one column per name); only the series
        ``names`` when given (read by SQLite: a probed store holds millions of points)."""
        where, params = "", ()
        if names is not None:
            params = tuple(names)
            where = f"WHERE s.name IN ({', '.join('?' for _ in params)}) " if params else \
                "WHERE 0 "
        long = pd.read_sql_query(
            "SELECT s.run_key, r.pair_key, r.dataset, r.model, r.scheme, r.seed, s.step, "
            "s.epoch, s.name, s.value FROM series s JOIN runs r USING (run_key) "
            f"{where}ORDER BY r.rowid, s.step, s.name", self._db, params=params)
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
        """The tidy table: one row per run, the headline columns, the run's training scheme
        field by field (see :func:`training_columns`), then every named per-run value stored."""
        df = self.runs()
        headline = df[[c for c in EXPORT_COLUMNS if c in df.columns]]
        return pd.concat([headline, training_columns(df.config_json),
                          option_columns(df.config_json), df[self.value_names()]], axis=1)


def training_columns(configs: pd.Series) -> pd.DataFrame:
    """Every field of each run's training scheme as a column (``optimizer``, ``lr``,
    ``init``...; nested settings joined with ``_``, e.g. ``schedule_kind``; a field named like a
    headline column gets the prefix ``training_``, e.g. ``training_epochs``, the planned epochs).
    A run stored before a field existed shows that field's default, which is what it ran with."""
    rows = []
    for config in configs:
        training = TrainingSpec.model_validate(json.loads(config).get("training", {}))
        rows.append(_flat(training.model_dump(mode="json")))
    table = pd.DataFrame.from_records(rows, index=configs.index)
    return table.rename(columns={c: f"training_{c}" for c in table.columns
                                 if c in _RUN_COLUMN_NAMES})


def option_columns(configs: pd.Series) -> pd.DataFrame:
    """Each run's model options as columns ``option_<key>``: a KAN family's hyper-parameters
    (``option_basis``, ``option_degree``, ``option_centres``...), stored with their defaults
    filled in, and an implementation's settings (``option_contraction``); empty where a run's
    model has none. Lists are written as JSON text (``option_range`` ``[-2.0, 2.0]``)."""
    rows = []
    for config in configs:
        options = json.loads(config).get("arch", {}).get("options", {})
        rows.append({f"option_{k}": json.dumps(v) if isinstance(v, (list, dict)) else v
                     for k, v in _flat(options).items()})
    return pd.DataFrame.from_records(rows, index=configs.index)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{name}_"))
        else:
            out[f"{prefix}{name}"] = value
    return out


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
        # of the architecture as solved and built (a grid refinement changes the final count)
        "budget_error": _budget_error(budget.get("achieved", spec.params), budget.get("target")),
        "device": spec.device, "finished_at": _now(),
        "config_json": spec.config_json(),
        "provenance_json": json.dumps(result.provenance, sort_keys=True),
        "data_json": json.dumps(result.data_info, sort_keys=True, default=str),
        "env_json": json.dumps(env, sort_keys=True),
    }
    for name in _RUN_COLUMN_NAMES - row.keys():  # the rest are RunResult's headline fields
        row[name] = getattr(result, name)
    return {name: row[name] for name, _ in RUN_COLUMNS}


def _same_data(stored: str | None, planned: str | None) -> bool:
    """Whether a stored run trained on the planned data (unknown on either side: assumed)."""
    return stored is None or planned is None or stored == planned


def reusable(status: str | None, stored_hash: str | None, planned_hash: str | None,
             retry_errors: bool = False) -> bool:
    """Whether a stored run (``status`` None: not stored) stands, rather than being run: a
    finished run on the same data, or an error or a timeout unless errors are retried."""
    if status in FINISHED:
        return _same_data(stored_hash, planned_hash)
    return status in ("error", "timeout") and not retry_errors


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _process_start(pid: int) -> str:
    """When process ``pid`` started (Linux: clock ticks since boot), so a claim is not taken
    for alive when its pid is reused by another process; "" where unknown, "exited" for a
    process that has exited but not been reaped yet (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    if len(fields) < 20:
        return ""
    return "exited" if fields[0] in ("Z", "X") else fields[19]


def _process_identity() -> tuple[str, int, str]:
    pid = os.getpid()
    return socket.gethostname(), pid, _process_start(pid)


def _alive(host: str, pid: int, start: str, claimed_at: str) -> bool:
    """Whether the claiming process still runs: on this host, whether that process exists; on
    another host (which cannot be checked from here), whether it renewed its claim within
    :data:`CLAIM_EXPIRY_S` (see :meth:`Store.heartbeat`)."""
    if host != socket.gethostname():
        try:
            renewed = datetime.fromisoformat(claimed_at)
        except (TypeError, ValueError):
            return False
        return (datetime.now(timezone.utc) - renewed).total_seconds() < CLAIM_EXPIRY_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    now = _process_start(pid)
    return now != "exited" and now == start


def _budget_error(achieved: float | None, target: int | None) -> float | None:
    """The relative error of the solved architecture's parameters, or FLOPs for a FLOPs
    budget (``achieved``), against its target."""
    if achieved is None or not target:
        return None
    return (achieved - target) / target


def default_store_path(suite_name: str) -> Path:
    """results/<suite>.sqlite, the name sanitised (bench.names): a suite name never picks
    the folder."""
    from bench.names import named_file

    return named_file("results", suite_name, ".sqlite", "suite name")
