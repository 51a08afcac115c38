"""Datasets: every loader returns the same :class:`Dataset` shape (see ``base``)."""

from bench.datasets import tabular as _tabular  # noqa: F401  (registers loaders)
from bench.datasets import toy as _toy  # noqa: F401  (registers loaders)
from bench.datasets import vision as _vision  # noqa: F401  (registers loaders)
from bench.datasets.base import Dataset, SplitSpec, split_and_scale
from bench.datasets.registry import (
    cached_dataset,
    dataset,
    dataset_entry,
    dataset_names,
    load_dataset,
)

__all__ = [
    "cached_dataset",
    "Dataset",
    "SplitSpec",
    "dataset",
    "dataset_entry",
    "dataset_names",
    "load_dataset",
    "split_and_scale",
]
