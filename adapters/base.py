"""The adapter interface every implementation answers, and the seeding helper they share.

An adapter hides one KAN (or MLP) implementation behind the same calls: build a model from a
:class:`ModelSpec`, count its trainable parameters (analytically, for the budget solver, and on a
built model), expose the tensors a shock perturbs and probes summarise, and say why it cannot run.
Adapters know nothing about suites, stores or reports.
"""

from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class AdapterError(Exception):
    """Base class of errors raised by adapters and the adapter registry."""


class UnknownAdapterError(AdapterError, LookupError):
    """Raised by :func:`adapters.get` for a name that is not registered."""


class AdapterUnavailableError(AdapterError):
    """Raised by ``build`` when the implementation cannot be imported on this machine."""


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

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, hidden: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 for w in hidden):
            raise ValueError(f"every hidden width must be >= 1, got {list(hidden)}")
        return hidden

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
        if family == "kan":
            return f"hidden={shape} G={self.grid} k={self.k}"
        return f"hidden={shape} {self.activation}"


Family = Literal["kan", "mlp"]


class Adapter(ABC):
    """One implementation behind the common interface. Subclasses set ``name`` and ``family``."""

    name: ClassVar[str]
    family: ClassVar[Family]
    #: keys of ``ModelSpec.options`` this adapter understands
    option_keys: ClassVar[frozenset[str]] = frozenset()

    # -- availability and provenance -------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """None when the implementation can be imported here, otherwise what is missing."""
        return None

    def provenance(self) -> dict[str, str]:
        """Which library (and version) provides the implementation; stored with every run."""
        return {"provider": "kanbench", "version": _kanbench_version()}

    # -- building and counting -------------------------------------------------------------
    @abstractmethod
    def build(
        self,
        spec: ModelSpec,
        in_dim: int,
        out_dim: int,
        seed: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.nn.Module:
        """A model mapping ``(B, in_dim) -> (B, out_dim)``, initialised from ``seed`` only.

        Must not change the caller's global random state (use :func:`isolated_rng`).
        """

    @abstractmethod
    def param_count(self, spec: ModelSpec, in_dim: int, out_dim: int) -> int:
        """Trainable parameters of the model ``build`` would return, without building it."""

    def count_params(self, model: torch.nn.Module) -> int:
        """Trainable parameters of a built model: the same definition for every adapter."""
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def flops_per_sample(self, spec: ModelSpec, in_dim: int, out_dim: int) -> int | None:
        """Analytic forward FLOPs per sample, or None where not yet modelled."""
        return None

    def warm_up(self, model: torch.nn.Module, x: torch.Tensor) -> bool:
        """Run one-off work (``torch.compile``) before the training clock starts.

        Called once per run with a training batch; returns whether anything was done. Must
        leave parameters, gradients, optimiser and global RNG state as it found them. The
        trainer records its duration separately (``warmup_time_s``), so training time
        compares steady-state speed and the one-off cost stays visible.
        """
        return False

    # -- instrumentation -------------------------------------------------------------------
    @abstractmethod
    def spline_coefficients(self, model: torch.nn.Module) -> list[torch.Tensor]:
        """Tensors that a shock perturbs and probes summarise (an MLP: its weight matrices)."""

    def regularization(self, model: torch.nn.Module) -> torch.Tensor | None:
        """The implementation's own regularisation loss, where it has one."""
        return None

    def update_grid(self, model: torch.nn.Module, x: torch.Tensor) -> bool:
        """Adapt spline grids to the data ``x``; returns False where unsupported."""
        return False

    def probe(self, model: torch.nn.Module) -> dict[str, float]:
        """Cheap internal statistics of the model's coefficients."""
        with torch.no_grad():
            coefs = [c.detach().abs().flatten() for c in self.spline_coefficients(model)]
            if not coefs:
                return {}
            flat = torch.cat(coefs).float()
            return {
                "coef_abs_mean": flat.mean().item(),
                "coef_abs_max": flat.max().item(),
                "coef_rms": flat.pow(2).mean().sqrt().item(),
            }

    # -- helpers for subclasses ------------------------------------------------------------
    def check_options(self, spec: ModelSpec) -> None:
        unknown = sorted(set(spec.options) - self.option_keys)
        if unknown:
            known = ", ".join(sorted(self.option_keys)) or "none"
            raise AdapterError(
                f"adapter '{self.name}' does not understand option(s) {unknown}; "
                f"it accepts: {known}"
            )

    def require_available(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise AdapterUnavailableError(f"adapter '{self.name}' cannot run: {reason}")

    def __repr__(self) -> str:
        return f"<adapter {self.name} ({self.family})>"


def compile_warm_up(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Forward and backward at two batch sizes, then clear the gradients: torch.compile
    specialises on the first shape and compiles a shape-generic kernel at the second, so
    later batch sizes (a short last batch, evaluation chunks) compile nothing more."""
    was_training = model.training
    model.train()
    for batch in (x, x[: max(1, len(x) - 1)]):
        model(batch).float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch for the block, then restore the caller's states.

    Model construction draws from these generators (and pykan reseeds all three), so every
    adapter builds inside this block: the model depends only on ``seed`` and the caller's
    random streams continue as if nothing happened.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    # torch.manual_seed also reseeds every CUDA device, so all of them are forked.
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _kanbench_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kanbench")
    except PackageNotFoundError:
        return "unknown"


def package_version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
