"""Local worker processes (--executor process): the same results as in-process, one writer,
a killed worker's run retried."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from bench import suite as suite_mod
from bench.cli import main
from bench.machine import usable_cpus
from bench.plan import build_plan
from bench.runner import execute
from bench.store import Store

SUITE = """
name: pool
seeds: [0, 1]
training: {epochs: 2, batch_size: 32, lr: 0.01}
datasets: [iris]
models:
  - {name: kan, adapter: native, hidden: [3], grid: 3}
  - {name: mlp, adapter: mlp, hidden: [4]}
"""


def _plan(write_suite):
    path = write_suite(SUITE)
    return build_plan(suite_mod.load(path), path)


def _metrics(path):
    with Store(path, readonly=True) as s:
        runs = s.runs().set_index("run_key")
    return runs[["status", "train_metric", "val_metric", "test_metric", "concurrent_runs",
                 "threads"]]


def test_two_workers_give_the_metrics_of_one_process(write_suite, tmp_path):
    plan = _plan(write_suite)
    with Store(tmp_path / "local.sqlite") as s:
        execute(plan, s)
    with Store(tmp_path / "pool.sqlite") as s:
        summary = execute(plan, s, jobs=2)
    assert summary.ran == len(plan.runs) == 4 and summary.statuses == {"ok": 4}
    local, pool = _metrics(tmp_path / "local.sqlite"), _metrics(tmp_path / "pool.sqlite")
    assert sorted(local.index) == sorted(pool.index)
    for column in ("train_metric", "val_metric", "test_metric"):
        assert pool[column].to_dict() == pytest.approx(local.loc[pool.index, column].to_dict(),
                                                       abs=1e-6)
    assert set(pool.concurrent_runs) == {2} and set(local.concurrent_runs) == {1}
    cpus = usable_cpus()
    assert set(pool.threads) == {max(1, cpus // 2)}  # workers x threads <= CPUs


class _KillFirst:
    """Progress that kills the worker process given the first run, once."""

    def __init__(self, pools):
        self.pools, self.killed, self.finished = pools, [], []

    def start(self, total, pending): pass
    def run_epoch(self, *a): pass
    def run_done_elsewhere(self, spec): pass
    def waiting(self, runs, holders): pass
    def close(self): pass

    def run_started(self, spec):
        if not self.killed:
            pool = self.pools[0]
            slot = next(s for s in pool._slots if s.spec is None)  # the one about to get it
            self.killed.append(spec.key)
            threading.Timer(0.5, os.kill, (slot.process.pid, signal.SIGKILL)).start()

    def run_finished(self, spec, result):
        self.finished.append((spec.key, result.status, result.values.get("attempts")))


def test_a_killed_worker_is_replaced_and_its_run_retried(write_suite, tmp_path, monkeypatch):
    import bench.runner as runner

    pools = []
    original = runner.WorkerPool

    def recording(*args, **kwargs):
        pools.append(original(*args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(runner, "WorkerPool", recording)
    plan = _plan(write_suite)
    progress = _KillFirst(pools)
    with Store(tmp_path / "s.sqlite") as s:
        summary = execute(plan, s, jobs=2, progress=progress)
        runs = s.runs().set_index("run_key")
    assert summary.statuses == {"ok": 4}
    killed = progress.killed[0]
    assert runs.status[killed] == "ok" and runs.attempts[killed] == 2
    assert [f for f in progress.finished if f[0] == killed] == [(killed, "ok", 2)]


def test_jobs_without_the_process_executor_is_an_error(write_suite, capsys):
    path = write_suite(SUITE)
    assert main(["run", str(path), "--jobs", "2", "--no-report"]) == 2
    assert "--jobs sets the worker processes of --executor process" in capsys.readouterr().err
