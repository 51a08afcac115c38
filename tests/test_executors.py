"""Executors (--executor local | process | ray): the same results whichever runs them, one
writer, a killed worker's run retried, runs over the timeout stopped and recorded as such, a
killed driver resumed without duplicates, and bad settings refused before any training."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import suite as suite_mod
from bench.cli import main
from bench.errors import SuiteError
from bench.executors import Execution, RayPool, WorkerPool
from bench.machine import usable_cpus
from bench.plan import build_plan
from bench.records import RunResult
from bench.report import write_report
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

# an MLP that would train for long: a timeout of a second stops it after some epochs
LONG = """
name: long
seeds: [0]
training: {epochs: 100000, batch_size: 16, lr: 0.01}
datasets: [iris]
models:
  - {name: mlp, adapter: mlp, hidden: [4]}
"""


def _plan(write_suite, text=SUITE):
    path = write_suite(text)
    return build_plan(suite_mod.load(path), path)


def _metrics(path):
    with Store(path, readonly=True) as s:
        runs = s.runs().set_index("run_key")
    return runs[["status", "train_metric", "val_metric", "test_metric", "concurrent_runs",
                 "threads", "executor"]]


def _same_metrics(a, b):
    assert sorted(a.index) == sorted(b.index)
    for column in ("train_metric", "val_metric", "test_metric"):
        assert b[column].to_dict() == pytest.approx(a.loc[b.index, column].to_dict(), abs=1e-6)


def test_two_workers_give_the_metrics_of_one_process(write_suite, tmp_path):
    plan = _plan(write_suite)
    with Store(tmp_path / "local.sqlite") as s:
        execute(plan, s)
    with Store(tmp_path / "pool.sqlite") as s:
        summary = execute(plan, s, execution=Execution("process", jobs=2))
    assert summary.ran == len(plan.runs) == 4 and summary.statuses == {"ok": 4}
    local, pool = _metrics(tmp_path / "local.sqlite"), _metrics(tmp_path / "pool.sqlite")
    _same_metrics(local, pool)
    # two workers, four runs: at least one run had the other worker's run beside it
    assert set(pool.concurrent_runs) <= {1, 2} and 2 in set(pool.concurrent_runs)
    assert set(local.concurrent_runs) == {1}
    assert set(local.executor) == {"local"} and set(pool.executor) == {"process"}
    assert set(pool.threads) == {max(1, usable_cpus() // 2)}  # workers x threads <= CPUs
    # the report flags timings taken beside other runs, and only those
    md = {name: write_report(tmp_path / f"{name}.sqlite", tmp_path / name)[0].read_text()
          for name in ("local", "pool")}
    assert "runs at once (worker processes or Ray)" in md["pool"]
    assert "runs at once" not in md["local"]


class _KillFirst:
    """Progress that kills the worker process running the first run, once, half a second in."""

    def __init__(self, pools):
        self.pools, self.killed, self.finished = pools, [], []

    def start(self, total, pending): pass
    def run_epoch(self, *a): pass
    def run_done_elsewhere(self, spec): pass
    def waiting(self, runs, holders): pass
    def close(self): pass

    def run_started(self, spec):
        if not self.killed:
            self.killed.append(spec.key)
            threading.Timer(0.5, self._kill, (spec,)).start()

    def _kill(self, spec):
        pid = self.pools[0].worker_of(spec)
        assert pid is not None, "the run finished before the kill: make it longer"
        os.kill(pid, signal.SIGKILL)

    def run_finished(self, spec, result):
        self.finished.append((spec.key, result.status, result.values.get("attempts")))


def _recording_pools(monkeypatch):
    pools = []
    original = Execution.pool

    def recording(self, data_dir):
        pools.append(original(self, data_dir))
        return pools[-1]

    monkeypatch.setattr(Execution, "pool", recording)
    return pools


def test_a_killed_worker_is_replaced_and_its_run_retried(write_suite, tmp_path, monkeypatch):
    pools = _recording_pools(monkeypatch)
    plan = _plan(write_suite, SUITE.replace("epochs: 2", "epochs: 40"))
    progress = _KillFirst(pools)
    with Store(tmp_path / "s.sqlite") as s:
        summary = execute(plan, s, execution=Execution("process", jobs=2), progress=progress)
        runs = s.runs().set_index("run_key")
    assert summary.statuses == {"ok": 4}
    killed = progress.killed[0]
    assert runs.status[killed] == "ok" and runs.attempts[killed] == 2
    assert [f for f in progress.finished if f[0] == killed] == [(killed, "ok", 2)]


def test_a_worker_that_dies_more_than_retries_is_an_error_naming_the_cause(write_suite,
                                                                           tmp_path, monkeypatch):
    pools = _recording_pools(monkeypatch)
    plan = _plan(write_suite, SUITE.replace("epochs: 2", "epochs: 40"))
    progress = _KillFirst(pools)
    with Store(tmp_path / "s.sqlite") as s:
        summary = execute(plan, s, execution=Execution("process", jobs=2, retries=0),
                          progress=progress)
        runs = s.runs().set_index("run_key")
    killed = progress.killed[0]
    assert summary.statuses == {"ok": 3, "error": 1}
    assert runs.status[killed] == "error"
    assert ("worker process running this run died (exit code -9) on attempt 1 of 1: not "
            "retried again (retries: 0)") in runs.error[killed]


def test_a_run_over_its_timeout_stops_and_keeps_its_epochs(write_suite, tmp_path):
    plan = _plan(write_suite, LONG)
    with Store(tmp_path / "s.sqlite") as s:
        summary = execute(plan, s, execution=Execution(timeout_s=1.5))
        run = s.runs().iloc[0]
        curves = s.curves()
    assert summary.statuses == {"timeout": 1}
    assert run.status == "timeout" and "over the suite's timeout of 1.5 s" in run.error
    assert run.timeout_s == 1.5
    assert 0 < run.epochs < 100000 and len(curves) == run.epochs
    assert run.test_metric is not None  # chosen by validation among the epochs it had
    md = write_report(tmp_path / "s.sqlite", tmp_path / "reports")[0].read_text()
    assert "1 stopped at the timeout (1.5 s)" in md


def test_a_timed_out_run_is_kept_unless_errors_are_retried(write_suite, tmp_path):
    plan = _plan(write_suite, LONG)
    with Store(tmp_path / "s.sqlite") as s:
        execute(plan, s, execution=Execution(timeout_s=1.0))
        assert execute(plan, s, execution=Execution(timeout_s=1.0)).reused == 1
        again = execute(plan, s, execution=Execution(timeout_s=1.0), retry_errors=True)
    assert again.statuses == {"timeout": 1}


def test_a_suites_execution_block_runs_process_workers_with_a_timeout(write_suite, tmp_path,
                                                                     capsys):
    path = write_suite(LONG.replace("seeds: [0]", "seeds: [0, 1]")
                       + "execution: {executor: process, jobs: 2, timeout: 1.5}\n")
    store = tmp_path / "s.sqlite"
    assert main(["run", str(path), "--store", str(store), "--no-report", "-q"]) == 0
    assert "ran 2 (2 timeout)" in capsys.readouterr().out
    with Store(store, readonly=True) as s:
        runs = s.runs()
    assert set(runs.status) == {"timeout"} and (runs.epochs > 0).all()
    assert set(runs.executor) == {"process"} and set(runs.timeout_s) == {1.5}


def sleep_on_seed_zero(spec, data_dir, threads, timeout_s):
    """A worker's task that never comes back for seed 0 (stuck outside the training loop) and
    returns at once for the others."""
    if spec.seed == 0:
        time.sleep(600)
    return RunResult(status="ok", metric="accuracy", test_metric=float(spec.seed)), {}


def test_a_worker_stuck_past_the_timeout_is_killed_and_replaced(write_suite):
    plan = _plan(write_suite, LONG.replace("seeds: [0]", "seeds: [0, 1]"))
    stuck, quick = plan.runs
    with WorkerPool(1, timeout_s=0.5, grace_s=0.5, target=sleep_on_seed_zero) as pool:
        first = pool.pids[0]
        pool.submit(stuck)
        done = []
        deadline = time.monotonic() + 60
        while not done and time.monotonic() < deadline:
            done = pool.collect(0.2)
        assert [(f.spec.key, f.result.status) for f in done] == [(stuck.key, "timeout")]
        assert "killed 1 s after the run started" in done[0].result.error
        assert pool.pids[0] != first and not pool.busy()
        pool.submit(quick)  # the replacement works
        while not (done := pool.collect(0.2)):
            pass
        assert done[0].result.status == "ok" and done[0].result.test_metric == 1.0


def test_bad_execution_settings_are_refused_before_training(write_suite, capsys):
    path = write_suite(SUITE)
    assert main(["run", str(path), "--jobs", "2", "--no-report"]) == 2
    assert "--jobs sets the worker processes of --executor process" in capsys.readouterr().err
    assert main(["run", str(path), "--address", "auto", "--no-report"]) == 2
    assert "--address names the Ray cluster of --executor ray" in capsys.readouterr().err
    assert main(["run", str(path), "--timeout", "0", "--no-report"]) == 2
    assert "--timeout must be a number of seconds above 0" in capsys.readouterr().err
    too_many = usable_cpus() + 1
    assert main(["run", str(path), "--executor", "process", "--jobs", str(too_many),
                 "--no-report"]) == 2
    assert f"exceed the {usable_cpus()} CPUs" in capsys.readouterr().err
    cpus = write_suite(SUITE + f"execution: {{executor: process, resources: {{cpus: {too_many}}}}}\n")
    assert main(["run", str(cpus), "--no-report"]) == 2
    assert "execution.resources.cpus" in capsys.readouterr().err
    gpus = write_suite(SUITE + "execution: {executor: process, resources: {gpus: 1}}\n")
    assert main(["run", str(gpus), "--no-report"]) == 2
    assert "execution.resources.gpus" in capsys.readouterr().err


def test_a_ray_address_where_nothing_listens_is_refused_at_once(write_suite, capsys):
    import socket

    with socket.socket() as free:  # a port nobody listens on: bound, never listening
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        path = write_suite(SUITE)
        started = time.monotonic()
        assert main(["run", str(path), "--executor", "ray", "--address",
                     f"127.0.0.1:{port}", "--no-report"]) == 2
    assert time.monotonic() - started < 30
    assert f"nothing answers at 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["run", str(path), "--executor", "ray", "--address", "head-node",
                 "--no-report"]) == 2
    assert "is not auto, HOST:PORT or ray://HOST:PORT" in capsys.readouterr().err


def test_a_suite_names_a_misplaced_execution_option(write_suite):
    path = write_suite(SUITE + "execution: {executor: local, jobs: 2}\n")
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    assert "execution" in str(err.value) and "jobs sets the worker processes" in str(err.value)
    path = write_suite(SUITE + "execution: {timeout: -1}\n")
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    assert "execution.timeout" in str(err.value)


def test_the_ray_executor_without_ray_names_the_extra(write_suite, capsys, monkeypatch):
    import bench.executors as executors

    # Ray is installed in CI's environment: what a user without the extra sees is simulated
    real = executors.importlib.util.find_spec
    monkeypatch.setattr(executors.importlib.util, "find_spec",
                        lambda name, *args: None if name == "ray" else real(name, *args))
    path = write_suite(SUITE)
    assert main(["run", str(path), "--executor", "ray", "--no-report"]) == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# slow: a killed driver, Ray


def _driver(suite: Path, store: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(suite), "--store", str(store),
         "--no-report", "-q", *extra],
        cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def _finished(store: Path) -> dict[str, str]:
    if not store.exists():
        return {}
    db = sqlite3.connect(store, timeout=30)
    try:
        return dict(db.execute("SELECT run_key, finished_at FROM runs WHERE status = 'ok'"))
    except sqlite3.OperationalError:  # not created yet
        return {}
    finally:
        db.close()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker processes from /proc")
def test_a_killed_driver_resumes_without_duplicates_or_losses(write_suite, tmp_path):
    # runs of a second or two each (native stays eager this short): time to kill mid-suite
    text = SUITE.replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3]").replace("epochs: 2", "epochs: 300")
    path = write_suite(text)
    plan = build_plan(suite_mod.load(path), path)
    store = tmp_path / "s.sqlite"
    driver = _driver(path, store, "--executor", "process", "--jobs", "2")
    deadline = time.monotonic() + 240
    while not _finished(store) and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    workers = _children(driver.pid)
    before = _finished(store)
    assert 1 <= len(before) < len(plan.runs), driver.communicate()[0]
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(3)  # the workers notice their driver is gone and exit
    assert not [w for w in workers if Path(f"/proc/{w}").exists()
                and "bench" in Path(f"/proc/{w}/cmdline").read_bytes().decode(errors="ignore")
                and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    again = _driver(path, store, "--executor", "process", "--jobs", "2")
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output
    after = _finished(store)
    assert set(after) == {s.key for s in plan.runs}  # none lost
    assert {k: after[k] for k in before} == before  # the finished ones not redone
    assert f"{len(before)} already finished, ran {len(plan.runs) - len(before)}" in output
    with Store(store, readonly=True) as s:
        assert len(s.runs()) == len(plan.runs) and not s.claims()


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed: pip install -e "
                                            "\".[ray]\"")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_metrics_of_one_process(write_suite, tmp_path, local_ray):
    plan = _plan(write_suite)
    with Store(tmp_path / "local.sqlite") as s:
        execute(plan, s)
    with Store(tmp_path / "ray.sqlite") as s:
        summary = execute(plan, s, execution=Execution("ray", cpus=1))
    assert summary.statuses == {"ok": 4}
    local, ray = _metrics(tmp_path / "local.sqlite"), _metrics(tmp_path / "ray.sqlite")
    _same_metrics(local, ray)
    assert set(ray.executor) == {"ray"} and set(ray.threads) == {1}
    assert local_ray.is_initialized()  # a session the caller opened is left open


def die_on_first_attempt(spec, data_dir, threads, timeout_s):
    """A Ray task whose worker process dies the first time it runs seed 0 (a marker file in
    the data folder says it did), as a node out of memory would take it."""
    marker = Path(data_dir) / f"died-{spec.seed}"
    if spec.seed == 0 and not marker.exists():
        marker.write_text("")
        os._exit(1)
    if spec.seed == 1:
        time.sleep(600)  # stuck: over the timeout
    return RunResult(status="ok", metric="accuracy", test_metric=float(spec.seed)), {}


@pytest.mark.slow
def test_ray_retries_a_lost_worker_and_stops_a_run_at_its_timeout(write_suite, tmp_path,
                                                                  local_ray):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    plan = _plan(write_suite, LONG.replace("seeds: [0]", "seeds: [0, 1, 2]"))
    pool = RayPool(tmp_path, cpus=1, timeout_s=1.0, grace_s=1.0, target=die_on_first_attempt)
    done = []
    with pool:
        for spec in plan.runs:
            while not pool.idle():
                done += pool.collect()
            pool.submit(spec)
        deadline = time.monotonic() + 120
        while pool.busy() and time.monotonic() < deadline:
            done += pool.collect()
    by_seed = {f.spec.seed: f for f in done}
    assert sorted(by_seed) == [0, 1, 2]
    assert by_seed[0].result.status == "ok" and by_seed[0].attempts == 2
    assert by_seed[1].result.status == "timeout"
    assert by_seed[2].result.status == "ok" and by_seed[2].attempts == 1
