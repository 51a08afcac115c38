"""Metric conventions shared by training, the store and the reports."""

from __future__ import annotations

#: statuses that count as done: rerunning a suite does not redo them
FINISHED = ("ok", "diverged")


def metric_for_task(task: str) -> str:
    """The headline metric of a task: accuracy (classification) or RMSE in the target's units."""
    return "accuracy" if task == "classification" else "rmse"


def higher_is_better(metric: str) -> bool:
    return metric == "accuracy"


def overfitting_gap(metric: str, train: float, test: float) -> float:
    """Positive means overfitting: train minus test for accuracy, test minus train for RMSE."""
    return train - test if higher_is_better(metric) else test - train
