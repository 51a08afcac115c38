"""Run specifications: one in any process (:func:`run_one`), a plan's into a store (:func:`execute`).

A run needs only its specification and a data folder: :func:`run_one` loads the dataset through
the per-process cache, builds the callbacks the specification asks for and returns a picklable
result, so executors (this in-process one; process pools and clusters) map it over
specifications. The driver alone writes the store: each finished run is committed before the
next starts, so an interrupted suite resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import adapters
from bench.callbacks import Callback
from bench.datasets import cached_dataset, dataset_entry
from bench.envinfo import environment
from bench.records import FINISHED, RunResult, RunSpec, metric_for_task
from bench.store import Store
from bench.train import fit

if TYPE_CHECKING:  # a worker needs no planner
    from bench.plan import Plan

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the runner tells the caller (the CLI draws a progress bar from it)."""

    def start(self, total: int, pending: int) -> None: ...
    def run_started(self, spec: RunSpec) -> None: ...
    def run_finished(self, spec: RunSpec, result: RunResult) -> None: ...
    def close(self) -> None: ...


@dataclass
class Summary:
    total: int = 0
    reused: int = 0  # finished earlier, not redone
    statuses: Counter[str] = field(default_factory=Counter)  # of the runs done now

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())


def run_one(spec: RunSpec, data_dir: str | Path | None = None,
            callbacks: list[Callback] | None = None) -> RunResult:
    """Train one specification (loading its dataset from ``data_dir``, or the loaders' default
    folders), or describe why its adapter cannot run. ``callbacks`` are added to the ones the
    specification asks for (tests and interactive use: an executor passes none)."""
    adapter = adapters.get(spec.adapter)
    reason = adapter.unavailable_reason()
    if reason is not None:
        metric = metric_for_task(dataset_entry(spec.dataset).task)
        return RunResult(status="skipped", error=reason, metric=metric)
    root = Path(data_dir) if data_dir is not None else None
    data = cached_dataset(spec.dataset, spec.split, root, spec.dataset_options)
    return fit(spec, data, adapter, callbacks)


def execute(plan: Plan, store: Store, *, retry_errors: bool = False,
            progress: Progress | None = None,
            callbacks: list[Callback] | None = None) -> Summary:
    """Run every pending spec of ``plan`` and store each result as soon as it is done.

    Pending: not stored yet, stored as ``skipped`` (the adapter may have been installed since),
    or stored as ``error`` when ``retry_errors``.
    """
    stored = store.statuses()
    summary = Summary(total=len(plan.runs))
    pending: list[RunSpec] = []
    for spec in plan.runs:
        status = stored.get(spec.key, (None, None))[0]
        if status in FINISHED or (status == "error" and not retry_errors):
            summary.reused += 1
        else:
            pending.append(spec)
    env = environment(plan.runs[0].device) if plan.runs else {}
    if progress:
        progress.start(summary.total, len(pending))
    try:
        for spec in pending:
            if progress:
                progress.run_started(spec)
            result = run_one(spec, plan.data_dir, callbacks)
            previous = stored.get(spec.key)
            # A skip that repeats the stored skip changes nothing: leave the row as it is.
            if not (result.status == "skipped" and previous == ("skipped", result.error)):
                store.save(spec, result, env)
            summary.statuses[result.status] += 1
            if progress:
                progress.run_finished(spec, result)
    finally:
        if progress:
            progress.close()
    return summary
