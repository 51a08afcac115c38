"""Callbacks: what the training loop calls at fixed points, built from the run specification.

Everything a callback does to a run is configuration (``RunSpec.interventions``), so it is part
of the run's key: :func:`callbacks_for` is the only place that turns a specification into
callbacks, in this process or in a worker. Time spent in callbacks is not training time: the
trainer times them apart (``callback_time_s``), synchronising the device around a step hook.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from adapters import Adapter
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

    def log(self, name: str, value: float) -> None:
        """One point of the per-step series ``name`` at the current step."""
        self.result.log(self.step, self.epoch, name, value)


class Callback:
    """Base of the training loop's callbacks; every hook is optional."""

    def on_fit_start(self, state: FitState) -> None:
        pass

    def wants_step(self, step: int) -> bool:
        """Whether :meth:`on_step_end` runs after global step ``step`` (1-based). The trainer
        skips the call (and its device synchronisation) otherwise."""
        return True

    def on_step_end(self, state: FitState, loss: torch.Tensor) -> None:
        pass

    def on_epoch_end(self, state: FitState) -> None:
        pass


class ProbeCallback(Callback):
    """The adapter's internal statistics (``Adapter.probe``): every ``every`` steps into the
    per-step series, with the step's training loss, or once per epoch into the epoch curve."""

    def __init__(self, every: int | None = None):
        self.every = every

    def wants_step(self, step: int) -> bool:
        return self.every is not None and step % self.every == 0

    def on_step_end(self, state: FitState, loss: torch.Tensor) -> None:
        state.log("train_loss", float(loss.detach()))
        for name, value in state.adapter.probe(state.model).items():
            state.log(f"probe_{name}", value)

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
