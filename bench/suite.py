"""Suite files: YAML -> validated pydantic models -> errors that name the file and the key.

A suite is datasets x models x training schemes x seeds. :func:`load` validates a file;
:mod:`bench.plan` expands it into run specs with budgets resolved.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import adapters
from bench.datasets import dataset_entry, dataset_names, unknown_option
from bench.datasets.plugins import BrokenDatasetPlugin, broken_datasets
from bench.errors import DatasetError, SuiteError
from bench.init import check_init
from bench.records.spec import ProbeSpec, ShockSpec, SplitSpec, TrainingSpec


#: seeds are stored as SQLite INTEGERs and passed to torch.manual_seed: both take [0, 2**63 - 1]
MAX_SEED = 2**63 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchemeEntry(_Strict):
    """A named set of overrides of the suite's ``training`` block."""

    name: str
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        # `- {name: fast, lr: 0.01}` is the natural way to write a scheme: collect the rest.
        if isinstance(data, dict) and "overrides" not in data:
            rest = {k: v for k, v in data.items() if k != "name"}
            return {"name": data.get("name"), "overrides": rest}
        return data


class SchemeGrid(_Strict):
    """Schemes as a grid: every combination of the listed values of training fields (the cross
    product, in the order the fields are written), plus any ``named`` schemes as they are."""

    grid: dict[str, list[Any]] = Field(min_length=1)
    named: list[SchemeEntry] = Field(default_factory=list)

    @field_validator("grid")
    @classmethod
    def _fields_and_lists(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for name, values in grid.items():
            if name not in TrainingSpec.model_fields:
                raise ValueError(f"unknown training field '{name}' in the grid; expected one of: "
                                 f"{', '.join(TrainingSpec.model_fields)}")
            if not values:
                raise ValueError(f"grid field '{name}' lists no values")
        return grid

    def combinations(self) -> list[tuple[str, dict[str, Any]]]:
        """(readable name, overrides) of every grid point, e.g. ("optimizer=adam,lr=0.01", ...)."""
        names = list(self.grid)
        return [(",".join(f"{n}={_shown(v)}" for n, v in zip(names, values)),
                 dict(zip(names, values)))
                for values in itertools.product(*(self.grid[n] for n in names))]


def _shown(value: Any) -> str:
    """A grid value in a scheme name: numbers in their shortest form (0.001, 1e-05)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class BudgetSpec(_Strict):
    """Solve a model's hidden width(s), or its grid, for a budget of parameters or FLOPs.

    ``match: <model name>``: that model's count on the same dataset, ``by`` parameters or
    FLOPs; ``params: N`` or ``flops: N``: an absolute target, or a list of targets (a ladder:
    one model per rung, named ``<model>@<target>``). FLOPs are per-sample forward FLOPs,
    ``flops_kind`` ``nominal`` (the fairness study's convention) or ``impl`` (as executed).
    ``vary``: solve the shared width of the null hidden entries (at the ratios ``shape`` when
    given, one per null entry: ``hidden: [null, null]`` with ``shape: [2, 1]`` keeps the first
    twice the second) or the grid size G at fixed widths. The achieved relative error must be
    within ``tolerance``.
    """

    match: str | None = None
    by: Literal["params", "flops"] = Field("params", description="with match: what is matched")
    params: int | list[int] | None = None
    flops: int | list[int] | None = None
    flops_kind: Literal["nominal", "impl"] = "nominal"
    vary: Literal["width", "grid"] = "width"
    shape: list[float] | None = Field(None, min_length=1)
    tolerance: float = Field(0.02, gt=0, lt=1)

    @field_validator("params", "flops", mode="before")
    @classmethod
    def _whole_numbers(cls, value: Any) -> Any:
        """1e3 in YAML is a float: accept whole numbers written that way."""
        def whole(v: Any) -> Any:
            return int(v) if isinstance(v, float) and math.isfinite(v) and v == int(v) else v
        return [whole(v) for v in value] if isinstance(value, list) else whole(value)

    @field_validator("params", "flops")
    @classmethod
    def _positive_targets(cls, value: int | list[int] | None) -> int | list[int] | None:
        targets = value if isinstance(value, list) else [] if value is None else [value]
        if isinstance(value, list) and not value:
            raise ValueError("a ladder lists at least one target")
        if any(t < 1 for t in targets):
            raise ValueError(f"targets must be positive whole numbers, got {value}")
        if len(set(targets)) < len(targets):
            raise ValueError(f"a ladder lists a target twice: {value}")
        return value

    @field_validator("shape")
    @classmethod
    def _positive_ratios(cls, shape: list[float] | None) -> list[float] | None:
        if shape is not None and not all(math.isfinite(r) and r > 0 for r in shape):
            raise ValueError(f"shape ratios must be finite numbers above 0, got {shape}")
        return shape

    @model_validator(mode="after")
    def _one_target(self) -> BudgetSpec:
        given = [n for n in ("match", "params", "flops") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'match' (a model name), 'params' or 'flops' "
                             "(a target or a list of them)")
        if self.by != "params" and self.match is None:
            raise ValueError("'by' says what a match compares; with 'params' or 'flops' the "
                             "target says it")
        return self

    @property
    def measure(self) -> str:
        """What the target counts: ``params``, ``flops_nominal`` or ``flops_impl``."""
        flops = self.flops is not None or (self.match is not None and self.by == "flops")
        return f"flops_{self.flops_kind}" if flops else "params"

    def rungs(self) -> list[int] | None:
        """The targets of a ladder, or None for a single target or a match."""
        for value in (self.params, self.flops):
            if isinstance(value, list):
                return value
        return None

    def rung(self, target: int) -> BudgetSpec:
        return self.model_copy(update={"params" if self.params is not None else "flops": target})


def rung_label(target: int, unit: str) -> str:
    """A readable ladder rung: 1000 -> "1k", 2500000 -> "2.5M" (+ " flops" for FLOPs)."""
    text = str(target)
    for size, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        short = f"{target / size:g}"
        if target >= size and float(short) * size == target:  # exact, so labels stay distinct
            text = short + suffix
            break
    return text + ("flops" if unit != "params" else "")


class ModelEntry(_Strict):
    """One model of the suite: an adapter and its architecture (see adapters.ModelSpec)."""

    name: str
    adapter: str
    hidden: list[int | None] | None = Field(
        None, description="hidden widths; with a budget, null entries are solved (one shared width)"
    )
    grid: int = Field(5, ge=1)
    k: int = Field(3, ge=1, le=5)
    activation: str = "silu"
    grid_range: tuple[float, float] = (-1.0, 1.0)
    options: dict[str, Any] = Field(default_factory=dict)
    grid_schedule: list[tuple[int, int]] = Field(
        default_factory=list, description="[epoch, G] pairs: refine the spline grid to G at the "
        "start of that epoch (adapters with grid refinement: native)")
    budget: BudgetSpec | None = None

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, name: str) -> str:
        known = adapters.names()
        if name not in known and name not in adapters.broken():
            try:
                adapters.get(name)  # an import path: loaded and probed here
            except adapters.BrokenPluginError:
                pass  # known, and left out of the plan with the reason (Suite.left_out)
            except adapters.AdapterError:
                raise ValueError(f"unknown adapter '{name}'; expected one of: "
                                 f"{', '.join(known)}, or a plugin's import path "
                                 f"(package.module:Class)") from None
        return name

    @field_validator("hidden")
    @classmethod
    def _widths(cls, hidden: list[int | None] | None) -> list[int | None] | None:
        if hidden is not None and any(w is not None and w < 1 for w in hidden):
            raise ValueError(f"hidden widths must be >= 1 or null, got {hidden}")
        return hidden

    @model_validator(mode="after")
    def _refinements_grow(self) -> ModelEntry:
        if self.grid_schedule:  # the architecture's own rule (adapters.ModelSpec)
            try:
                adapters.ModelSpec(grid=self.grid, grid_schedule=tuple(self.grid_schedule))
            except ValidationError as exc:
                raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return self

    @field_validator("grid_range")
    @classmethod
    def _increasing(cls, grid_range: tuple[float, float]) -> tuple[float, float]:
        low, high = grid_range
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"grid_range must be increasing: two finite numbers [low, high] with "
                             f"low < high, got {list(grid_range)}")
        return grid_range


class DatasetEntry(_Strict):
    """A dataset by registered name, with loader options and an optional split override."""

    name: str
    label: str | None = Field(None, description="name shown in reports (default: name)")
    options: dict[str, Any] = Field(default_factory=dict)
    split: SplitSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        if name not in dataset_names() and name not in broken_datasets():
            try:
                dataset_entry(name)  # a plugin's import path: loaded here
            except BrokenDatasetPlugin:
                pass  # known, and left out of the plan with the reason (Suite.left_out)
            except DatasetError:
                raise ValueError(f"unknown dataset '{name}'; expected one of: "
                                 f"{', '.join(dataset_names())}, or a plugin's import path "
                                 f"(package.module:name)") from None
        return name

    @property
    def display(self) -> str:
        return self.label or self.name


class ShockPlan(_Strict):
    """A coefficient shock as a suite sets it: one shocked run per ``sigma`` for every plain
    run, each compared with that plain run, its unshocked control (same data, scheme, seed
    and model: one control serves every sigma). See :class:`bench.records.spec.ShockSpec`."""

    at: float = Field(0.5, gt=0, lt=1, description="fraction of the planned training steps")
    sigma: list[float] = Field(min_length=1, description="noise standard deviations")
    scale: Literal["absolute", "relative"] = "absolute"
    target: Literal["coefficients", "all"] = "coefficients"

    @field_validator("sigma", mode="before")
    @classmethod
    def _one_or_many(cls, sigma: Any) -> Any:
        return [sigma] if isinstance(sigma, (int, float)) and not isinstance(sigma, bool) else sigma

    @field_validator("sigma")
    @classmethod
    def _positive_distinct(cls, sigma: list[float]) -> list[float]:
        bad = [v for v in sigma if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"every sigma must be a finite number above 0, got {bad[0]}")
        if len(set(sigma)) < len(sigma):
            raise ValueError(f"sigma lists a value twice: {sigma}")
        return sigma

    def shocks(self) -> list[ShockSpec]:
        return [ShockSpec(at=self.at, sigma=v, scale=self.scale, target=self.target)
                for v in self.sigma]


class Resources(_Strict):
    """What one run is given: ``cpus`` torch threads (and, under Ray, the CPUs it reserves),
    ``gpus`` the GPUs Ray reserves for it (a fraction shares one)."""

    cpus: int | None = Field(None, ge=1, description="default: process, the CPUs / jobs; "
                             "ray, 1")
    gpus: float = Field(0, ge=0)


class ExecutionSpec(_Strict):
    """How a suite's runs are executed; the command line's ``--executor``, ``--jobs``,
    ``--address``, ``--timeout`` and ``--retries`` override it. Not part of any run's key:
    results do not depend on it (timings aside, recorded with each run)."""

    executor: Literal["local", "process", "ray"] = "local"
    jobs: int | None = Field(None, ge=1, description="process: worker processes (default: "
                             "the usable CPUs / resources.cpus)")
    address: str | None = Field(None, min_length=1, description="ray: a running cluster, "
                                "'auto' or HOST:PORT (default: start Ray on this machine)")
    resources: Resources = Resources()
    timeout: float | None = Field(None, gt=0, description="seconds a run may take; a run over "
                                  "it is stopped and recorded as 'timeout'")
    retries: int = Field(1, ge=0, le=10, description="times a run is retried after the worker "
                         "running it died")

    @model_validator(mode="after")
    def _options_of_the_executor(self) -> ExecutionSpec:
        if self.jobs is not None and self.executor != "process":
            raise ValueError("jobs sets the worker processes of executor: process")
        if self.address is not None and self.executor != "ray":
            raise ValueError("address names the Ray cluster of executor: ray")
        return self


class Suite(_Strict):
    name: str | None = None
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    data_dir: str | None = None
    split: SplitSpec = SplitSpec()
    training: TrainingSpec = TrainingSpec()
    schemes: list[SchemeEntry] | SchemeGrid = Field(
        default_factory=list, description="named schemes, or {grid: {field: [values]}, named: "
        "[...]}: the cross product of the grid's values, plus the named ones")
    probes: ProbeSpec = Field(ProbeSpec(), description="how often internal statistics are "
                              "recorded: {every: N} steps, or once per epoch (the default)")
    shock: ShockPlan | list[ShockPlan] | None = Field(
        None, description="coefficient shocks: {at, sigma: [..], scale, target}, or a list of "
        "them; every plain run gets one shocked twin per setting and sigma")
    budget: BudgetSpec | None = Field(
        None, description="default budget for every model without its own (params targets only)"
    )
    execution: ExecutionSpec = Field(ExecutionSpec(), description="executor, per-run "
                                     "resources, timeout and retries")
    datasets: list[DatasetEntry] = Field(min_length=1)
    models: list[ModelEntry] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds_in_range(cls, seeds: list[int]) -> list[int]:
        outside = [s for s in seeds if not 0 <= s <= MAX_SEED]
        if outside:
            raise ValueError(f"seeds must be integers in [0, 2**63 - 1] (what the results store "
                             f"and torch.manual_seed take), got {outside[0]}")
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"duplicate seed(s) {repeated}: a seed repeated would train the "
                             f"same runs twice; list each seed once")
        return seeds

    def shocks(self) -> list[ShockSpec]:
        """Every shock a plain run is repeated with (none without ``shock``)."""
        plans = [] if self.shock is None else (
            self.shock if isinstance(self.shock, list) else [self.shock])
        shocks = [spec for plan in plans for spec in plan.shocks()]
        return list(dict.fromkeys(shocks))  # one run per distinct setting

    @model_validator(mode="after")
    def _shock_needs_step_probes(self) -> Suite:
        if self.shock is not None and self.probes.every is None:
            raise ValueError("a shock's recovery is measured on the per-step series: set "
                             "probes: {every: N} (steps between probes, e.g. 1 or 5)")
        return self

    @property
    def left_out(self) -> dict[str, str]:
        """Models and datasets (by name and label) that the plan leaves out, with the reason: a
        broken plugin, or a model whose budget matches a model left out. The rest of the suite
        runs."""
        out: dict[str, str] = {}
        broken_loaders, broken_adapters = broken_datasets(), adapters.broken()
        for d in self.datasets:
            if d.name in broken_loaders:
                out[f"dataset '{d.display}'"] = (f"its loader '{d.name}' is a broken plugin: "
                                                 f"{broken_loaders[d.name]}")
        gone: dict[str, str] = {}
        for m in self.models:
            if m.adapter in broken_adapters:
                gone[m.name] = (f"its adapter '{m.adapter}' is a broken plugin: "
                                f"{broken_adapters[m.adapter]}")
        changed = True
        while changed:  # models matched to a model left out follow it
            changed = False
            for m in self.models:
                if m.name not in gone and m.budget is not None and m.budget.match in gone:
                    gone[m.name] = f"its budget matches '{m.budget.match}', which is left out"
                    changed = True
        out.update({f"model '{name}'": why for name, why in gone.items()})
        return out

    def usable(self, model: ModelEntry) -> bool:
        return f"model '{model.name}'" not in self.left_out

    def expanded_models(self) -> list[tuple[int, ModelEntry]]:
        """Every model to plan, with the index of its suite entry: a ladder budget gives one
        model per rung (``<name>@<rung>``, e.g. ``kan@3k``), and a model matched to a ladder
        one model per rung of it, each matched to the rung of the same name."""
        by_name = {m.name: m for m in self.models}

        def labels(m: ModelEntry | None, seen: tuple[str, ...] = ()) -> list[str] | None:
            b = m.budget if m is not None else None
            if b is None or m.name in seen:
                return None
            if b.rungs() is not None:
                return [rung_label(t, b.measure) for t in b.rungs()]
            return labels(by_name.get(b.match), (*seen, m.name)) if b.match else None

        out: list[tuple[int, ModelEntry]] = []
        left_out = self.left_out
        for i, m in enumerate(self.models):
            if f"model '{m.name}'" in left_out:
                continue
            b = m.budget
            if b is not None and b.rungs() is not None:
                out += [(i, m.model_copy(update={"name": f"{m.name}@{rung_label(t, b.measure)}",
                                                 "budget": b.rung(t)})) for t in b.rungs()]
            elif b is not None and b.match and (rungs := labels(by_name.get(b.match))):
                out += [(i, m.model_copy(update={"name": f"{m.name}@{label}", "budget":
                                                 b.model_copy(update={"match": f"{b.match}@{label}"})}))
                        for label in rungs]
            else:
                out.append((i, m))
        return out

    def scheme_overrides(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, overrides of ``training``) of every scheme: the named ones, then the grid's."""
        if isinstance(self.schemes, SchemeGrid):
            named = [(e.name, e.overrides) for e in self.schemes.named]
            return named + self.schemes.combinations()
        return [(e.name, e.overrides) for e in self.schemes]

    def resolved_schemes(self) -> list[tuple[str, TrainingSpec]]:
        """(name, training) for every scheme; a suite without ``schemes`` has one, 'default'."""
        overrides = self.scheme_overrides()
        if not overrides:
            return [("default", self.training)]
        base = self.training.model_dump()
        return [(name, TrainingSpec(**{**base, **o})) for name, o in overrides]


# --------------------------------------------------------------------------------------------
# loading and error reporting


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


#: the tags pydantic puts in an error's location for the two forms of ``schemes``
_SCHEME_FORMS = {"list[SchemeEntry]": list, "SchemeGrid": dict}


def _one_union_branch(errors: list[dict[str, Any]], data: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors of the form ``schemes`` was written in (a list or a grid mapping), with the
    form's tag taken out of their location; pydantic reports both forms' errors."""
    written = type(data.get("schemes"))
    kept = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if len(loc) > 1 and loc[0] == "schemes" and loc[1] in _SCHEME_FORMS:
            if not issubclass(written, _SCHEME_FORMS[loc[1]]):
                continue
            err = {**err, "loc": (loc[0], *loc[2:])}
        kept.append(err)
    return kept or errors


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _expected_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the mapping that holds ``loc[-1]`` (for 'unknown key' errors)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ()) or ()
        candidates = [ann, *args]
        for arg in list(candidates):
            candidates.extend(getattr(arg, "__args__", ()) or ())
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return []
        current = nxt
    return list(current.model_fields) if hasattr(current, "model_fields") else []


def _describe_error(err: dict[str, Any], root: type[BaseModel] | None = None,
                    also: tuple[str, ...] = ()) -> tuple[str, str]:
    """(key, message) of one pydantic error; ``root`` is the model validated (default: Suite),
    ``also`` keys allowed besides its fields."""
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        key = _format_loc(loc)
        allowed = [*also, *_expected_keys(root or Suite, loc)]
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return key, f"unknown key '{loc[-1]}'{hint}"
    if kind == "missing":
        return _format_loc(loc), "required key is missing"
    msg = err.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], dict):
        msg = f"{msg} (got {err['input']!r})"
    return _format_loc(loc), msg


def parse(data: Any, path: str | Path) -> Suite:
    """Validate already-parsed YAML content; errors name ``path`` and the key."""
    path = str(path)
    if not isinstance(data, dict):
        raise SuiteError(path, None, f"expected a mapping of suite keys at the top level, got "
                                     f"{type(data).__name__}")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problems = [_describe_error(e) for e in _one_union_branch(exc.errors(), data)]
        key, msg = problems[0]
        more = "".join(f"\n  also {k}: {m}" for k, m in problems[1:])
        raise SuiteError(path, key, msg + more) from None
    _check_references(suite, path)
    return suite


def load(path: str | Path) -> Suite:
    """Read and validate a suite file. The suite's name defaults to the file's stem."""
    p = Path(path)
    if not p.is_file():
        raise SuiteError(str(p), None, "no such suite file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(str(p), None, f"not a UTF-8 text file (byte {exc.object[exc.start]:#04x} "
                                       f"at offset {exc.start}); a suite is a YAML text "
                                       f"file") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError(str(p), where, f"invalid YAML: {problem}") from None
    suite = parse(data, p)
    if suite.name is None:
        suite = suite.model_copy(update={"name": p.stem})
    return suite


def _check_references(suite: Suite, path: str) -> None:
    """Cross-field rules pydantic cannot see: unique names, budget references, no cycles."""
    names: dict[str, int] = {}
    for i, m in enumerate(suite.models):
        if m.name in names:
            raise SuiteError(path, f"models[{i}].name",
                             f"duplicate model name '{m.name}' (also models[{names[m.name]}])")
        names[m.name] = i
    labels: dict[str, int] = {}
    for i, d in enumerate(suite.datasets):
        if d.display in labels:
            raise SuiteError(path, f"datasets[{i}]",
                             f"dataset '{d.display}' listed twice; give one a distinct 'label'")
        labels[d.display] = i
        if f"dataset '{d.display}'" in suite.left_out:
            continue
        accepted = dataset_entry(d.name).options
        for option in d.options:
            if option not in accepted:  # wrong values are the loader's to judge (bench.plan)
                raise SuiteError(path, f"datasets[{i}].options.{option}",
                                 str(unknown_option(d.name, option)))
    grid = suite.schemes if isinstance(suite.schemes, SchemeGrid) else None
    named_prefix = "schemes.named" if grid else "schemes"
    schemes = suite.scheme_overrides()
    scheme_names = [name for name, _ in schemes]
    for i, (name, overrides) in enumerate(schemes):
        named = grid is None or i < len(grid.named)
        where = f"{named_prefix}[{i}]" if named else "schemes.grid"
        if scheme_names.count(name) > 1:
            raise SuiteError(path, f"{where}.name" if named else where,
                             f"duplicate scheme name '{name}'")
        try:
            TrainingSpec(**{**suite.training.model_dump(), **overrides})
        except ValidationError as exc:
            key, msg = _describe_error(exc.errors()[0], TrainingSpec, also=("name",))
            if not named:
                msg = f"{msg} (in the grid point {name})"
            raise SuiteError(path, f"{where}.{key}", msg) from None
    if suite.budget is not None and suite.budget.match is not None:
        raise SuiteError(path, "budget.match",
                         "a suite-wide budget takes 'params'; put 'match' on individual models")
    if suite.budget is not None and (suite.budget.rungs() is not None
                                     or suite.budget.vary != "width"):
        raise SuiteError(path, "budget", "a suite-wide budget takes one target solved by width; "
                         "put ladders and grid budgets on individual models")
    for i, m in enumerate(suite.models):
        budget = m.budget
        if budget is None:
            if m.hidden is not None and any(w is None for w in m.hidden) and suite.budget is None:
                raise SuiteError(path, f"models[{i}].hidden",
                                 "null widths are solved by a budget, but this model has none; "
                                 "give integer widths or a 'budget'")
            continue
        if budget.vary == "grid":
            if suite.usable(m) and "grid" not in adapters.get(m.adapter).spec_fields:
                raise SuiteError(path, f"models[{i}].budget.vary", f"adapter '{m.adapter}' has "
                                 f"no grid to vary; solve its width instead (vary: width)")
            if m.hidden is None or any(w is None for w in m.hidden):
                raise SuiteError(path, f"models[{i}].hidden", "a budget that varies the grid "
                                 "solves G at fixed widths: give integer hidden widths")
            continue
        if m.hidden is not None and all(w is not None for w in m.hidden):
            raise SuiteError(path, f"models[{i}].hidden",
                             "a model with a budget needs at least one null width to solve, "
                             "e.g. hidden: [null] (or leave 'hidden' out for one hidden layer)")
        if budget.match is not None:
            if budget.match not in names:
                others = [n for n in names if n != m.name]
                expected = (f"expected one of: {', '.join(others)}" if others else
                            "the suite has no other model to match; add it, or give "
                            "'params: N' instead")
                raise SuiteError(path, f"models[{i}].budget.match",
                                 f"unknown model '{budget.match}'; {expected}")
            if budget.match == m.name:
                raise SuiteError(path, f"models[{i}].budget.match", "a model cannot match itself")
    schemes = suite.resolved_schemes()
    for i, m in enumerate(suite.models):
        if not suite.usable(m):  # a broken plugin: left out of the plan, the rest runs
            continue
        adapter = adapters.get(m.adapter)
        unused = sorted((m.model_fields_set & set(adapters.ModelSpec.model_fields))
                        - adapter.spec_fields)
        if unused:
            raise SuiteError(path, f"models[{i}].{unused[0]}",
                             f"adapter '{m.adapter}' does not use '{unused[0]}' (it reads: "
                             f"{', '.join(sorted(adapter.spec_fields))}); remove it")
        if adapter.hyper is not None:  # a family's hyper-parameters, checked before any data
            try:
                adapter.resolve_options(m.options)
            except adapters.AdapterError as exc:
                raise SuiteError(path, f"models[{i}].options", str(exc)) from None
        for scheme, training in schemes:  # what a scheme asks of every model's adapter
            try:
                check_init(adapter, training.init)
            except adapters.AdapterError as exc:
                raise SuiteError(path, f"models[{i}]", f"scheme '{scheme}': {exc}") from None
            if training.regularization is not None:
                asked = {n for n, w in training.regularization.terms().items() if w}
                if not adapter.has_regularization() or asked - adapter.regularization_terms:
                    has = ", ".join(sorted(adapter.regularization_terms))
                    raise SuiteError(path, f"models[{i}]", (
                        f"scheme '{scheme}' asks for regularization "
                        f"({', '.join(sorted(asked)) or 'weight only'}), but adapter "
                        f"'{m.adapter}' " + (f"weighs only {has}" if has else
                        "has no regulariser of its own (native, efficient_kan and pykan have "
                        "one)") + "; leave it out of this scheme or model"))
    # cycles: follow match chains
    for i, m in enumerate(suite.models):
        seen = [m.name]
        cur = m
        while cur.budget is not None and cur.budget.match is not None:
            nxt = suite.models[names[cur.budget.match]]
            if nxt.name in seen:
                chain = " -> ".join([*seen, nxt.name])
                raise SuiteError(path, f"models[{i}].budget.match", f"budget references form a cycle: {chain}")
            seen.append(nxt.name)
            cur = nxt
