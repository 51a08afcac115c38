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
import os
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ValidationError

from adapters.flops import Flops  # noqa: F401 - part of the adapter interface (defined torch-free)
from adapters.spec import Family, ModelSpec


class AdapterError(Exception):
    """Base class of errors raised by adapters and the adapter registry."""


class UnknownAdapterError(AdapterError, LookupError):
    """Raised by :func:`adapters.get` for a name that is not registered."""


class AdapterUnavailableError(AdapterError):
    """Raised by ``build`` when the implementation cannot be imported on this machine."""


#: Roles of the tensors a named initialisation touches (``bench/init.py``; README
#: "Initialisations"). Drawn from the initialisation's distribution with the target's fans:
#: ``weight`` (an MLP's ``nn.Linear`` weight), ``base_weight`` (a KAN's per-edge weight of the
#: base/residual branch), ``spline_coefficients`` (B-spline coefficients). Set to a constant:
#: ``spline_scaler`` (per-edge multiplier of the spline branch) and ``node_scale`` (per-node
#: output multiplier) to 1, ``bias`` to 0.
INIT_DRAWN_ROLES = frozenset({"weight", "base_weight", "spline_coefficients"})
INIT_FILLED_ROLES = frozenset({"spline_scaler", "node_scale", "bias"})
INIT_ROLES = INIT_DRAWN_ROLES | INIT_FILLED_ROLES


@dataclass(frozen=True, eq=False)
class InitTarget:
    """One tensor a named initialisation writes, as :meth:`Adapter.init_targets` declares it.

    ``name`` is the parameter's name in ``model.named_parameters()``; ``tensor`` is that
    parameter or a view of part of it (inkan's packed weight holds two roles), written in
    place. ``fan_in`` / ``fan_out`` are the fans the formulas use, by role rather than by
    tensor layout (pykan stores its edges (in, out), efficient-kan (out, in)); a drawn role
    needs both, a filled role (scaler, bias) has none.
    """

    role: str
    name: str
    tensor: torch.Tensor
    fan_in: int | None = None
    fan_out: int | None = None

    def __post_init__(self) -> None:
        if self.role not in INIT_ROLES:
            raise ValueError(
                f"unknown init role {self.role!r}; expected one of {', '.join(sorted(INIT_ROLES))}"
            )
        if self.role in INIT_DRAWN_ROLES:
            for fan in (self.fan_in, self.fan_out):
                if isinstance(fan, bool) or not isinstance(fan, int) or fan < 1:
                    raise ValueError(
                        f"init target {self.name} ({self.role}): fan_in and fan_out must be "
                        f"positive integers, got {self.fan_in!r}, {self.fan_out!r}"
                    )


def named_targets(model: torch.nn.Module, specs: Iterable[tuple]) -> list[InitTarget]:
    """:class:`InitTarget` s from ``(role, parameter or view of one, fan_in, fan_out)`` tuples,
    each named by the parameter it belongs to in ``model.named_parameters()``."""
    names = {id(p): n for n, p in model.named_parameters()}
    targets = []
    for role, tensor, fan_in, fan_out in specs:
        name = names.get(id(tensor if tensor._base is None else tensor._base))
        if name is None:
            raise AdapterError(f"init target ({role}, shape {tuple(tensor.shape)}) is no parameter of the model")
        targets.append(InitTarget(role, name, tensor, fan_in, fan_out))
    return targets


def bspline_edge_targets(
    base_weight: torch.Tensor,
    spline_coefficients: torch.Tensor,
    spline_scaler: torch.Tensor | None = None,
) -> list[tuple]:
    """The ``(role, tensor, fan_in, fan_out)`` of one B-spline KAN layer in efficient-kan's
    layout: ``base_weight`` (out, in), ``spline_coefficients`` (out, in, G+k), optional
    ``spline_scaler`` (out, in). The fans of the coefficients are ``in*(G+k)`` and
    ``out*(G+k)`` (what ``torch.nn.init`` computes for that tensor: an output's spline branch
    is a linear map of the ``in*(G+k)`` basis values of its inputs); the base weight's are those
    of a Linear layer, ``in`` and ``out``."""
    n_out, n_in, n_bases = spline_coefficients.shape
    specs: list[tuple] = [
        ("base_weight", base_weight, n_in, n_out),
        ("spline_coefficients", spline_coefficients, n_in * n_bases, n_out * n_bases),
    ]
    if spline_scaler is not None:
        specs.append(("spline_scaler", spline_scaler, None, None))
    return specs


class Adapter(ABC):
    """One implementation behind the common interface. Subclasses set ``name`` and ``family``."""

    name: ClassVar[str]
    family: ClassVar[Family]
    #: the ``ModelSpec`` fields this adapter reads; a suite that sets any other field is
    #: rejected rather than silently ignored
    spec_fields: ClassVar[frozenset[str]] = frozenset(ModelSpec.model_fields) - {"grid_schedule"}
    #: keys of ``ModelSpec.options`` this adapter understands
    option_keys: ClassVar[frozenset[str]] = frozenset()
    #: a KAN family's own hyper-parameters (degree, frequencies, centres...), read from
    #: ``ModelSpec.options`` and validated by this pydantic model (fields, defaults, bounds);
    #: the planner stores them with defaults filled in, so every run's configuration, key and
    #: export hold the values it trained with. None: the options are checked by
    #: :attr:`option_keys` and the adapter alone (the B-spline adapters).
    hyper: ClassVar[type[BaseModel] | None] = None
    #: what a KAN's edge functions are made of, shown by ``bench list adapters``
    basis: ClassVar[str] = "b-spline"

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

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """Per-sample FLOPs of the model ``build`` would return, without building it (pure
        arithmetic: the budget solver calls it many times): KANbeFair's nominal figure and what
        this implementation executes, forward and forward + backward (adapters/flops.py).
        Implementations call :meth:`check_spec`. The default raises: an adapter that does not
        model its FLOPs still loads, but cannot be budgeted or matched by FLOPs."""
        raise AdapterError(f"adapter '{self.name}' does not model its FLOPs")

    def warm_up(self, model: torch.nn.Module, x: torch.Tensor, steps: int | None = None) -> bool:
        """Run one-off work (``torch.compile``) before the training clock starts.

        Called once per run with a training batch and the run's planned optimisation ``steps``
        (an adapter may skip work that would not pay over them; None: unknown); returns whether
        anything was done. Must
        leave parameters, gradients, optimiser and global RNG state as it found them. The
        trainer records its duration separately (``warmup_time_s``), so training time
        compares steady-state speed and the one-off cost stays visible.
        """
        return False

    def init_targets(self, model: torch.nn.Module) -> list[InitTarget]:
        """The tensors a named initialisation (``bench.init.apply_init``: kaiming, xavier,
        normal(std)) writes, with their roles and fans; every other parameter keeps the value
        ``build`` gave it. The default, no targets, means the adapter cannot be initialised
        other than by its own ``build`` ("default"). The README's "Initialisations" table
        lists each adapter's choice."""
        return []

    # -- instrumentation -------------------------------------------------------------------
    @abstractmethod
    def spline_coefficients(self, model: torch.nn.Module) -> list[torch.Tensor]:
        """Tensors that a shock perturbs and probes summarise (an MLP: its weight matrices)."""

    #: the terms :meth:`regularization` weighs (keyword arguments it takes); empty: the adapter
    #: has no regulariser of its own. A suite asking for any other term is rejected.
    regularization_terms: ClassVar[frozenset[str]] = frozenset()

    def regularization(self, model: torch.nn.Module, **weights: float) -> torch.Tensor | None:
        """The implementation's own regularisation loss of the last training forward, each term
        weighted by the keyword of its name in :attr:`regularization_terms` (efficient-kan: the
        L1 of the mean absolute spline weight per edge, ``l1``, and the entropy of their
        distribution, ``entropy``); None where the adapter has none."""
        return None

    def has_regularization(self) -> bool:
        """Whether :meth:`regularization` gives a loss (decided without a model)."""
        return bool(self.regularization_terms)

    def enable_regularization(self, model: torch.nn.Module) -> None:
        """Called once before training with a regulariser: record, in training forwards, what
        :meth:`regularization` reads (pykan: its per-edge activation statistics)."""

    def extend_grid(self, model: torch.nn.Module, new_grid: int,
                    x: torch.Tensor | None = None) -> float:
        """Refine every spline layer to ``new_grid`` intervals, preserving the function; returns
        the largest deviation. Parameters may be replaced: rebuild the optimiser afterwards.
        Adapters that can do this list ``grid_schedule`` in :attr:`spec_fields`."""
        raise AdapterError(f"adapter '{self.name}' cannot refine its grid")

    def update_grid(self, model: torch.nn.Module, x: torch.Tensor) -> bool:
        """Adapt spline grids to the data ``x``; returns False where unsupported."""
        return False

    def activation_statistics(self, model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
        """Statistics of the activations on inputs ``x`` that the implementation itself computes
        (pykan: the means of its saved activation scales); empty where it has none."""
        return {}

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
    def hyperparameters(self, spec: ModelSpec) -> BaseModel:
        """The family hyper-parameters ``spec.options`` gives (see :attr:`hyper`), validated;
        :class:`AdapterError` names the option and what it expects."""
        if self.hyper is None:
            raise AdapterError(f"adapter '{self.name}' has no family hyper-parameters")
        self._reject_unknown_options(spec, frozenset(self.hyper.model_fields))
        try:
            return self.hyper.model_validate(spec.options)
        except ValidationError as exc:
            problems = "; ".join(
                f"options.{'.'.join(str(p) for p in e['loc']) or '?'}: {e['msg']}"
                for e in exc.errors())
            raise AdapterError(f"adapter '{self.name}': {problems}") from None

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` as a run stores them: a family's hyper-parameters with every default
        filled in (validated); other adapters' unchanged."""
        if self.hyper is None:
            return dict(options)
        return self.hyperparameters(ModelSpec(options=options)).model_dump(mode="json")

    def check_options(self, spec: ModelSpec) -> None:
        """Reject option keys outside :attr:`option_keys` (their values are the adapter's to
        check), or, for a family with :attr:`hyper`, any option it does not validate."""
        if self.hyper is not None:
            self.hyperparameters(spec)
            return
        self._reject_unknown_options(spec, self.option_keys)

    def _reject_unknown_options(self, spec: ModelSpec, keys: frozenset[str]) -> None:
        unknown = sorted(set(spec.options) - keys)
        if unknown:
            known = ", ".join(sorted(keys)) or "none"
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


def compile_cache_dir() -> Path:
    """Where torch.compile keeps what it compiled for kanbench's kernels: ``compile`` under
    kanbench's cache folder (``$KANBENCH_CACHE``, else ``~/.cache/kanbench/cache``), so later
    processes and suites reuse it and a reboot does not empty it (torch's default is the
    system's temporary folder)."""
    env = os.environ.get("KANBENCH_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "kanbench" / "cache"
    return root / "compile"


def use_compile_cache() -> None:
    """Point torch.compile's cache (Inductor's ``TORCHINDUCTOR_CACHE_DIR``) at
    :func:`compile_cache_dir`, unless the user chose one; called before anything compiles."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))


use_compile_cache()


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
