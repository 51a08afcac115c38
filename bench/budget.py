"""Budget matching: solve hidden widths (or the grid) so a model's parameters or FLOPs meet a
target.

Counts come from each adapter's analytic ``param_count`` and ``flops`` (tests check them
against the built model and torch's flop counter), so solving never builds a model. Every
measure is monotone in the width and in G, so the closest is found by doubling then bisection.

Before any training, each resolved model's training memory is estimated from its count
(:func:`training_memory`) and a model that cannot fit in the machine's available memory is
refused (:func:`check_memory`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from adapters import Adapter, ModelSpec
from bench.errors import BudgetError

MAX_WIDTH = 1 << 22


#: what a budget measures: the trainable parameter count, or per-sample forward FLOPs in the
#: fairness study's convention (``nominal``) or as the implementation executes them (``impl``)
MEASURES = ("params", "flops_nominal", "flops_impl")


@dataclass(frozen=True)
class Solved:
    """A model's resolved architecture and how it meets its budget."""

    spec: ModelSpec
    params: int
    target: int | None = None
    reference: str | None = None  # the matched model's name, or None for an absolute target
    tolerance: float | None = None
    by: str = "params"  # what the target counts (MEASURES)
    achieved: float | None = None  # the measure of ``spec`` (``params`` when by params)

    @property
    def rel_error(self) -> float | None:
        if self.target is None:
            return None
        value = self.params if self.achieved is None else self.achieved
        return (value - self.target) / self.target


def measure(adapter: Adapter, spec: ModelSpec, in_dim: int, out_dim: int, by: str) -> float:
    """``spec``'s parameter count or per-sample forward FLOPs (``by``, one of MEASURES)."""
    if by == "params":
        return adapter.param_count(spec, in_dim, out_dim)
    flops = adapter.flops(spec, in_dim, out_dim)
    value = flops.nominal if by == "flops_nominal" else flops.impl
    if value is None:
        raise BudgetError(f"adapter '{adapter.name}' has no nominal FLOPs formula (the fairness "
                          f"study's convention covers B-spline KANs and MLPs); match by "
                          f"flops_impl or params instead")
    return value


def with_width(template: ModelSpec, hidden: list[int | None], width: int,
               shape: list[float] | None = None) -> ModelSpec:
    """``template`` with the null hidden widths replaced: by ``width``, or (``shape``, one
    ratio per null entry) by ``round(width * ratio)``, at least 1."""
    ratios = iter(shape or [])
    widths = tuple(w if w is not None else max(1, round(width * next(ratios))) if shape
                   else width for w in hidden)
    return template.model_copy(update={"hidden": widths})


def with_grid(template: ModelSpec, hidden: list[int | None], grid: int) -> ModelSpec:
    """``template`` with grid size ``grid`` and the (fixed) hidden widths."""
    return template.model_copy(update={"hidden": tuple(hidden), "grid": grid})


def solve_width(
    adapter: Adapter,
    template: ModelSpec,
    hidden: list[int | None],
    in_dim: int,
    out_dim: int,
    target: float,
    tolerance: float,
    what: str,
    *,
    by: str = "params",
    vary: str = "width",
    shape: list[float] | None = None,
) -> Solved:
    """The architecture whose measure (``by``: parameters or FLOPs) is closest to ``target``,
    varying the shared width of the null entries of ``hidden`` (at the ratios ``shape`` when
    given) or, with ``vary="grid"``, the grid size G at fixed widths. Every measure grows with
    both, so the closest is found by doubling then bisection.

    Raises :class:`BudgetError` naming ``what`` when the closest value is outside tolerance,
    with that closest achievable value.
    """
    if vary == "width" and not any(w is None for w in hidden):
        raise BudgetError(f"{what}: no null hidden width to solve")
    if vary == "grid" and any(w is None for w in hidden):
        raise BudgetError(f"{what}: a budget that varies the grid needs fixed hidden widths")
    unit = "parameters" if by == "params" else f"FLOPs per sample ({by.removeprefix('flops_')})"

    def build(n: int) -> ModelSpec:
        return with_grid(template, hidden, n) if vary == "grid" else \
            with_width(template, hidden, n, shape)

    def value(n: int) -> float:
        return measure(adapter, build(n), in_dim, out_dim, by)

    lo, hi = 1, 1
    while value(hi) < target:
        lo, hi = hi, hi * 2
        if hi > MAX_WIDTH:
            raise BudgetError(f"{what}: a target of {target:,.0f} {unit} needs a "
                              f"{vary} above {MAX_WIDTH:,}")
    while lo < hi:  # smallest n whose value reaches the target
        mid = (lo + hi) // 2
        if value(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [n for n in (hi - 1, hi) if n >= 1]
    best = min(candidates, key=lambda n: (abs(value(n) - target), n))
    spec = build(best)
    achieved = value(best)
    solved = Solved(spec, adapter.param_count(spec, in_dim, out_dim), round(target), None,
                    tolerance, by, None if by == "params" else achieved)
    err = abs(solved.rel_error or 0.0)
    if err > tolerance:
        chosen = f"G={best}" if vary == "grid" else f"width {best}"
        raise BudgetError(
            f"{what}: the closest achievable ({chosen}) gives {achieved:,.0f} {unit}, "
            f"{err:.1%} away from the target {target:,.0f} (tolerance {tolerance:.1%}); change "
            f"the architecture (depth, grid, k) or raise 'tolerance'"
        )
    return solved


#: Bytes per parameter while training: float32 weights, their gradients and Adam's two moments
#: (4 bytes x 4). A lower bound: activations, data and the framework come on top.
TRAINING_BYTES_PER_PARAM = 4 * 4


class ModelTooLarge(BudgetError):
    """A model whose parameters alone cannot fit in the available memory while training."""


def training_memory(params: int) -> int:
    """Estimated bytes to train a model of ``params`` parameters (see TRAINING_BYTES_PER_PARAM)."""
    return params * TRAINING_BYTES_PER_PARAM


def available_memory() -> int | None:
    """Bytes of memory available to a new process: Linux's MemAvailable (which counts
    reclaimable caches), else the free physical pages; None when the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not every system names these
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def activation_memory(spec: ModelSpec, family: str, in_dim: int, out_dim: int, rows: int) -> int:
    """Estimated bytes of the values one forward and backward keeps for ``rows`` samples: per
    sample, every layer width in float32, twice for an MLP (pre-activation and activation), and
    G + k + 2 times for a KAN (its basis and base branch per input). A rough lower bound."""
    per_value = spec.grid + spec.k + 2 if family == "kan" else 2
    return rows * sum(spec.widths(in_dim, out_dim)) * per_value * 4


def check_memory(params: int, what: str, model: str, activations: int = 0) -> None:
    """Raise :class:`ModelTooLarge` naming ``what`` when training ``params`` parameters (plus
    ``activations`` bytes of kept values) cannot fit in the available memory (no check when the
    available memory is unknown)."""
    available = available_memory()
    need = training_memory(params) + activations
    if available is not None and need > available:
        parts = (f"{_gib(training_memory(params))} for float32 weights, gradients and Adam's two "
                 f"moments (parameters x 4 bytes x 4)")
        if activations:
            parts += f" and {_gib(activations)} for the values a batch keeps"
        raise ModelTooLarge(
            f"{what}: {params:,} parameters need about {_gib(need)} to train ({parts}), more "
            f"than the {_gib(available)} of memory available; use smaller hidden widths, grid "
            f"or budget", model)
