"""Expand a validated suite into run specs: datasets x models x schemes x seeds.

Budgets are resolved per dataset (input/output widths differ), each run gets a stable key: a
hash of its fully resolved configuration, so a store can tell which runs are already done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

import adapters
from adapters import AdapterError, ModelSpec
from bench.datasets.plugins import is_plugin, mark_broken
from bench.budget import (ModelTooLarge, Solved, activation_memory, check_memory, measure,
                          solve_width)
from bench.data_identity import content_hash
from bench.datasets import Dataset, DatasetOptionError, cached_dataset
from bench.errors import BudgetError, KanbenchError, SuiteError
from bench.records.spec import Interventions, RunSpec
from bench.suite import ModelEntry, Suite
from bench.train import eval_rows

@dataclass(frozen=True)
class DataShape:
    """What planning needs of a dataset: widths for the budgets, task and size for the report."""

    in_dim: int
    out_dim: int
    task: str
    metric: str
    n_train: int
    data_hash: str  # content hash of the loaded splits (bench.data_identity)


@dataclass
class Plan:
    suite: Suite
    path: str
    runs: list[RunSpec]
    shapes: dict[str, DataShape]  # by display label
    solved: dict[str, dict[str, Solved]] = field(default_factory=dict)  # label -> model -> Solved
    data_dir: Path | None = None  # the resolved data root every run loads from

    def dataset(self, label: str) -> Dataset:
        """The loaded dataset behind ``label`` (through the per-process cache)."""
        spec = next(s for s in self.runs if s.dataset_label == label)
        return cached_dataset(spec.dataset, spec.split, self.data_dir, spec.dataset_options)


def resolve_device(requested: str) -> str:
    """The device every run uses; an unknown or absent device is a KanbenchError (a suite's
    ``device`` becomes a SuiteError in :func:`build_plan`)."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    instead = "use cpu or auto (--device, or the suite's device key)"
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", requested):
        raise KanbenchError(f"unknown device '{requested}'; expected auto, cpu, cuda, cuda:N "
                            f"or mps")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise KanbenchError(f"device '{requested}' requested but CUDA is not available "
                                f"here; {instead}")
        index, count = int(requested.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            raise KanbenchError(f"device '{requested}' requested but this machine has {count} "
                                f"CUDA device(s), cuda:0 to cuda:{count - 1}")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise KanbenchError(f"device 'mps' requested but MPS is not available here (it needs "
                            f"an Apple silicon GPU); {instead}")
    return requested


def resolve_data_dir(cli: str | Path | None, suite_dir: str | None) -> Path | None:
    """Data root: ``--data-dir`` beats the suite's ``data_dir``; None lets each loader fall back
    to the KANBENCH_DATA environment variable, then its default cache folder."""
    chosen = cli if cli is not None else suite_dir
    return Path(chosen).expanduser() if chosen is not None else None


def _template(m: ModelEntry, adapter: adapters.Adapter) -> ModelSpec:
    """The model's architecture before its widths are solved; a KAN family's hyper-parameters
    with their defaults filled in (they are part of what the run trained with)."""
    return ModelSpec(grid=m.grid, k=m.k, activation=m.activation, grid_range=m.grid_range,
                     options=adapter.resolve_options(m.options),
                     grid_schedule=tuple(map(tuple, m.grid_schedule)))


def resolve_models(suite: Suite, in_dim: int, out_dim: int, where: str) -> dict[str, Solved]:
    """Resolve every model's architecture for one dataset (ladders expanded, see
    :meth:`Suite.expanded_models`), following budget references."""
    by_name = {m.name: m for _, m in suite.expanded_models()}
    solved: dict[str, Solved] = {}

    def resolve(name: str) -> Solved:
        if name in solved:
            return solved[name]
        m = by_name[name]
        adapter = adapters.get(m.adapter)
        budget = m.budget or (suite.budget if m.hidden is None or None in m.hidden else None)
        what = f"{where}, model '{m.name}'"
        try:
            template = _template(m, adapter)
            if budget is None:
                spec = template.model_copy(update={"hidden": tuple(m.hidden or ())})
                result = Solved(spec, adapter.param_count(spec, in_dim, out_dim))
            else:
                hidden = list(m.hidden) if m.hidden is not None else [None]
                if budget.shape is not None and len(budget.shape) != hidden.count(None):
                    raise BudgetError(f"{what}: budget.shape gives {len(budget.shape)} ratios "
                                      f"for {hidden.count(None)} null hidden widths", name)
                by, how = budget.measure, dict(vary=budget.vary, shape=budget.shape)
                if budget.match is not None:
                    reference = resolve(budget.match)
                    target = measure(adapters.get(by_name[budget.match].adapter), reference.spec,
                                     in_dim, out_dim, by)
                    result = solve_width(adapter, template, hidden, in_dim, out_dim, target,
                                         budget.tolerance, f"{what} matched to "
                                         f"'{budget.match}'", by=by, **how)
                    result = replace(result, reference=budget.match)
                else:
                    target = budget.params if budget.params is not None else budget.flops
                    unit = "parameters" if by == "params" else "FLOPs"
                    result = solve_width(adapter, template, hidden, in_dim, out_dim, target,
                                         budget.tolerance, f"{what} with a budget of "
                                         f"{target:,} {unit}", by=by, **how)
            adapter.check_spec(result.spec)
        except ModelTooLarge:  # a matched model's: already names it
            raise
        except BudgetError as exc:
            raise BudgetError(str(exc), exc.model or name) from None
        except AdapterError as exc:  # e.g. an option or a spline order the adapter rejects
            raise BudgetError(f"{where}, model '{m.name}': {exc}", name) from None
        # before models matched to it are solved: their own failure would hide the cause
        check_memory(result.params, what, name)
        solved[name] = result
        return result

    for name in by_name:
        resolve(name)
    return solved


def build_plan(suite: Suite, path: str | Path, *, device: str | None = None,
               data_dir: str | Path | None = None) -> Plan:
    """Resolve budgets on each dataset's widths and list every run in a stable order.

    Each dataset is loaded once (through the per-process cache, which keeps only the latest)
    to read its widths; no dataset's tensors stay alive for the whole suite."""
    try:
        dev = resolve_device(device or suite.device)
    except KanbenchError as exc:
        if device is not None:  # from the command line: no suite key to name
            raise
        raise SuiteError(str(path), "device", str(exc)) from None
    root = resolve_data_dir(data_dir, suite.data_dir)
    runs: list[RunSpec] = []
    shapes: dict[str, DataShape] = {}
    solved_all: dict[str, dict[str, Solved]] = {}
    interventions = Interventions(probes=suite.probes)
    for i, entry in enumerate(suite.datasets):
        if f"dataset '{entry.display}'" in suite.left_out:  # a broken plugin (Suite.left_out)
            continue
        split = entry.split or suite.split
        try:
            data = cached_dataset(entry.name, split, root, entry.options)
        except DatasetOptionError as exc:
            raise SuiteError(str(path), f"datasets[{i}].options.{exc.option}", str(exc)) from None
        except Exception as exc:
            if not is_plugin(entry.name):
                raise
            # a plugin whose data cannot be loaded: left out, the rest of the suite runs
            mark_broken(entry.name, f"{type(exc).__name__}: {exc}")
            continue
        shape = DataShape(data.in_dim, data.out_dim, data.task, data.metric, len(data.x_train),
                          content_hash(data))
        shapes[entry.display] = shape
        del data
        try:
            solved = resolve_models(suite, shape.in_dim, shape.out_dim, f"dataset '{entry.display}'")
        except BudgetError as exc:
            index = next(i for i, m in suite.expanded_models() if m.name == exc.model)
            at_budget = suite.models[index].budget and not isinstance(exc, ModelTooLarge)
            key = f"models[{index}]" + (".budget" if at_budget else "")
            raise SuiteError(str(path), key, str(exc)) from None
        solved_all[entry.display] = solved
        for scheme, training in suite.resolved_schemes():
            for index, m in suite.expanded_models():
                s = solved[m.name]
                # a training batch, or an evaluation chunk of the largest split, whichever is
                # larger, keeps its values in memory at once
                rows = max(training.batch_size, min(eval_rows(shape.in_dim, dev), shape.n_train))
                family = adapters.get(m.adapter).family
                try:
                    check_memory(s.params, f"dataset '{entry.display}', model '{m.name}'",
                                 m.name, activation_memory(s.spec, family, shape.in_dim,
                                                           shape.out_dim, rows))
                except ModelTooLarge as exc:
                    raise SuiteError(str(path), f"models[{index}]", str(exc)) from None
                budget = None
                if s.target is not None:
                    budget = {"reference": s.reference, "target": s.target,
                              "rel_error": s.rel_error, "tolerance": s.tolerance}
                    if s.by != "params":  # parameter budgets keep the keys they always had
                        budget.update(by=s.by, achieved=s.achieved)
                for seed in suite.seeds:
                    for shock in [None, *suite.shocks()]:  # the control first, then its twins
                        runs.append(RunSpec(
                            suite=suite.name or Path(path).stem, dataset=entry.name,
                            dataset_label=entry.display, dataset_options=dict(entry.options),
                            split=split, model=m.name, adapter=m.adapter,
                            family=family, arch=s.spec, params=s.params,
                            budget=budget, scheme=scheme, training=training, seed=seed,
                            device=dev, data_hash=shape.data_hash,
                            interventions=interventions.model_copy(update={"shock": shock}),
                        ))
    return Plan(suite, str(path), runs, shapes, solved_all, root)
