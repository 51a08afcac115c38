"""The store under hostile conditions: read-only and foreign files, damaged schema versions,
unwritable locations, results on other data, several processes on one store."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch

from bench import machine, runner
from bench import suite as suite_mod
from bench.cli import main
from bench.data_identity import content_hash
from bench.datasets import cached_dataset, load_dataset
from bench.errors import StoreError
from bench.plan import build_plan
from bench.records import RunResult, SplitSpec
from bench.runner import execute, run_one
from bench.store import CLAIM_EXPIRY_S, Store, _process_start
from helpers import schema2_store

REPO = Path(__file__).resolve().parents[1]

SUITE = """
name: hard
seeds: [0, 1, 2, 3]
training: {epochs: 2, batch_size: 32}
datasets: [iris]
models:
  - {name: mlp, adapter: mlp, hidden: [4]}
  - {name: wide, adapter: mlp, hidden: [16]}
"""


class QuietProgress:
    """A runner progress that shows nothing (tests override what they watch)."""

    def start(self, total, pending): pass
    def run_started(self, spec): pass
    def run_epoch(self, spec, epoch, epochs, metric, value): pass
    def run_finished(self, spec, result): pass
    def run_done_elsewhere(self, spec): pass
    def waiting(self, runs, holders): pass
    def close(self): pass


def _plan(write_suite, text=SUITE):
    path = write_suite(text)
    return build_plan(suite_mod.load(path), path)


def _version(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    finally:
        db.close()


# -- read-only access ----------------------------------------------------------------------

def test_readonly_access_never_writes_and_reads_an_older_schema(tmp_path):
    path = tmp_path / "old.sqlite"
    schema2_store(path)
    before = path.read_bytes()
    with Store(path, readonly=True) as store:
        runs = store.runs()
        assert len(runs) == 16 and runs.pair_key.notna().all()  # upgraded in memory
    assert path.read_bytes() == before and _version(path) == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.sqlite"]  # no -wal/-shm left


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="permission bits do not bind root")
def test_export_and_report_work_on_a_store_in_a_readonly_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    schema2_store(folder / "s.sqlite")
    folder.chmod(0o500)
    try:
        assert main(["export", str(folder / "s.sqlite"), "-o", str(tmp_path / "x.csv")]) == 0
        assert main(["report", str(folder / "s.sqlite"), "--out-dir", str(tmp_path / "r")]) == 0
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("version", ["abc", "0", "-3"])
def test_a_damaged_schema_version_is_a_clear_error(tmp_path, version):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    db.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="unreadable schema version"):
            Store(path, readonly=readonly)


def test_an_unwritable_store_location_fails_before_training(write_suite, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = write_suite(SUITE)
    assert main(["run", str(path), "--store", str(blocker / "s.sqlite"), "-q",
                 "--out-dir", str(tmp_path / "reports")]) == 2
    out, err = capsys.readouterr()
    assert "cannot create the store's folder" in err and "Traceback" not in err
    assert "runs:" not in out and "[      ok]" not in out + err  # nothing trained


# -- results on other data are not reused ----------------------------------------------------

def test_the_plan_carries_each_dataset_content_hash(write_suite):
    plan = _plan(write_suite)
    data = cached_dataset("iris", SplitSpec())
    assert {s.data_hash for s in plan.runs} == {content_hash(data)}
    shuffled = load_dataset("iris", SplitSpec())
    shuffled.y_train = shuffled.y_train[torch.randperm(len(shuffled.y_train))]
    assert content_hash(shuffled) != content_hash(data)


def test_a_run_stored_on_other_data_is_redone(write_suite, tmp_path):
    plan = _plan(write_suite)
    with Store(tmp_path / "s.sqlite") as store:
        assert execute(plan, store).ran == 8
    db = sqlite3.connect(tmp_path / "s.sqlite")  # two runs made on a corrupted copy
    with db:
        db.execute("UPDATE runs SET data_hash = 'corrupted' WHERE seed = 0")
    db.close()
    with Store(tmp_path / "s.sqlite") as store:
        again = execute(plan, store)
        assert (again.data_changed, again.ran, again.reused) == (2, 2, 6)
        assert set(store.data_hashes().values()) == {plan.runs[0].data_hash}


def test_a_worker_that_loads_other_data_than_planned_records_an_error(write_suite):
    spec = _plan(write_suite).runs[0].model_copy(update={"data_hash": "0" * 20})
    result = run_one(spec)
    assert result.status == "error" and "not the data it was planned on" in result.error


# -- several processes on one store ---------------------------------------------------------

def test_a_claim_held_by_a_live_process_is_left_to_it_then_taken_over(write_suite, tmp_path):
    plan = _plan(write_suite)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = _process_start(holder.pid)
        with Store(tmp_path / "s.sqlite") as store:
            db = store._db
            with db:
                for spec in plan.runs[:3]:
                    db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, 'now')",
                               (spec.key, socket.gethostname(), holder.pid, start))
            assert not store.claim(plan.runs[0].key)
            seen = []

            class Watch(QuietProgress):
                def run_started(self, spec): seen.append(("started", spec.key))
                def run_done_elsewhere(self, spec): seen.append(("elsewhere", spec.key))
                def waiting(self, runs, holders):
                    seen.append(("waiting", runs))
                    if len([s for s in seen if s[0] == "waiting"]) == 2:
                        holder.kill()  # the holder dies: its claims expire

            summary = execute(plan, store, progress=Watch(), poll_s=0.05)
            assert summary.ran == 8 and store.claims() == {}
        held = {s.key for s in plan.runs[:3]}
        started = [k for what, k in seen if what == "started"]
        waits = [i for i, (what, _) in enumerate(seen) if what == "waiting"]
        assert seen[waits[0]] == ("waiting", 3)
        # the five free runs first, the three held ones only after their holder was gone
        assert set(started[:5]) == {s.key for s in plan.runs[3:]}
        assert set(started[5:]) == held and len(started) == 8
    finally:
        holder.kill()
        holder.wait()


def test_a_claim_from_another_host_expires_unless_renewed(write_suite, tmp_path):
    key = _plan(write_suite).runs[0].key
    with Store(tmp_path / "s.sqlite") as store:
        def claimed(at):
            with store._db:
                store._db.execute("INSERT OR REPLACE INTO claims VALUES (?, 'elsewhere', 1, '', ?)",
                                  (key, at))
        now = datetime.now(timezone.utc)
        claimed(now.isoformat(timespec="seconds"))
        assert not store.claim(key)  # live on its host, as far as anyone here can tell
        claimed((now - timedelta(seconds=CLAIM_EXPIRY_S + 60)).isoformat(timespec="seconds"))
        assert store.claim(key)  # not renewed: its process is taken to have gone
        with store._db:
            store._db.execute("UPDATE claims SET claimed_at = '2000-01-01T00:00:00+00:00'")
        with store.heartbeat(key, every_s=0.05):
            time.sleep(0.3)
        renewed = store._db.execute("SELECT claimed_at FROM claims").fetchone()[0]
        assert datetime.fromisoformat(renewed) > now - timedelta(seconds=5)


def test_two_processes_on_one_store_run_the_suite_once_between_them(write_suite, tmp_path):
    # long enough (about 2 s a process) for the two processes to overlap
    path = write_suite(SUITE.replace("epochs: 2", "epochs: 40").replace("[iris]", "[digits]"))
    store = tmp_path / "shared.sqlite"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on this machine's two cores
    cmd = [sys.executable, "-m", "bench", "run", str(path), "--store", str(store), "-q",
           "--no-report", "--device", "cpu"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = []
    for out, _ in outs:
        line = next(line for line in out.splitlines() if line.startswith("8 runs"))
        ran.append(int(line.split("ran ")[1].split(" ")[0]))
    assert sum(ran) == 8, outs  # every run once, by one process or the other
    with Store(store, readonly=True) as s:
        assert len(s.finished_keys()) == 8 and s.claims() == {}


def test_other_processes_cpu_load_is_measured_and_our_own_is_not():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        start = machine.sample()
        time.sleep(1.0)
        assert machine.others_load(start, machine.sample()) >= 0.6
        assert machine.busy_warning(threads=os.cpu_count(), seconds=0.5) is not None
    finally:
        spinner.kill()
        spinner.wait()
    start = machine.sample()
    deadline = time.perf_counter() + 1.0
    while time.perf_counter() < deadline:  # this process spins: not counted as others
        pass
    assert machine.others_load(start, machine.sample()) < 0.5
    assert machine.oversubscribed(1.0, threads=2, cores=2)
    assert not machine.oversubscribed(0.3, threads=2, cores=2)


def test_each_run_records_the_cpu_load_of_other_processes(write_suite):
    text = SUITE.replace("epochs: 2", "epochs: 80").replace("[iris]", "[digits]")
    result = run_one(_plan(write_suite, text).runs[0])
    assert result.wall_time_s > 0.3 and result.values["others_cpu_load"] >= 0
    assert result.data_hash is not None


def test_interrupting_a_run_releases_its_claim(write_suite, tmp_path, monkeypatch):
    plan = _plan(write_suite)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_one", interrupted)
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            execute(plan, store)
        assert store.claims() == {}


def test_a_run_that_failed_in_another_process_meanwhile_is_not_retried(write_suite, tmp_path):
    plan = _plan(write_suite)
    other = plan.runs[0]
    with Store(tmp_path / "s.sqlite") as store:
        class Other(QuietProgress):  # once this process has planned, another records a failure
            def start(self, total, pending):
                store.save(other, RunResult(status="error", error="boom"), env={})

        summary = execute(plan, store, progress=Other())
        assert (summary.ran, summary.elsewhere) == (7, 1)
        assert store.statuses()[other.key] == ("error", "boom")


def test_a_run_reports_its_epoch_and_validation_metric_as_it_goes(write_suite, tmp_path):
    plan = _plan(write_suite)
    seen = []

    class Epochs(QuietProgress):
        def run_epoch(self, spec, epoch, epochs, metric, value):
            seen.append((spec.key, epoch, epochs, metric, value))

    with Store(tmp_path / "s.sqlite") as store:
        execute(plan, store, progress=Epochs())
        curves = store.curves()
    assert len(seen) == 8 * 2
    for key, epoch, epochs, metric, value in seen:
        row = curves[(curves.run_key == key) & (curves.epoch == epoch)]
        assert (epochs, metric) == (2, "accuracy") and value == row.val_metric.item()
