"""Third-party datasets: an :class:`ArrayDataset` registered through the entry-point group
``kanbench.datasets``, or named in a suite by import path (``name: "mypkg.data:my_set"``).

A plugin gives arrays; kanbench applies the same protocol as to its own tables
(:func:`bench.datasets.base.split_and_scale`: the suite's stratified split, validation carved
from training, standardisation fitted on training data only), so a user's data is split and
scored like the built-in sets and nothing is chosen on its test part. A plugin that fails to load,
or whose arrays are malformed, is kept aside with the reason (:func:`broken_datasets`): ``bench
list datasets`` shows it and a suite leaves it out, running the rest.
"""

from __future__ import annotations

import logging
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from adapters.registry import is_import_path
from bench.datasets.base import Dataset, SplitSpec, Task, split_and_scale
from bench.datasets.registry import DatasetEntry, register_entry, registered
from bench.errors import DatasetError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kanbench.datasets"

Arrays = tuple[Any, Any] | tuple[Any, Any, Any, Any]


@dataclass(frozen=True)
class ArrayDataset:
    """A dataset a plugin provides: ``arrays(data_dir, **options)`` returns ``(x, y)``, or
    ``(x, y, x_test, y_test)`` for an official test split; ``x`` 2-D numbers (rows x inputs),
    ``y`` class labels (classification: any hashable values) or targets (regression: 1-D, or
    2-D for several). ``options`` names the keyword options a suite may pass; ``data_dir`` is
    the suite's data folder (None: the loader's own default)."""

    task: Task
    arrays: Callable[..., Arrays]
    description: str = ""
    options: tuple[str, ...] = ()
    offline: bool = True

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise DatasetError(f"task must be 'classification' or 'regression', got {self.task!r}")
        if not callable(self.arrays):
            raise DatasetError("arrays must be a function returning (x, y) or (x, y, x_test, "
                               "y_test)")


class BrokenDatasetPlugin(DatasetError):
    """A dataset plugin that cannot be used, with the reason."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"dataset plugin '{name}' is broken: {reason}")


_broken: dict[str, str] = {}
_plugins: set[str] = set()  # the names registered from plugins
_loaded = False


def is_plugin(name: str) -> bool:
    return name in _plugins or name in _broken


def _checked(name: str, task: Task, out: Any) -> Arrays:
    """The plugin's arrays, or :class:`DatasetError` saying what is wrong with them."""
    if not isinstance(out, tuple) or len(out) not in (2, 4):
        raise DatasetError(f"dataset plugin '{name}': arrays() must return (x, y) or (x, y, "
                           f"x_test, y_test), got {type(out).__name__}"
                           + (f" of {len(out)}" if isinstance(out, tuple) else ""))
    pairs = [(out[0], out[1], "x", "y")] + ([(out[2], out[3], "x_test", "y_test")]
                                           if len(out) == 4 else [])
    for x, y, xn, yn in pairs:
        x = np.asarray(x)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise DatasetError(f"dataset plugin '{name}': {xn} must be a 2-D array of finite "
                               f"numbers (rows x inputs), got shape {x.shape}, dtype {x.dtype}")
        y = np.asarray(y)
        if len(y) != len(x):
            raise DatasetError(f"dataset plugin '{name}': {yn} has {len(y)} rows, {xn} has "
                               f"{len(x)}")
        if task == "regression" and (y.ndim not in (1, 2) or not np.issubdtype(y.dtype, np.number)
                                     or not np.isfinite(y).all()):
            raise DatasetError(f"dataset plugin '{name}': regression targets {yn} must be finite "
                               f"numbers, 1-D or 2-D")
        if task == "classification" and y.ndim != 1:
            raise DatasetError(f"dataset plugin '{name}': class labels {yn} must be 1-D")
    if len(out) == 4 and np.asarray(out[0]).shape[1] != np.asarray(out[2]).shape[1]:
        raise DatasetError(f"dataset plugin '{name}': x and x_test have different numbers of "
                           f"inputs")
    return out


def _entry(name: str, plugin: ArrayDataset) -> DatasetEntry:
    def load(split: SplitSpec, data_dir: Path | None = None, **options: Any) -> Dataset:
        out = _checked(name, plugin.task, plugin.arrays(data_dir, **options))
        x_test, y_test = (out[2], out[3]) if len(out) == 4 else (None, None)
        return split_and_scale(name, plugin.task, np.asarray(out[0], dtype=np.float64),
                               np.asarray(out[1]), split, x_test=x_test, y_test=y_test,
                               info={"source": f"plugin {name}"})

    return DatasetEntry(name, plugin.task, load, plugin.description or f"plugin {name}",
                        frozenset(plugin.options), plugin.offline)


def _add(name: str, load: Callable[[], object]) -> None:
    """Load and register one plugin; a failure marks it broken (never raises)."""
    try:
        obj = load()
        plugin = obj() if callable(obj) and not isinstance(obj, ArrayDataset) else obj
        if not isinstance(plugin, ArrayDataset):
            raise DatasetError(f"{name} gives {type(plugin).__name__}, not a "
                               f"bench.datasets.plugins.ArrayDataset")
        register_entry(_entry(name, plugin))
        _plugins.add(name)
    except Exception as exc:  # a broken plugin must not take the others down
        _broken[name] = f"{type(exc).__name__}: {exc}"
        log.warning("dataset plugin %s cannot be loaded: %s", name, _broken[name])


def load_plugins() -> None:
    """Register the entry points of ``kanbench.datasets`` (once per process)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in registered():
            _add(ep.name, ep.load)


def find(name: str) -> None:
    """Make ``name`` registered if it is a plugin (entry point or import path); raises
    :class:`BrokenDatasetPlugin` for a broken one, does nothing for an unknown name."""
    load_plugins()
    if name not in registered() and name not in _broken and is_import_path(name):
        _add(name, lambda: pkgutil.resolve_name(name))
    if name in _broken:
        raise BrokenDatasetPlugin(name, _broken[name])


def broken_datasets() -> dict[str, str]:
    """The dataset plugins that cannot be used, with the reason."""
    load_plugins()
    return dict(_broken)


def mark_broken(name: str, reason: str) -> None:
    """Keep a plugin aside after its data failed to load (the planner's finding)."""
    _broken[name] = reason
