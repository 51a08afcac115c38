"""What one run produced: headline figures, any number of named per-run values, per-epoch
curves and per-step series. Plain data: pickles, crosses processes, knows nothing of torch.

Recording a new quantity is one call wherever it is measured (a callback, the trainer):
``result.record("flops", 1.2e6)`` for one value per run, ``result.log(step, epoch, "grad_norm",
0.3)`` for a per-step series. The store keeps both without a schema change, ``export`` writes
them (values as columns, series with ``--series``) and reports aggregate the values they find.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, NamedTuple

Status = Literal["ok", "diverged", "error", "skipped", "timeout"]
Scalar = float | int | str | None


class SeriesPoint(NamedTuple):
    step: int  # global optimisation step the value belongs to (1-based)
    epoch: int
    name: str
    value: float


@dataclass
class RunResult:
    status: Status
    error: str | None = None
    params: int | None = None
    metric: str | None = None
    train_metric: float | None = None
    val_metric: float | None = None
    test_metric: float | None = None
    gap: float | None = None
    test_metric_last: float | None = None
    test_metric_best_test: float | None = None  # optimistic, labelled: chosen on test
    best_epoch: int | None = None
    epochs: int = 0
    steps: int = 0
    diverged_step: int | None = None
    train_time_s: float | None = None  # optimisation steps only (callbacks excluded)
    warmup_time_s: float | None = None  # one-off compilation before training (adapter.warm_up)
    eval_time_s: float | None = None
    wall_time_s: float | None = None
    throughput: float | None = None  # training samples per second
    peak_memory_bytes: int | None = None
    curves: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    provenance: dict[str, str] = field(default_factory=dict)
    data_info: dict[str, Any] = field(default_factory=dict)  # split and preprocessing choices
    threads: int = 0
    data_hash: str | None = None  # content hash of the data the run trained on
    values: dict[str, Scalar] = field(default_factory=dict)  # named per-run values
    series: list[SeriesPoint] = field(default_factory=list)  # per-step values

    def record(self, name: str, value: Scalar) -> None:
        """Set a named per-run value (a number, a string or None)."""
        if name in HEADLINE_FIELDS:
            raise ValueError(f"'{name}' is a headline field of RunResult: set the attribute")
        if name in RUN_COLUMNS:
            raise ValueError(f"'{name}' names a column of the run's record: choose another name")
        if isinstance(value, bool):
            value = int(value)
        elif value is not None and not isinstance(value, (int, float, str)):
            raise TypeError(f"per-run value '{name}' must be a number, a string or None, "
                            f"got {type(value).__name__}")
        self.values[name] = value

    def log(self, step: int, epoch: int, name: str, value: float) -> None:
        """Append one point of the per-step series ``name``."""
        self.series.append(SeriesPoint(int(step), int(epoch), name, float(value)))


#: the store's run columns that do not come from RunResult (identity, configuration, blobs);
#: a per-run value may not take one of these names, nor a headline field's
RUN_COLUMNS = frozenset({
    "run_key", "pair_key", "suite", "dataset", "task", "model", "impl", "impl_version",
    "family", "adapter", "arch", "scheme", "seed", "budget_reference", "budget_target",
    "budget_error", "device", "finished_at", "config_json", "provenance_json", "data_json",
    "env_json",
})

#: RunResult's own fields that are not the open parts (values, series, curves, blobs)
HEADLINE_FIELDS = frozenset(
    f.name for f in fields(RunResult)
    if f.name not in ("values", "series", "curves", "provenance", "data_info")
)
