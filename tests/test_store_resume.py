"""Results store: atomic runs, resume after a kill, nothing redone, nothing lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bench import suite as suite_mod
from bench.errors import StoreError
from bench.plan import build_plan
from bench.runner import execute
from bench.store import SCHEMA_VERSION, Store

SUITE = """
name: resume
seeds: [0, 1, 2, 3]
training: {epochs: 30, batch_size: 16}
datasets: [wine, iris]
models:
  - {name: mlp, adapter: mlp, hidden: [32]}
  - {name: kan, adapter: native, hidden: [4]}
"""


def rows(store_path):
    db = sqlite3.connect(store_path)
    try:
        return {k: (s, f) for k, s, f in
                db.execute("SELECT run_key, status, finished_at FROM runs")}
    finally:
        db.close()


def test_rerun_skips_finished_runs(write_suite, tmp_path):
    path = write_suite(SUITE.replace("epochs: 30", "epochs: 2"))
    plan = build_plan(suite_mod.load(path), path)
    with Store(tmp_path / "s.sqlite") as store:
        first = execute(plan, store)
        assert first.ran == len(plan.runs) == 16 and first.reused == 0
        snapshot = store.runs()
        curves = store.curves()
        second = execute(plan, store)
        assert second.ran == 0 and second.reused == 16
        assert store.runs().equals(snapshot)
        assert store.curves().equals(curves)
        assert set(store.finished_keys()) == {s.key for s in plan.runs}
        assert len(curves) == 16 * 2


def test_keys_are_stable_and_distinct(write_suite):
    path = write_suite(SUITE)
    a = build_plan(suite_mod.load(path), path)
    b = build_plan(suite_mod.load(path), path)
    assert [s.key for s in a.runs] == [s.key for s in b.runs]
    assert len({s.key for s in a.runs}) == len(a.runs)
    # renaming the suite does not change keys; changing a training setting does
    renamed = build_plan(suite_mod.load(write_suite(SUITE.replace("resume", "other"), "o")), path)
    assert [s.key for s in renamed.runs] == [s.key for s in a.runs]
    changed = build_plan(suite_mod.load(write_suite(SUITE.replace("epochs: 30", "epochs: 31"),
                                                    "c")), path)
    assert not {s.key for s in changed.runs} & {s.key for s in a.runs}


def test_resume_after_kill(write_suite, tmp_path):
    """SIGKILL the real CLI midway; the finished runs survive and are not redone."""
    path = write_suite(SUITE)
    store_path = tmp_path / "resume.sqlite"
    cmd = [sys.executable, "-m", "bench", "run", str(path), "--store", str(store_path),
           "--no-report", "-q"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        before = {}
        while time.monotonic() < deadline and proc.poll() is None:
            if store_path.exists():
                try:
                    before = rows(store_path)
                except sqlite3.OperationalError:
                    before = {}
                if len(before) >= 2:
                    break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_with = rows(store_path)
    assert 2 <= len(killed_with) < 16, "the kill should land midway through the suite"
    assert all(status == "ok" for status, _ in killed_with.values())

    done = subprocess.run(cmd[:-1], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(killed_with)} already finished" in done.stdout
    after = rows(store_path)
    assert len(after) == 16
    for key, value in killed_with.items():  # earlier runs kept exactly as they were
        assert after[key] == value
    with Store(store_path) as store:
        curves = store.curves()
    assert curves.groupby("run_key").epoch.max().eq(30).all()


def test_open_missing_store_is_a_clear_error(tmp_path, capsys):
    from bench.cli import main

    assert main(["report", str(tmp_path / "none.sqlite")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_store_of_an_older_schema_is_upgraded_in_place(write_suite, tmp_path):
    """A store written before ``warmup_time_s`` existed keeps its runs and still skips them."""
    path = write_suite(SUITE.replace("epochs: 30", "epochs: 1").replace("[0, 1, 2, 3]", "[0]"))
    plan = build_plan(suite_mod.load(path), path)
    store_path = tmp_path / "old.sqlite"
    with Store(store_path) as store:
        execute(plan, store)
    db = sqlite3.connect(store_path)  # make it a version-1 store: no warmup_time_s column
    with db:
        db.execute("ALTER TABLE runs DROP COLUMN warmup_time_s")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    before = rows(store_path)
    with Store(store_path) as store:
        assert "warmup_time_s" in store.runs().columns
        again = execute(plan, store)
    assert again.ran == 0 and again.reused == len(plan.runs)
    assert rows(store_path) == before
    db = sqlite3.connect(store_path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == \
        (str(SCHEMA_VERSION),)
    db.close()


def test_store_of_a_newer_schema_is_refused(tmp_path):
    store_path = tmp_path / "new.sqlite"
    Store(store_path).close()
    db = sqlite3.connect(store_path)
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(store_path)
