"""The training loss of a task, shared by the trainer and the probes that evaluate it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification, mean squared error (on the standardised targets the
    model is trained on) for regression."""
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y)
