"""Executors that run specifications outside the driver: local worker processes
(``--executor process``, :class:`WorkerPool`) and Ray tasks on one machine or a cluster
(``--executor ray``, :class:`RayPool`).

Both keep a run's work in a worker that loads each dataset once (through the per-process cache,
:func:`bench.datasets.cached_dataset`: a process worker, and a Ray worker process, runs many
runs) and gives it a fixed number of torch threads, so that workers x threads never exceed the
CPUs they were given. Workers only compute: each returns the result and the environment it ran
in, and the driver alone writes the store, so SQLite never sees two writers. Faults:

* a worker that dies while running (killed, out of memory, a crash in native code, a lost Ray
  node) has its run given to another worker, up to ``retries`` times; after that the run is
  recorded as an error naming the cause;
* a run over ``timeout_s`` stops itself at its next step (:class:`bench.callbacks.Deadline`,
  keeping the epochs measured so far); a worker still busy :data:`KILL_GRACE` later (stuck
  outside the training loop) is killed and the run recorded as ``timeout``.

Torch- and Ray-free at import, so the driver imports this cheaply.
"""

from __future__ import annotations

import importlib.util
import itertools
import multiprocessing as mp
import os
import queue
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import KanbenchError
from bench.machine import usable_cpus
from bench.records import RunResult, RunSpec


EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class Execution:
    """How a suite's runs are executed, resolved from the suite's ``execution`` block and the
    command line: ``local`` in the driver; ``process`` in ``jobs`` worker processes; ``ray``
    as Ray tasks (``address``: a running cluster). ``cpus`` torch threads per run (default:
    process, the usable CPUs / jobs; ray, 1; local, torch's default), ``gpus`` per Ray task."""

    executor: str = "local"
    jobs: int = 1
    address: str | None = None
    cpus: int | None = None
    gpus: float = 0
    timeout_s: float | None = None
    retries: int = 1

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, "
                             f"got {self.executor!r}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")

    def pool(self, data_dir: str | Path | None) -> _Pool | None:
        """The executor's pool (None: runs stay in this process)."""
        if self.executor == "process":
            threads = self.cpus or max(1, usable_cpus() // self.jobs)
            return WorkerPool(self.jobs, data_dir, threads=threads, retries=self.retries,
                              timeout_s=self.timeout_s)
        if self.executor == "ray":
            return RayPool(data_dir, address=self.address, cpus=self.cpus, gpus=self.gpus,
                           retries=self.retries, timeout_s=self.timeout_s)
        return None


def kill_after(timeout_s: float, grace_s: float | None = None) -> float:
    """Seconds after a run's start at which its worker is killed: the timeout plus a grace
    (default the larger of 10 s and a tenth of the timeout) for the run to stop itself at a
    step boundary (an epoch's evaluation may take a while)."""
    return timeout_s + (max(10.0, 0.1 * timeout_s) if grace_s is None else grace_s)


def run_in_worker(spec: RunSpec, data_dir: str | None, threads: int | None,
                  timeout_s: float | None) -> tuple[RunResult, dict[str, Any]]:
    """One run as a worker does it, with the environment it ran in (on a cluster, the node's)."""
    import torch

    from bench.envinfo import environment
    from bench.runner import run_one

    if threads:
        torch.set_num_threads(threads)
    try:
        result = run_one(spec, data_dir, timeout_s=timeout_s)
    except Exception as exc:  # run_one records a model's failures itself; this is the rest
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        result = RunResult(status="error", error=f"{type(exc).__name__}: {exc}\n{tail}")
    return result, environment(spec.device)


@dataclass
class Finished:
    """A run an executor is done with: its result, the environment it ran in (None: the
    driver's), how many workers it took and the most runs in flight while it ran."""

    spec: RunSpec
    result: RunResult
    attempts: int
    env: dict[str, Any] | None = None
    concurrent: int = 1


@dataclass
class _Task:
    spec: RunSpec
    attempts: int
    started: float | None = None  # when it started (the timeout counts from then)
    concurrent: int = 1


class _Pool:
    """What both executors share: the runs in flight, their concurrency, retries and timeouts.
    Subclasses start and stop work (:meth:`_dispatch`, :meth:`_kill`) and say when a worker
    is lost."""

    retries: int
    timeout_s: float | None
    grace_s: float | None = None  # see kill_after
    #: whether workers say when a run starts (else it counts as started when handed out)
    reports_start = False

    def _init_pool(self) -> None:
        self._inflight: dict[Any, _Task] = {}  # by the handle of the worker or Ray task
        self._retry: list[tuple[RunSpec, int]] = []

    # -- what the driver calls
    @property
    def capacity(self) -> int:
        raise NotImplementedError

    def idle(self) -> bool:
        """Whether a run can start now (runs waiting for a retry go first)."""
        return not self._retry and len(self._inflight) < self.capacity

    def busy(self) -> bool:
        return bool(self._retry) or bool(self._inflight)

    def running(self) -> list[RunSpec]:
        return [t.spec for t in self._inflight.values()]

    def submit(self, spec: RunSpec, attempts: int = 0) -> None:
        task = _Task(spec, attempts + 1, None if self.reports_start else time.monotonic())
        self._inflight[self._dispatch(spec)] = task
        now = len(self._inflight)
        for t in self._inflight.values():
            t.concurrent = max(t.concurrent, now)

    def collect(self, wait_s: float = 0.2) -> list[Finished]:
        """Results that arrived (waiting up to ``wait_s`` for the first), lost runs requeued or
        given up, runs over the timeout stopped, waiting retries dispatched."""
        done = [self._finished(handle, result, env) for handle, result, env in
                self._arrived(wait_s)]
        for handle, cause in self._lost():
            task = self._inflight.pop(handle)
            if task.attempts <= self.retries:
                self._retry.append((task.spec, task.attempts))
            else:
                done.append(Finished(task.spec, RunResult(status="error", error=(
                    f"{cause} on attempt {task.attempts} of {self.retries + 1}: not retried "
                    f"again (retries: {self.retries})")), task.attempts, None, task.concurrent))
        if self.timeout_s is not None:
            limit = kill_after(self.timeout_s, self.grace_s)
            for handle, task in list(self._inflight.items()):
                if task.started is not None and time.monotonic() - task.started > limit:
                    self._kill(handle)
                    del self._inflight[handle]
                    result = RunResult(status="timeout", error=(
                        f"the worker was killed {limit:g} s after the run started: over the "
                        f"suite's timeout of {self.timeout_s:g} s and not stopping by itself"))
                    result.record("timeout_s", self.timeout_s)
                    done.append(Finished(task.spec, result, task.attempts, None,
                                         task.concurrent))
        while self._retry and len(self._inflight) < self.capacity:
            spec, attempts = self._retry.pop(0)
            self.submit(spec, attempts)
        return done

    def _finished(self, handle: Any, result: RunResult, env: dict | None) -> Finished:
        task = self._inflight.pop(handle)
        return Finished(task.spec, result, task.attempts, env, task.concurrent)

    # -- what an executor provides
    def _dispatch(self, spec: RunSpec) -> Any:
        raise NotImplementedError

    def _arrived(self, wait_s: float) -> list[tuple[Any, RunResult, dict | None]]:
        raise NotImplementedError

    def _lost(self) -> list[tuple[Any, str]]:
        raise NotImplementedError

    def _kill(self, handle: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# local worker processes


def _exit_with_parent() -> None:
    """A worker's watch: when the driver is gone (killed), stop at once rather than finish a
    run nobody will store; its claim is taken over by the next driver on the store."""
    parent = mp.parent_process()
    if parent is not None:
        parent.join()
        os._exit(1)


def _worker(tasks: Any, results: Any, threads: int, data_dir: str | None,
            timeout_s: float | None, target: Any) -> None:
    """A worker's loop: take a specification, run it, send the result; None stops it."""
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    while True:
        task = tasks.get()
        if task is None:
            return
        number, spec = task
        results.put((number, None, None))  # started: the timeout counts from here
        result, env = target(spec, data_dir, threads, timeout_s)
        results.put((number, result, env))


@dataclass
class _Worker:
    process: Any
    tasks: Any
    task: int | None = None  # the number of the run it is on


@dataclass
class WorkerPool(_Pool):
    """``jobs`` worker processes on this machine; see the module docstring. ``target`` is what
    a worker does with a run (tests swap in a module-level function)."""

    jobs: int
    data_dir: str | Path | None = None
    threads: int | None = None
    retries: int = 1
    timeout_s: float | None = None
    grace_s: float | None = None
    target: Any = run_in_worker
    reports_start = True

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")
        if self.threads is None:  # workers x threads never exceed the CPUs
            self.threads = max(1, usable_cpus() // self.jobs)
        self._init_pool()
        self._numbers = itertools.count()  # a run handed out twice gets two numbers
        self._ctx = mp.get_context("spawn")  # no forked torch or SQLite state in workers
        self._results = self._ctx.Queue()
        self._workers = [self._start() for _ in range(self.jobs)]

    def _start(self) -> _Worker:
        tasks = self._ctx.Queue()
        process = self._ctx.Process(
            target=_worker, daemon=True,
            args=(tasks, self._results, self.threads,
                  None if self.data_dir is None else str(self.data_dir), self.timeout_s,
                  self.target))
        process.start()
        return _Worker(process, tasks)

    @property
    def capacity(self) -> int:
        return self.jobs

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def worker_of(self, spec: RunSpec) -> int | None:
        """The process id of the worker running ``spec`` (None: not running)."""
        for w in self._workers:
            task = self._inflight.get(w.task)
            if task is not None and task.spec.key == spec.key:
                return w.process.pid
        return None

    def _dispatch(self, spec: RunSpec) -> int:
        worker = next(w for w in self._workers if w.task is None)
        worker.task = next(self._numbers)
        worker.tasks.put((worker.task, spec))
        return worker.task

    def _arrived(self, wait_s: float) -> list[tuple[Any, RunResult, dict | None]]:
        out = []
        deadline = time.monotonic() + wait_s
        while True:
            try:
                number, result, env = self._results.get(
                    timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            worker = next((w for w in self._workers if w.task == number), None)
            if worker is None:  # sent just before its worker was killed: void
                pass
            elif result is None:  # a fresh worker may take seconds to import torch first
                self._inflight[number].started = time.monotonic()
            else:
                worker.task = None
                out.append((number, result, env))
            deadline = time.monotonic()  # drain what is there, do not wait again
        return out

    def _lost(self) -> list[tuple[Any, str]]:
        lost = []
        for i, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            self._workers[i] = self._start()
            if worker.task is not None:
                lost.append((worker.task, f"the worker process running this run died (exit "
                                          f"code {worker.process.exitcode})"))
        return lost

    def _kill(self, number: int) -> None:
        i = next(i for i, w in enumerate(self._workers) if w.task == number)
        self._workers[i].process.kill()
        self._workers[i].process.join()
        self._workers[i] = self._start()

    def close(self) -> None:
        for w in self._workers:
            if w.process.is_alive():
                w.tasks.put(None)
        for w in self._workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()


# --------------------------------------------------------------------------------------------
# Ray

RAY_MISSING = ("the ray executor needs Ray, an optional extra: pip install -e \".[ray]\" "
               "(or pip install \"ray>=2.9\")")


def ray_missing() -> str | None:
    """Why the ray executor cannot run here (None: Ray is installed)."""
    return RAY_MISSING if importlib.util.find_spec("ray") is None else None


def unreachable_ray_address(address: str | None, timeout_s: float = 5.0) -> str | None:
    """Why nothing answers at a ``HOST:PORT`` Ray address (None: something listens, or the
    address is ``auto``, a ``ray://`` client address or none): Ray itself retries an address
    without a cluster for minutes before it gives up."""
    if address is None or address == "auto" or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return (f"--address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return None
    except OSError as exc:
        return (f"nothing answers at {address} ({exc.strerror or exc}): start the cluster's head "
                f"there with 'ray start --head --port {port}', or give the address 'ray start' "
                f"printed (--address auto on a node of the cluster)")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise KanbenchError(RAY_MISSING) from None
    return ray


class RayPool(_Pool):
    """Runs as Ray tasks of ``cpus`` CPUs and ``gpus`` GPUs each; see the module docstring.

    Connects to ``address`` (``auto``, ``HOST:PORT``, ``ray://...``) or, without one, starts
    Ray on this machine with the CPUs this process may use (unless this process already
    connected: then that session is used and left open). Each worker reads its data from the
    data folder on its own node (the planned content hash is checked there); tasks are handed
    out only as fast as the cluster has room, so a run's timeout counts from its start, not
    from a queue. Ray reuses its worker processes, so each loads a dataset once.
    """

    def __init__(self, data_dir: str | Path | None = None, *, address: str | None = None,
                 cpus: int | None = None, gpus: float = 0, retries: int = 1,
                 timeout_s: float | None = None, grace_s: float | None = None,
                 target: Any = run_in_worker):
        ray = _ray()
        self._ray = ray
        self.retries, self.timeout_s, self.grace_s = retries, timeout_s, grace_s
        self.data_dir = None if data_dir is None else str(data_dir)
        self.threads = cpus or 1
        self._owns = not ray.is_initialized()
        if self._owns:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if address is None:
                options["num_cpus"] = usable_cpus()
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise KanbenchError(f"could not start or reach Ray at {address or 'this machine'}"
                                    f": {exc}") from None
        self._remote = ray.remote(target).options(
            num_cpus=self.threads, num_gpus=gpus, max_retries=0)
        self._gpus = gpus
        self._capacity_at = float("-inf")
        self._capacity = 1
        self._failed: list[tuple[Any, str]] = []  # tasks lost in the last wait
        self._init_pool()

    @property
    def capacity(self) -> int:
        """Runs the cluster has room for at once; asked again every 30 s (nodes come and go)."""
        if time.monotonic() - self._capacity_at > 30:
            total = self._ray.cluster_resources()
            room = int(total.get("CPU", 0) // self.threads)
            if self._gpus:
                room = min(room, int(total.get("GPU", 0) // self._gpus))
            if room < 1:
                raise KanbenchError(
                    f"the Ray cluster has no room for a run of {self.threads} CPUs and "
                    f"{self._gpus:g} GPUs (it has {total.get('CPU', 0):g} CPUs, "
                    f"{total.get('GPU', 0):g} GPUs): lower execution.resources")
            self._capacity, self._capacity_at = room, time.monotonic()
        return self._capacity

    def _dispatch(self, spec: RunSpec) -> Any:
        return self._remote.remote(spec, self.data_dir, self.threads, self.timeout_s)

    def _arrived(self, wait_s: float) -> list[tuple[Any, RunResult, dict | None]]:
        if not self._inflight:
            time.sleep(wait_s)
            return []
        ready, _ = self._ray.wait(list(self._inflight), num_returns=len(self._inflight),
                                  timeout=wait_s, fetch_local=True)
        out = []
        for ref in ready:
            try:
                result, env = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:  # the worker or its node was lost
                cause = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                self._failed.append((ref, f"the Ray task running this run failed "
                                          f"({type(exc).__name__}: {cause})"))
                continue
            out.append((ref, result, env))
        return out

    def _lost(self) -> list[tuple[Any, str]]:
        lost, self._failed = self._failed, []
        return lost

    def _kill(self, ref: Any) -> None:
        self._ray.cancel(ref, force=True)

    def close(self) -> None:
        for ref in list(self._inflight):  # interrupted: stop what still runs
            self._ray.cancel(ref, force=True)
        self._inflight.clear()
        if self._owns:
            self._ray.shutdown()
