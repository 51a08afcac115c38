"""Callbacks: what the training loop calls at fixed points, built from the run specification.

Everything a callback does to a run is configuration (``RunSpec.interventions``), so it is part
of the run's key: :func:`callbacks_for` is the only place that turns a specification into
callbacks, in this process or in a worker. Time spent in callbacks is not training time: the
trainer times them apart (``callback_time_s``), synchronising the device around a step hook.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from adapters import Adapter
from bench.losses import task_loss
from bench.records import RunResult, RunSpec
from bench.records.spec import ShockSpec


@dataclass
class FitState:
    """What callbacks see. ``record`` is the current epoch's curve row (callbacks may add);
    per-run values and per-step series go to ``result`` (``result.record``, :meth:`log`)."""

    spec: RunSpec
    adapter: Adapter
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: Any  # bench.datasets.Dataset
    result: RunResult
    epoch: int = 0
    step: int = 0
    total_steps: int = 0  # planned optimisation steps (early stopping may end sooner)
    record: dict[str, Any] = field(default_factory=dict)
    #: the run's splits on the device, name -> (x, y)
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    #: the weighted regularisation term of the last step (None: no regulariser)
    step_reg: torch.Tensor | None = None

    def log(self, name: str, value: float) -> None:
        """One point of the per-step series ``name`` at the current step."""
        self.result.log(self.step, self.epoch, name, value)


class Callback:
    """Base of the training loop's callbacks; every hook is optional."""

    def on_fit_start(self, state: FitState) -> None:
        pass

    def wants_step(self, step: int) -> bool:
        """Whether :meth:`on_step_start` and :meth:`on_step_end` run around global step ``step``
        (1-based). The trainer skips the calls (and their device synchronisation) otherwise."""
        return True

    def on_step_start(self, state: FitState) -> None:
        """Before step ``state.step + 1`` changes the parameters (before its forward)."""

    def on_step_end(self, state: FitState, loss: torch.Tensor) -> None:
        pass

    def on_epoch_end(self, state: FitState) -> None:
        pass


class RunTimeout(Exception):
    """Raised by :class:`Deadline`: the run went over its time; ``fit`` records ``timeout``."""


class Deadline(Callback):
    """Stops a run ``seconds`` after ``started`` (``time.monotonic``; default: now) at the next
    step or epoch end: the in-process half of a suite's ``timeout``, which keeps the epochs
    measured so far. Executors with worker processes also kill a worker that does not come
    back (a run stuck outside the training loop)."""

    def __init__(self, seconds: float, started: float | None = None):
        self.seconds = seconds
        self.until = (time.monotonic() if started is None else started) + seconds

    def _check(self, state: FitState) -> None:
        if time.monotonic() > self.until:
            raise RunTimeout(f"stopped at step {state.step}, epoch {state.epoch}: over the "
                             f"suite's timeout of {self.seconds:g} s")

    def wants_step(self, step: int) -> bool:
        return time.monotonic() > self.until  # the hook (and its sync) only once it is over

    def on_step_start(self, state: FitState) -> None:
        self._check(state)

    def on_epoch_end(self, state: FitState) -> None:
        self._check(state)


#: rows of the fixed validation and test subsets a per-step probe evaluates: a full pass
#: would dominate a step (every: 1), so the same rows are used at every probe of every run
PROBE_ROWS = 256
#: the per-parameter statistics of a per-step probe, series ``param/<name>/<statistic>``
PARAM_STATISTICS = ("abs_mean", "rms", "abs_max", "grad_norm", "update_ratio")


def probe_subset(x: torch.Tensor, y: torch.Tensor, rows: int = PROBE_ROWS
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed rows of a split a probe evaluates: ``rows`` of them drawn by a generator with
    a constant seed, so every run of every model sees the same rows."""
    if len(x) <= rows:
        return x, y
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:rows]
    index = index.sort().values.to(x.device)
    return x[index], y[index]


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """The model in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def subset_loss(state: FitState, x: torch.Tensor, y: torch.Tensor) -> float:
    """The task loss of the model on ``x``, ``y``, evaluated without gradients."""
    with evaluating(state.model):
        return float(task_loss(state.data.task, state.model(x), y))


class ProbeCallback(Callback):
    """Internal statistics of the model during training.

    Once per epoch (``every`` None): the adapter's coefficient statistics (``Adapter.probe``)
    into the epoch curve. Every ``every`` steps: into the per-step series, after the step,
    ``train_loss`` (the step's loss, as trained), ``val_loss`` and ``test_loss`` (the same loss
    on fixed subsets of :data:`PROBE_ROWS` rows, see :func:`probe_subset`), ``reg`` (the
    weighted regularisation term, when the scheme has one), ``lr``, ``grad_norm`` (the global
    L2 norm of the gradients the step applied, after clipping), ``coef_mean`` (mean |theta|
    over the adapter's coefficient tensors: a KAN's spline coefficients, an MLP's weights), the
    implementation's own activation statistics (``Adapter.activation_statistics`` on the
    validation subset: pykan's), ``probe_<name>`` (``Adapter.probe``) and, for every named
    parameter tensor, ``param/<name>/abs_mean``, ``rms``, ``abs_max``, ``grad_norm`` and
    ``update_ratio`` (||theta after - theta before|| / ||theta before|| over the step).
    Probes change nothing a run computes: no random draws, evaluation without gradients.
    """

    def __init__(self, every: int | None = None):
        self.every = every
        self.before: dict[str, torch.Tensor] = {}
        self.subsets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def on_fit_start(self, state: FitState) -> None:
        if self.every is not None:
            self.subsets = {name: probe_subset(*state.splits[name])
                            for name in ("val", "test") if name in state.splits}

    def wants_step(self, step: int) -> bool:
        return self.every is not None and step % self.every == 0

    @torch.no_grad()
    def on_step_start(self, state: FitState) -> None:
        self.before = {name: p.detach().clone() for name, p in state.model.named_parameters()
                       if p.requires_grad}

    @torch.no_grad()
    def on_step_end(self, state: FitState, loss: torch.Tensor) -> None:
        state.log("train_loss", float(loss.detach()))
        state.log("lr", state.optimizer.param_groups[0]["lr"])
        if state.step_reg is not None:
            state.log("reg", float(state.step_reg))
        model = state.model
        for name, (x, y) in self.subsets.items():
            state.log(f"{name}_loss", subset_loss(state, x, y))
        if "val" in self.subsets:
            with evaluating(model):
                for name, value in state.adapter.activation_statistics(
                        model, self.subsets["val"][0]).items():
                    state.log(name, value)
        coefs = [c.detach().abs().flatten() for c in state.adapter.spline_coefficients(model)]
        if coefs:
            state.log("coef_mean", float(torch.cat(coefs).float().mean()))
        for name, value in state.adapter.probe(model).items():
            state.log(f"probe_{name}", value)
        grad_sq = 0.0
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            theta = p.detach().float()
            prefix = f"param/{name}/"
            state.log(prefix + "abs_mean", float(theta.abs().mean()))
            state.log(prefix + "rms", float(theta.pow(2).mean().sqrt()))
            state.log(prefix + "abs_max", float(theta.abs().max()))
            grad = 0.0 if p.grad is None else float(p.grad.detach().float().norm())
            grad_sq += grad * grad
            state.log(prefix + "grad_norm", grad)
            before = self.before.get(name)
            if before is not None and before.shape == p.shape:  # a refinement replaces tensors
                norm = float(before.float().norm())
                change = float((theta - before.float()).norm())
                state.log(prefix + "update_ratio", change / norm if norm > 0 else float("nan"))
        state.log("grad_norm", grad_sq ** 0.5)
        self.before = {}

    def on_epoch_end(self, state: FitState) -> None:
        if self.every is None:
            for name, value in state.adapter.probe(state.model).items():
                state.record[f"probe_{name}"] = value


class ShockCallback(Callback):
    """Adds Gaussian noise in place to the targeted tensors once, after the optimisation step
    at ``shock.at`` of the planned steps (the same step for every model of a comparison). The
    noise is drawn on the CPU from a generator seeded by the run's seed only, so it is the same
    on every device."""

    def __init__(self, shock: ShockSpec, seed: int):
        self.shock = shock
        self.seed = seed
        self.step: int | None = None

    def on_fit_start(self, state: FitState) -> None:
        self.step = max(1, round(self.shock.at * state.total_steps))
        state.result.record("shock_step", self.step)

    def wants_step(self, step: int) -> bool:
        return step == self.step

    def targets(self, state: FitState) -> list[torch.Tensor]:
        if self.shock.target == "all":
            return [p for p in state.model.parameters() if p.requires_grad]
        return list(state.adapter.spline_coefficients(state.model))

    @torch.no_grad()
    def on_step_end(self, state: FitState, loss: torch.Tensor) -> None:
        generator = torch.Generator().manual_seed(noise_seed(self.seed))
        for tensor in self.targets(state):
            sigma = self.shock.sigma
            if self.shock.scale == "relative":
                sigma *= float(tensor.detach().float().std()) if tensor.numel() > 1 else 0.0
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64) * sigma
            tensor.add_(noise.to(device=tensor.device, dtype=tensor.dtype))
        state.log("shock", 1.0)
        if "val" in state.splits:  # the loss the noise caused, before any step repairs it
            state.log("after_shock_val_loss",
                      subset_loss(state, *probe_subset(*state.splits["val"])))


class EpochProgress(Callback):
    """Tells ``report(epoch, epochs, metric, value)`` the validation metric after each epoch,
    so a long run shows how far it is (display only: it changes nothing a run does)."""

    def __init__(self, report: Callable[[int, int, str, float], None]):
        self.report = report

    def wants_step(self, step: int) -> bool:
        return False

    def on_epoch_end(self, state: FitState) -> None:
        self.report(state.epoch, state.spec.training.epochs, state.data.metric,
                    state.record["val_metric"])


def noise_seed(seed: int) -> int:
    """The shock noise's seed: a function of the run's seed only, apart from the batch order's
    generator (which is seeded with the run's seed itself)."""
    digest = hashlib.sha256(f"kanbench-shock:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def callbacks_for(spec: RunSpec) -> list[Callback]:
    """The callbacks a run's specification asks for (probes always: once per epoch by default)."""
    interventions = spec.interventions
    callbacks: list[Callback] = [ProbeCallback(interventions.probes.every)]
    if interventions.shock is not None:
        callbacks.append(ShockCallback(interventions.shock, spec.seed))
    return callbacks
