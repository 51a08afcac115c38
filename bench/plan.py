"""Expand a validated suite into run specs: datasets x models x schemes x seeds.

Budgets are resolved per dataset (input/output widths differ), each run gets a stable key: a
hash of its fully resolved configuration, so a store can tell which runs are already done.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

import adapters
from adapters import AdapterError, ModelSpec
from bench.budget import Solved, solve_width
from bench.datasets import Dataset, SplitSpec, load_dataset
from bench.errors import BudgetError, KanbenchError, SuiteError
from bench.suite import ModelEntry, Suite, TrainingSpec

#: bump when the meaning of a stored result changes, so old runs are not reused
KEY_VERSION = 1


class RunSpec(BaseModel):
    """Everything that determines one run's result (and nothing that does not)."""

    model_config = ConfigDict(frozen=True)

    suite: str
    dataset: str
    dataset_label: str
    dataset_options: dict[str, Any]
    split: SplitSpec
    model: str
    adapter: str
    family: str
    arch: ModelSpec
    params: int
    budget: dict[str, Any] | None
    scheme: str
    training: TrainingSpec
    seed: int
    device: str

    def identity(self) -> dict[str, Any]:
        """The configuration the key hashes: the suite name and display labels are left out
        (renaming a suite must not redo runs), the device type is kept (results differ)."""
        data = self.model_dump(mode="json", exclude={"suite"})
        data["device"] = torch.device(self.device).type
        data["key_version"] = KEY_VERSION
        return data

    @property
    def key(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def title(self) -> str:
        scheme = "" if self.scheme == "default" else f" [{self.scheme}]"
        return f"{self.dataset_label} / {self.model}{scheme} / seed {self.seed}"


@dataclass
class Plan:
    suite: Suite
    path: str
    runs: list[RunSpec]
    datasets: dict[str, Dataset]  # by display label, already loaded
    solved: dict[str, dict[str, Solved]] = field(default_factory=dict)  # label -> model -> Solved


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise KanbenchError(f"device '{requested}' requested but CUDA is not available here; "
                            f"use --device cpu (or device: auto in the suite)")
    return requested


def resolve_data_dir(cli: str | Path | None, suite_dir: str | None) -> Path | None:
    """Data root: ``--data-dir`` beats the suite's ``data_dir``; None lets each loader fall back
    to the KANBENCH_DATA environment variable, then its default cache folder."""
    chosen = cli if cli is not None else suite_dir
    return Path(chosen).expanduser() if chosen is not None else None


def _template(m: ModelEntry) -> ModelSpec:
    return ModelSpec(grid=m.grid, k=m.k, activation=m.activation, grid_range=m.grid_range,
                     options=m.options)


def resolve_models(suite: Suite, in_dim: int, out_dim: int, where: str) -> dict[str, Solved]:
    """Resolve every model's architecture for one dataset, following budget references."""
    by_name = {m.name: m for m in suite.models}
    solved: dict[str, Solved] = {}

    def resolve(name: str) -> Solved:
        if name in solved:
            return solved[name]
        m = by_name[name]
        adapter = adapters.get(m.adapter)
        template = _template(m)
        budget = m.budget or (suite.budget if m.hidden is None or None in m.hidden else None)
        what = f"{where}, model '{m.name}'"
        try:
            if budget is None:
                spec = template.model_copy(update={"hidden": tuple(m.hidden or ())})
                result = Solved(spec, adapter.param_count(spec, in_dim, out_dim))
            else:
                hidden = list(m.hidden) if m.hidden is not None else [None]
                if budget.match is not None:
                    reference = resolve(budget.match)
                    result = solve_width(adapter, template, hidden, in_dim, out_dim, reference.params,
                                         budget.tolerance, f"{what} matched to '{budget.match}'")
                    result = Solved(result.spec, result.params, result.target, budget.match,
                                    budget.tolerance)
                else:
                    assert budget.params is not None
                    result = solve_width(adapter, template, hidden, in_dim, out_dim, budget.params,
                                         budget.tolerance, f"{what} with a budget of {budget.params:,}")
            adapter.check_options(result.spec)
        except BudgetError as exc:
            raise BudgetError(str(exc), exc.model or name) from None
        except AdapterError as exc:  # e.g. an option or a spline order the adapter rejects
            raise BudgetError(f"{where}, model '{m.name}': {exc}", name) from None
        solved[name] = result
        return result

    for m in suite.models:
        resolve(m.name)
    return solved


def build_plan(suite: Suite, path: str | Path, *, device: str | None = None,
               data_dir: str | Path | None = None) -> Plan:
    """Load each dataset once, resolve budgets on it, and list every run in a stable order."""
    dev = resolve_device(device or suite.device)
    root = resolve_data_dir(data_dir, suite.data_dir)
    runs: list[RunSpec] = []
    datasets: dict[str, Dataset] = {}
    solved_all: dict[str, dict[str, Solved]] = {}
    for entry in suite.datasets:
        split = entry.split or suite.split
        data = load_dataset(entry.name, split, root, **entry.options)
        datasets[entry.display] = data
        try:
            solved = resolve_models(suite, data.in_dim, data.out_dim, f"dataset '{entry.display}'")
        except BudgetError as exc:
            index = next(i for i, m in enumerate(suite.models) if m.name == exc.model)
            key = f"models[{index}]" + (".budget" if suite.models[index].budget else "")
            raise SuiteError(str(path), key, str(exc)) from None
        solved_all[entry.display] = solved
        for scheme, training in suite.resolved_schemes():
            for m in suite.models:
                s = solved[m.name]
                budget = None
                if s.target is not None:
                    budget = {"reference": s.reference, "target": s.target,
                              "rel_error": s.rel_error, "tolerance": s.tolerance}
                for seed in suite.seeds:
                    runs.append(RunSpec(
                        suite=suite.name or Path(path).stem, dataset=entry.name,
                        dataset_label=entry.display, dataset_options=dict(entry.options),
                        split=split, model=m.name, adapter=m.adapter,
                        family=adapters.get(m.adapter).family, arch=s.spec, params=s.params,
                        budget=budget, scheme=scheme, training=training, seed=seed, device=dev,
                    ))
    return Plan(suite, str(path), runs, datasets, solved_all)
