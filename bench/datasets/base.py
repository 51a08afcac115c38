"""The one shape every dataset loader returns, and the split/scaling protocol they share.

Protocol (the same for every model of a comparison):
- a test split, either official (when the source has one) or stratified (classification)
  with a fixed ``split.seed``;
- a validation split carved from the training part with the same seed, used for best-epoch
  selection and early stopping; the test split is never used to select anything;
- feature standardisation fitted on the training part only (``scale: none`` turns it off);
- regression targets standardised with training statistics for optimisation; metrics are
  reported in the original units (``target_std`` undoes the scaling).
Every choice is written into ``Dataset.info`` and stored with each run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from bench.records.metrics import metric_for_task
from bench.records.spec import SplitSpec

Task = Literal["classification", "regression"]


@dataclass
class Dataset:
    """Tensors for train / validation / test plus what is needed to interpret them.

    ``x_*`` are float32 ``(N, in_dim)``. Classification ``y_*`` are int64 class indices
    ``(N,)``; regression ``y_*`` are float32 ``(N, out_dim)``, standardised.
    """

    name: str
    task: Task
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int | None = None
    target_mean: list[float] | None = None
    target_std: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def out_dim(self) -> int:
        if self.task == "classification":
            assert self.n_classes is not None
            return self.n_classes
        return int(self.y_train.shape[1])

    @property
    def metric(self) -> str:
        """Name of the headline metric: accuracy (higher is better) or rmse (lower)."""
        return metric_for_task(self.task)

    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {
            "train": (self.x_train, self.y_train),
            "val": (self.x_val, self.y_val),
            "test": (self.x_test, self.y_test),
        }


def split_and_scale(
    name: str,
    task: Task,
    x: np.ndarray,
    y: np.ndarray,
    split: SplitSpec,
    *,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    info: dict[str, Any] | None = None,
) -> Dataset:
    """Apply the shared protocol to arrays (pass ``x_test``/``y_test`` for an official split)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    stratify = task == "classification"
    official_test = x_test is not None
    if not official_test:
        x, x_test, y, y_test = train_test_split(
            x, y, test_size=split.test_size, random_state=split.seed,
            stratify=y if stratify else None,
        )
    x_tr, x_val, y_tr, y_val = train_test_split(
        x, y, test_size=split.val_size, random_state=split.seed,
        stratify=y if stratify else None,
    )
    x_test = np.asarray(x_test, dtype=np.float64)

    if split.scale == "standard":
        scaler = StandardScaler().fit(x_tr)
        x_tr, x_val, x_test = (scaler.transform(a) for a in (x_tr, x_val, x_test))

    n_classes = target_mean = target_std = None
    if task == "classification":
        classes = np.unique(np.concatenate([y_tr, y_val, np.asarray(y_test)]))
        index = {c: i for i, c in enumerate(classes.tolist())}
        encode = lambda a: torch.tensor([index[c] for c in np.asarray(a).tolist()], dtype=torch.long)  # noqa: E731
        y_tr_t, y_val_t, y_te_t = encode(y_tr), encode(y_val), encode(y_test)
        n_classes = len(classes)
    else:
        as2d = lambda a: np.asarray(a, dtype=np.float64).reshape(len(a), -1)  # noqa: E731
        y_tr, y_val, y_test = as2d(y_tr), as2d(y_val), as2d(y_test)
        mean, std = y_tr.mean(axis=0), y_tr.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        target_mean, target_std = mean.tolist(), std.tolist()
        to_t = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
        y_tr_t, y_val_t, y_te_t = to_t(y_tr), to_t(y_val), to_t(y_test)

    as_x = lambda a: torch.tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    record = dict(info or {})
    record.update(
        split="official" if official_test else f"stratified {split.test_size:g} test" if stratify
        else f"random {split.test_size:g} test",
        validation=f"{'stratified ' if stratify else ''}{split.val_size:g} of train",
        split_seed=split.seed,
        scaling="standard (train statistics)" if split.scale == "standard" else "none",
        n_train=len(x_tr), n_val=len(x_val), n_test=len(x_test),
    )
    if task == "regression":
        record["target_scaling"] = "standard (train statistics); metrics in original units"
    return Dataset(
        name=name, task=task,
        x_train=as_x(x_tr), y_train=y_tr_t, x_val=as_x(x_val), y_val=y_val_t,
        x_test=as_x(x_test), y_test=y_te_t,
        n_classes=n_classes, target_mean=target_mean, target_std=target_std, info=record,
    )
