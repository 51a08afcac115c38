"""The run record: what a run is (its specification), what it produced (its result) and how
its metrics read. The store, the reports and the executors import these modules; they import
no training code, no datasets, no adapter implementations and not torch.
"""

from bench.records.metrics import FINISHED, higher_is_better, metric_for_task, overfitting_gap
from bench.records.result import RunResult, SeriesPoint, Status
from bench.records.spec import (
    KEY_VERSION,
    OPTIMIZER_IMPLS,
    Interventions,
    ProbeSpec,
    RunSpec,
    ShockSpec,
    SplitSpec,
    TrainingSpec,
)

__all__ = [
    "FINISHED",
    "KEY_VERSION",
    "OPTIMIZER_IMPLS",
    "Interventions",
    "ProbeSpec",
    "RunResult",
    "RunSpec",
    "SeriesPoint",
    "ShockSpec",
    "SplitSpec",
    "Status",
    "TrainingSpec",
    "higher_is_better",
    "metric_for_task",
    "overfitting_gap",
]
