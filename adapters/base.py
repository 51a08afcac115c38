"""The adapter interface every implementation answers, and the seeding helper they share.

An adapter hides one KAN (or MLP) implementation behind the same calls: build a model from a
:class:`ModelSpec`, count its trainable parameters (analytically, for the budget solver, and on a
built model), expose the tensors a shock perturbs and probes summarise, and say why it cannot run.
Adapters know nothing about suites, stores or reports.

An adapter is a process-wide singleton (``adapters.get(name)`` returns one instance) and several
models may be in flight at once, so it keeps no per-model state: whatever is particular to a
model (e.g. whether its kernels compiled) lives on the model, and :meth:`Adapter.provenance`
reads it from there.
"""

from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import ClassVar

import numpy as np
import torch

from adapters.spec import Family, ModelSpec


class AdapterError(Exception):
    """Base class of errors raised by adapters and the adapter registry."""


class UnknownAdapterError(AdapterError, LookupError):
    """Raised by :func:`adapters.get` for a name that is not registered."""


class AdapterUnavailableError(AdapterError):
    """Raised by ``build`` when the implementation cannot be imported on this machine."""


class Adapter(ABC):
    """One implementation behind the common interface. Subclasses set ``name`` and ``family``."""

    name: ClassVar[str]
    family: ClassVar[Family]
    #: the ``ModelSpec`` fields this adapter reads; a suite that sets any other field is
    #: rejected rather than silently ignored
    spec_fields: ClassVar[frozenset[str]] = frozenset(ModelSpec.model_fields)
    #: keys of ``ModelSpec.options`` this adapter understands
    option_keys: ClassVar[frozenset[str]] = frozenset()

    # -- availability and provenance -------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """None when the implementation can be imported here, otherwise what is missing."""
        return None

    def provenance(self, model: torch.nn.Module | None = None) -> dict[str, str]:
        """What computes a run, stored with it: the library (``provider``, ``version``) and,
        given a model this adapter built, what is particular to that model (e.g. whether its
        compiled kernels ran), read from the model itself. The trainer asks after warm-up."""
        return {"provider": "kanbench", "version": _kanbench_version()}

    # -- the model spec --------------------------------------------------------------------
    def check_spec(self, spec: ModelSpec) -> None:
        """Raise :class:`AdapterError` for any value of ``spec`` this adapter cannot honour,
        naming the field, the value and what the adapter supports; only the fields in
        :attr:`spec_fields` are read. The default checks the option keys
        (:meth:`check_options`). ``build`` and ``param_count`` call it."""
        self.check_options(spec)

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
        """Reject option keys outside :attr:`option_keys` (their values are the adapter's to check)."""
        unknown = sorted(set(spec.options) - self.option_keys)
        if unknown:
            known = ", ".join(sorted(self.option_keys)) or "none"
            raise AdapterError(
                f"adapter '{self.name}' does not understand option(s) {unknown}; "
                f"it accepts: {known}"
            )

    def check_choice(self, field: str, value: object, supported: Iterable[object]) -> None:
        """Reject ``value`` of ``field`` (a spec field or ``options.<key>``) unless supported."""
        supported = list(supported)
        if value not in supported:
            listed = ", ".join(sorted(repr(v) if not isinstance(v, str) else v for v in supported))
            raise AdapterError(
                f"adapter '{self.name}': unknown {field} {value!r}; expected one of {listed}"
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
