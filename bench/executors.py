"""Local worker processes that run specifications (``--executor process --jobs N``).

Each worker is a spawned Python process that keeps running: it loads each dataset once
(through the per-process cache, :func:`bench.datasets.cached_dataset`) and runs one
specification at a time with :func:`bench.runner.run_one`, with ``threads`` torch threads so
that workers x threads never exceed the CPUs it was given. Workers only compute: they send each
result back and the driver alone writes the store, so SQLite never sees two writers. A worker
that dies while running (killed, out of memory, a crash in native code) is replaced and its run
given to another worker, up to ``retries`` times; after that the run is recorded as an error
naming the cause. Torch-free at import, so the driver imports it cheaply.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import usable_cpus
from bench.records import RunResult, RunSpec


def _worker(tasks: Any, results: Any, threads: int, data_dir: str | None) -> None:
    """A worker's loop: take a specification, run it, send the result; None stops it."""
    import torch

    from bench.runner import run_one

    torch.set_num_threads(threads)
    while True:
        task = tasks.get()
        if task is None:
            return
        key, spec = task
        try:
            result = run_one(spec, data_dir)
        except Exception as exc:  # run_one records a model's failures itself; this is the rest
            result = RunResult(status="error", error=f"{type(exc).__name__}: {exc}")
        results.put((key, result))


@dataclass
class _Slot:
    process: Any
    tasks: Any
    spec: RunSpec | None = None
    attempts: int = 0


@dataclass
class Finished:
    """A run the pool is done with: its result and how many workers it took."""

    spec: RunSpec
    result: RunResult
    attempts: int


@dataclass
class WorkerPool:
    """``jobs`` worker processes; see the module docstring."""

    jobs: int
    data_dir: str | Path | None = None
    threads: int | None = None
    retries: int = 1
    _slots: list[_Slot] = field(default_factory=list)
    _retry: list[tuple[RunSpec, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")
        cpus = usable_cpus()
        if self.threads is None:  # workers x threads never exceed the CPUs
            self.threads = max(1, cpus // self.jobs)
        self._ctx = mp.get_context("spawn")  # no forked torch or SQLite state in workers
        self._results = self._ctx.Queue()
        self._slots = [self._start() for _ in range(self.jobs)]

    def _start(self) -> _Slot:
        tasks = self._ctx.Queue()
        process = self._ctx.Process(
            target=_worker, daemon=True,
            args=(tasks, self._results, self.threads,
                  None if self.data_dir is None else str(self.data_dir)))
        process.start()
        return _Slot(process, tasks)

    @property
    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots]

    def idle(self) -> bool:
        """Whether a worker can take a run now (runs waiting for a retry go first)."""
        return not self._retry and any(s.spec is None for s in self._slots)

    def busy(self) -> bool:
        return bool(self._retry) or any(s.spec is not None for s in self._slots)

    def running(self) -> list[RunSpec]:
        return [s.spec for s in self._slots if s.spec is not None]

    def submit(self, spec: RunSpec, attempts: int = 0) -> None:
        slot = next(s for s in self._slots if s.spec is None)
        slot.spec, slot.attempts = spec, attempts + 1
        slot.tasks.put((spec.key, spec))

    def collect(self, wait_s: float = 0.2) -> list[Finished]:
        """Results that arrived (waiting up to ``wait_s`` for the first), dead workers
        replaced and their runs requeued or given up, waiting retries dispatched."""
        done: list[Finished] = []
        deadline = time.monotonic() + wait_s
        while True:
            try:
                key, result = self._results.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            slot = next((s for s in self._slots if s.spec is not None and s.spec.key == key),
                        None)
            if slot is not None:
                done.append(Finished(slot.spec, result, slot.attempts))
                slot.spec = None
            deadline = time.monotonic()  # drain what is there, do not wait again
        for i, slot in enumerate(self._slots):
            if slot.process.is_alive():
                continue
            code = slot.process.exitcode
            lost = slot.spec
            self._slots[i] = self._start()
            if lost is None:
                continue
            if slot.attempts <= self.retries:
                self._retry.append((lost, slot.attempts))
            else:
                done.append(Finished(lost, RunResult(status="error", error=(
                    f"the worker process running this run died (exit code {code}) "
                    f"{slot.attempts} times; the last run was not retried")), slot.attempts))
        while self._retry and any(s.spec is None for s in self._slots):
            spec, attempts = self._retry.pop(0)
            self.submit(spec, attempts)
        return done

    def close(self) -> None:
        for slot in self._slots:
            if slot.process.is_alive():
                slot.tasks.put(None)
        for slot in self._slots:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
