"""The architecture of one model, independent of the implementation: pydantic only, no torch.

It is the vocabulary the run record (``bench.records``) shares with the adapters, so the store and
the reports can read a stored run's architecture without importing torch or any implementation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Family = Literal["kan", "mlp"]


class ModelSpec(BaseModel):
    """Architecture of one model, independent of the implementation.

    ``hidden`` lists hidden-layer widths (input and output widths come from the dataset).
    ``grid`` (G, number of grid intervals), ``k`` (spline order) and ``grid_range`` apply to
    B-spline KANs; an MLP ignores them and uses ``activation``. ``options`` carries
    implementation-specific settings (each adapter documents the ones it reads and rejects
    unknown ones).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: tuple[int, ...] = ()
    grid: int = Field(5, ge=1)
    k: int = Field(3, ge=1, le=5)
    activation: str = "silu"
    grid_range: tuple[float, float] = (-1.0, 1.0)
    options: dict[str, Any] = Field(default_factory=dict)
    grid_schedule: tuple[tuple[int, int], ...] = Field(
        (), description="(epoch, G) pairs: at the start of each epoch listed, refine every "
        "spline layer to G intervals preserving the function (the KAN paper's grid extension)")

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, hidden: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 for w in hidden):
            raise ValueError(f"every hidden width must be >= 1, got {list(hidden)}")
        return hidden

    @model_validator(mode="after")
    def _refinements_grow(self) -> ModelSpec:
        epoch, grid = 1, self.grid
        for at, new_grid in self.grid_schedule:
            if at <= epoch or new_grid <= grid:
                raise ValueError(
                    f"grid_schedule must list [epoch, G] pairs with epochs from 2 up and G above "
                    f"the model's grid ({self.grid}), both increasing; got "
                    f"{[list(p) for p in self.grid_schedule]}")
            epoch, grid = at, new_grid
        return self

    @model_validator(mode="after")
    def _ordered_range(self) -> ModelSpec:
        lo, hi = self.grid_range
        if not lo < hi:
            raise ValueError(f"grid_range must be increasing, got {list(self.grid_range)}")
        return self

    def widths(self, in_dim: int, out_dim: int) -> list[int]:
        """Layer widths from input to output, e.g. ``[30, 8, 2]``."""
        return [in_dim, *self.hidden, out_dim]

    def describe(self, family: str) -> str:
        """Short human-readable architecture, used in reports and the budget table."""
        shape = "[" + ", ".join(str(h) for h in self.hidden) + "]"
        if family == "kan" and "basis" in self.options:  # a family with its own settings
            settings = " ".join(f"{key}={_short(value)}" for key, value in self.options.items()
                                if key != "basis")
            return f"hidden={shape} {self.options['basis']} {settings}".rstrip()
        if family == "kan":
            grids = "->".join(str(g) for g in (self.grid, *(g for _, g in self.grid_schedule)))
            return f"hidden={shape} G={grids} k={self.k}"
        return f"hidden={shape} {self.activation}"


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)
