"""Execute a plan's runs into a store, skipping the ones already finished.

The in-process executor runs one spec after another; each finished run is committed before the
next starts, so an interrupted suite resumes where it stopped. Other executors (process pools,
clusters) take the same plan and store and call :func:`run_one` per spec.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import adapters
from bench.envinfo import environment
from bench.plan import Plan, RunSpec
from bench.store import FINISHED, Store
from bench.train import Callback, RunResult, fit

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


def run_one(spec: RunSpec, plan: Plan, callbacks: list[Callback] | None = None) -> RunResult:
    """Train one spec, or describe why its adapter cannot run."""
    adapter = adapters.get(spec.adapter)
    reason = adapter.unavailable_reason()
    if reason is not None:
        data = plan.datasets[spec.dataset_label]
        return RunResult(status="skipped", error=reason, metric=data.metric,
                         data_info=dict(data.info))
    return fit(spec, plan.datasets[spec.dataset_label], adapter, callbacks)


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
            result = run_one(spec, plan, callbacks)
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
