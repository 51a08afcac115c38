"""Datasets: every loader returns the same :class:`Dataset` shape (see ``base``)."""

from bench.datasets import tabular as _tabular  # noqa: F401  (registers loaders)
from bench.datasets import toy as _toy  # noqa: F401  (registers loaders)
from bench.datasets import vision as _vision  # noqa: F401  (registers loaders)
from bench.datasets.base import Dataset, SplitSpec, split_and_scale
from bench.datasets.registry import (
    DatasetOptionError,
    cached_dataset,
    dataset,
    dataset_entry,
    dataset_names,
    load_dataset,
    unknown_option,
)

__all__ = [
    "DatasetOptionError",
    "cached_dataset",
    "Dataset",
    "SplitSpec",
    "dataset",
    "dataset_entry",
    "dataset_names",
    "load_dataset",
    "split_and_scale",
    "unknown_option",
]
