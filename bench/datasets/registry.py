"""Name -> dataset loader registry. Loaders register themselves with :func:`dataset`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.datasets.base import Dataset, SplitSpec, Task
from bench.errors import DatasetError

Loader = Callable[..., Dataset]


class DatasetOptionError(DatasetError):
    """A dataset option a loader cannot use: carries the option's name so that a suite can
    name the key (``datasets[i].options.<option>``)."""

    def __init__(self, option: str, message: str):
        self.option = option
        super().__init__(message)


def checksum_flag(dataset: str, value: Any) -> bool:
    """The ``verify_checksum`` option of the loaders whose files have published checksums."""
    if not isinstance(value, bool):
        raise DatasetOptionError("verify_checksum", f"dataset '{dataset}': option "
                                 f"'verify_checksum' must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    task: Task
    loader: Loader  # loader(split: SplitSpec, data_dir: Path | None, **options) -> Dataset
    description: str
    options: frozenset[str]
    offline: bool  # True when the data ships with a dependency (no download ever needed)


_entries: dict[str, DatasetEntry] = {}


def dataset(name: str, task: Task, description: str, options: tuple[str, ...] = (),
            offline: bool = False) -> Callable[[Loader], Loader]:
    """Decorator registering a loader under ``name``."""

    def wrap(loader: Loader) -> Loader:
        _entries[name] = DatasetEntry(name, task, loader, description, frozenset(options), offline)
        return loader

    return wrap


def register_entry(entry: DatasetEntry) -> None:
    """Register a loader built elsewhere (a plugin, :mod:`bench.datasets.plugins`)."""
    if entry.name in _entries:
        raise DatasetError(f"a dataset named '{entry.name}' is already registered")
    _entries[entry.name] = entry


def registered() -> set[str]:
    return set(_entries)


def dataset_names() -> list[str]:
    """Every usable dataset: built-in and plugins (entry points; import paths once used)."""
    from bench.datasets.plugins import load_plugins

    load_plugins()
    return sorted(_entries)


def dataset_entry(name: str) -> DatasetEntry:
    """The dataset registered as ``name``, or a plugin (entry point, or import path
    ``package.module:name``, loaded on first use): BrokenDatasetPlugin for a broken one."""
    if name not in _entries:
        from bench.datasets.plugins import find

        find(name)
    try:
        return _entries[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset '{name}'; known datasets: {', '.join(dataset_names())} (or a "
            f"plugin's import path, package.module:name)"
        ) from None


def unknown_option(name: str, option: str) -> DatasetOptionError:
    accepted = ", ".join(sorted(dataset_entry(name).options)) or "none"
    return DatasetOptionError(
        option, f"dataset '{name}' does not accept option '{option}'; accepted: {accepted}")


def load_dataset(name: str, split: SplitSpec | None = None, data_dir: Path | None = None,
                 **options: Any) -> Dataset:
    entry = dataset_entry(name)
    unknown = sorted(set(options) - entry.options)
    if unknown:
        raise unknown_option(name, unknown[0])
    return entry.loader(split=split or SplitSpec(), data_dir=data_dir, **options)


# One dataset per process stays loaded: runs come ordered by dataset, so a worker loads each
# dataset once for all of its runs, and a planner walking every dataset keeps one alive at a time.
_cache: dict[str, Dataset] = {}


def cached_dataset(name: str, split: SplitSpec | None = None, data_dir: Path | None = None,
                   options: dict[str, Any] | None = None) -> Dataset:
    """:func:`load_dataset` through this process's cache of the most recently used dataset."""
    split = split or SplitSpec()
    options = dict(options or {})
    key = json.dumps([name, split.model_dump(mode="json"), str(data_dir) if data_dir else None,
                      options], sort_keys=True, default=str)
    if key not in _cache:
        _cache.clear()  # release the previous dataset's tensors before loading the next
        _cache[key] = load_dataset(name, split, data_dir, **options)
    return _cache[key]


def clear_cache() -> None:
    _cache.clear()
