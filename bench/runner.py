"""Run specifications: one in any process (:func:`run_one`), a plan's into a store (:func:`execute`).

A run needs only its specification and a data folder: :func:`run_one` loads the dataset through
the per-process cache, builds the callbacks the specification asks for and returns a picklable
result, so executors (this in-process one; process pools and clusters) map it over
specifications. The driver alone writes the store: each finished run is committed before the
next starts, so an interrupted suite resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import adapters
from bench import machine
from bench.callbacks import Callback, Deadline, EpochProgress
from bench.data_identity import content_hash
from bench.datasets import cached_dataset, dataset_entry
from bench.envinfo import environment
from bench.executors import Execution, Finished
from bench.records import FINISHED, RunResult, RunSpec, metric_for_task
from bench.store import Store, reusable
from bench.train import fit

if TYPE_CHECKING:  # a worker needs no planner
    from bench.plan import Plan

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the runner tells the caller (the CLI draws a progress bar from it)."""

    def start(self, total: int, pending: int) -> None: ...
    def run_started(self, spec: RunSpec) -> None: ...
    def run_epoch(self, spec: RunSpec, epoch: int, epochs: int, metric: str,
                  value: float) -> None: ...
    def run_finished(self, spec: RunSpec, result: RunResult) -> None: ...
    def run_done_elsewhere(self, spec: RunSpec) -> None: ...
    def waiting(self, runs: int, holders: list[str]) -> None: ...
    def close(self) -> None: ...


@dataclass
class Summary:
    total: int = 0
    reused: int = 0  # finished earlier, not redone
    elsewhere: int = 0  # finished meanwhile by another process on the same store
    data_changed: int = 0  # stored on other data: redone
    statuses: Counter[str] = field(default_factory=Counter)  # of the runs done now

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())


def run_one(spec: RunSpec, data_dir: str | Path | None = None,
            callbacks: list[Callback] | None = None,
            timeout_s: float | None = None) -> RunResult:
    """Train one specification (loading its dataset from ``data_dir``, or the loaders' default
    folders), or describe why its adapter cannot run. ``callbacks`` are added to the ones the
    specification asks for (tests and interactive use: an executor passes none). A run still
    training ``timeout_s`` after this call (data loading included) stops at its next step and
    is recorded as ``timeout``."""
    started = time.monotonic()
    adapter = adapters.get(spec.adapter)
    reason = adapter.unavailable_reason()
    if reason is not None:
        metric = metric_for_task(dataset_entry(spec.dataset).task)
        return RunResult(status="skipped", error=reason, metric=metric)
    root = Path(data_dir) if data_dir is not None else None
    data = cached_dataset(spec.dataset, spec.split, root, spec.dataset_options)
    loaded = content_hash(data)
    if spec.data_hash is not None and loaded != spec.data_hash:
        return RunResult(status="error", metric=data.metric, data_hash=loaded, error=(
            f"the data loaded for this run (content hash {loaded}) is not the data it was "
            f"planned on ({spec.data_hash}): a data file changed meanwhile; run the suite again "
            f"with --retry-errors"))
    extra = list(callbacks or [])
    if timeout_s is not None:
        extra.append(Deadline(timeout_s, started))
    before = machine.sample()
    result = fit(spec, data, adapter, extra)
    result.data_hash = loaded
    result.record("others_cpu_load", machine.others_load(before, machine.sample()))
    if timeout_s is not None:
        result.record("timeout_s", timeout_s)
    return result


def execute(plan: Plan, store: Store, *, retry_errors: bool = False,
            progress: Progress | None = None,
            callbacks: list[Callback] | None = None, poll_s: float = 2.0,
            execution: Execution = Execution()) -> Summary:
    """Run every pending spec of ``plan`` and store each result as soon as it is done.

    Pending: not stored yet, stored on other data (the content hash differs), stored as
    ``skipped`` (the adapter may have been installed since), or stored as ``error`` or
    ``timeout`` when ``retry_errors``. Each run is claimed in the store before it starts, so
    several processes on one store share the work: a run another live process holds is left to
    it, and this process waits for those at the end (taking over any whose process has gone).

    ``execution`` says where runs train: in this process, or in worker processes or Ray tasks
    (:mod:`bench.executors`; no ``callbacks``, no per-epoch progress), whose results this
    process alone writes to the store as they arrive. Every run records the executor and the
    most runs that were in flight while it ran (``concurrent_runs``).
    """
    if execution.executor != "local" and callbacks:
        raise ValueError("callbacks run in this process: use the local executor with callbacks")
    stored = store.statuses()
    hashes = store.data_hashes()
    summary = Summary(total=len(plan.runs))
    pending: list[RunSpec] = []
    for spec in plan.runs:
        status = stored.get(spec.key, (None, None))[0]
        if reusable(status, hashes.get(spec.key), spec.data_hash, retry_errors):
            summary.reused += 1
            continue
        if status in FINISHED:
            summary.data_changed += 1
            log.warning("%s: stored on other data (content hash %s, now %s): run again",
                        spec.title, hashes.get(spec.key), spec.data_hash)
        pending.append(spec)
    env = environment(plan.runs[0].device) if plan.runs else {}
    if progress:
        progress.start(summary.total, len(pending))
    pool = execution.pool(plan.data_dir) if pending else None
    beats: dict[str, ExitStack] = {}  # the claims the workers' runs hold, kept alive

    def finish(done: list[Finished]) -> None:
        for f in done:
            f.result.record("executor", execution.executor)
            f.result.record("concurrent_runs", f.concurrent)
            if f.attempts > 1:
                f.result.record("attempts", f.attempts)
            try:
                _save(f.spec, f.result, store, f.env or env, stored, summary, progress)
            finally:
                beats.pop(f.spec.key).close()
                store.release(f.spec.key)

    try:
        while pending:
            held = []
            for spec in pending:
                if not store.claim(spec.key, spec.data_hash, retry_errors):
                    if reusable(*store.stored(spec.key), spec.data_hash, retry_errors):
                        summary.elsewhere += 1
                        if progress:
                            progress.run_done_elsewhere(spec)
                    else:
                        held.append(spec)
                    continue
                if pool is not None:  # to a worker; results are saved as they arrive
                    while not pool.idle():
                        finish(pool.collect())
                    beats[spec.key] = ExitStack()
                    beats[spec.key].enter_context(store.heartbeat(spec.key))
                    if progress:
                        progress.run_started(spec)
                    pool.submit(spec)
                    continue
                try:
                    with store.heartbeat(spec.key):
                        _run_and_save(spec, plan, store, env, stored, summary, progress,
                                      callbacks, execution.timeout_s)
                finally:
                    store.release(spec.key)  # no-op once saved (the save removes the claim)
            while pool is not None and pool.busy():
                finish(pool.collect())
            if held and len(held) == len(pending):  # all held elsewhere: wait for them
                if progress:
                    claims = store.claims()
                    holders = sorted({f"{h} pid {p}" for k, (h, p, _) in claims.items()
                                      if k in {s.key for s in held}})
                    progress.waiting(len(held), holders)
                time.sleep(poll_s)
            pending = held
    finally:
        if pool is not None:
            pool.close()
        for key, beat in beats.items():  # interrupted: the unfinished runs' claims go
            beat.close()
            store.release(key)
        if progress:
            progress.close()
    return summary


def _run_and_save(spec: RunSpec, plan: Plan, store: Store, env: dict, stored: dict,
                  summary: Summary, progress: Progress | None,
                  callbacks: list[Callback] | None, timeout_s: float | None) -> None:
    extra = list(callbacks or [])
    if progress:
        progress.run_started(spec)
        extra.append(EpochProgress(lambda *epoch: progress.run_epoch(spec, *epoch)))
    result = run_one(spec, plan.data_dir, extra, timeout_s)
    result.record("executor", "local")
    result.record("concurrent_runs", 1)
    _save(spec, result, store, env, stored, summary, progress)


def _save(spec: RunSpec, result: RunResult, store: Store, env: dict, stored: dict,
          summary: Summary, progress: Progress | None) -> None:
    # A skip that repeats the stored skip changes nothing: leave the row as it is.
    if not (result.status == "skipped" and stored.get(spec.key) == ("skipped", result.error)):
        store.save(spec, result, env)
    summary.statuses[result.status] += 1
    if progress:
        progress.run_finished(spec, result)
