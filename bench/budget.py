"""Parameter-budget matching: solve hidden widths so a model's count meets a target.

Counts come from each adapter's analytic ``param_count`` (tests check it equals the count of
the built model), so solving never builds a model. Every count is monotone in the width, so the
closest width is found by doubling then bisection.

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


@dataclass(frozen=True)
class Solved:
    """A model's resolved architecture and how it meets its budget."""

    spec: ModelSpec
    params: int
    target: int | None = None
    reference: str | None = None  # the matched model's name, or None for an absolute target
    tolerance: float | None = None

    @property
    def rel_error(self) -> float | None:
        if self.target is None:
            return None
        return (self.params - self.target) / self.target


def with_width(template: ModelSpec, hidden: list[int | None], width: int) -> ModelSpec:
    """``template`` with every null hidden width replaced by ``width``."""
    return template.model_copy(update={"hidden": tuple(width if w is None else w for w in hidden)})


def solve_width(
    adapter: Adapter,
    template: ModelSpec,
    hidden: list[int | None],
    in_dim: int,
    out_dim: int,
    target: int,
    tolerance: float,
    what: str,
) -> Solved:
    """Shared width for the null entries of ``hidden`` whose count is closest to ``target``.

    Raises :class:`BudgetError` naming ``what`` when the closest count is outside tolerance.
    """
    if not any(w is None for w in hidden):
        raise BudgetError(f"{what}: no null hidden width to solve")

    def count(w: int) -> int:
        return adapter.param_count(with_width(template, hidden, w), in_dim, out_dim)

    lo, hi = 1, 1
    while count(hi) < target:
        lo, hi = hi, hi * 2
        if hi > MAX_WIDTH:
            raise BudgetError(f"{what}: target of {target:,} parameters needs a width above "
                              f"{MAX_WIDTH:,}")
    while lo < hi:  # smallest w with count(w) >= target
        mid = (lo + hi) // 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [w for w in (hi - 1, hi) if w >= 1]
    best = min(candidates, key=lambda w: (abs(count(w) - target), w))
    params = count(best)
    solved = Solved(with_width(template, hidden, best), params, target, None, tolerance)
    err = abs(solved.rel_error or 0.0)
    if err > tolerance:
        raise BudgetError(
            f"{what}: the closest width ({best}) gives {params:,} parameters, {err:.1%} away "
            f"from the target {target:,} (tolerance {tolerance:.1%}); change the architecture "
            f"(depth, grid, k) or raise 'tolerance'"
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
