"""One training run: build through the adapter, train, select an epoch on validation, measure.

Honesty rules kept here:
- the reported epoch is chosen on the validation split (or is the last one); the test metric is
  read at that epoch. The best-test-epoch figure is stored too, labelled, only so results stay
  comparable with studies that report it;
- ``train_time_s`` covers only optimisation steps (evaluation excluded), with CUDA synchronised
  before each clock read; the thread count is recorded with it. One-off compilation
  (``Adapter.warm_up``: torch.compile'd kernels) runs before the clock starts and is recorded
  on its own as ``warmup_time_s``, so steady-state speeds compare and the cost stays visible;
- a non-finite loss marks the run ``diverged`` at its global step; the curves up to there are kept.

Extension points: callbacks (:mod:`bench.callbacks`, built from the run specification) see the
model, optimizer and adapter at fixed points (``on_fit_start``, ``on_step_start``, ``on_step_end``,
``on_epoch_end``) and add values to the epoch record, per-run values and per-step series; their
time is measured apart (``callback_time_s``) and never counted as training time.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
import traceback
from typing import Any

import numpy as np
import torch

from adapters import Adapter, AdapterError
from bench.callbacks import Callback, FitState, RunTimeout, callbacks_for
from bench.datasets import Dataset
from bench.init import apply_init
from bench.losses import task_loss
from bench.optimizers import build_optimizer, implementation
from bench.records import RunResult, RunSpec, TrainingSpec, higher_is_better, overfitting_gap

log = logging.getLogger(__name__)

EVAL_BATCH = 8192
#: on CPU an evaluation chunk holds at most this many input values (1 MiB of float32), so that
#: the models' per-row intermediates stay cache-sized: at [784, 64, 10] (eager, 2 threads) an
#: efficient-kan forward took 331 us a row in chunks of 8192 rows and 66-73 us in chunks of
#: 128-256, native's 70 us against 25-27 us; the MLP's was 2.2 us either way
EVAL_CPU_VALUES = 1 << 18


def eval_rows(row_values: int, device: torch.device | str) -> int:
    """Rows of an evaluation chunk of inputs of ``row_values`` values each:
    :data:`EVAL_BATCH`, and on CPU at most :data:`EVAL_CPU_VALUES` values (one row at least)."""
    if torch.device(device).type != "cpu":
        return EVAL_BATCH
    return max(1, min(EVAL_BATCH, EVAL_CPU_VALUES // max(1, row_values)))


#: training rows a grid refinement fits on (besides points spread over every new cell)
REFINE_SAMPLES = 4096


class Diverged(Exception):
    def __init__(self, step: int, epoch: int, what: str, how: str = "became non-finite"):
        super().__init__(f"{what} {how} at step {step} (epoch {epoch})")
        self.step, self.epoch = step, epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _scheduler(optimizer: torch.optim.Optimizer, t: TrainingSpec, metric: str):
    """The per-epoch learning-rate schedule (None: constant). After a grid refinement the
    same scheduler drives the new optimiser (its ``optimizer`` re-pointed), so it goes on."""
    s = t.schedule
    if s.kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_epochs, gamma=s.gamma)
    if s.kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=s.gamma)
    if s.kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs,
                                                          eta_min=s.min_lr)
    if s.kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if higher_is_better(metric) else "min", factor=s.factor,
            patience=s.patience)
    return None


def _loss(data: Dataset, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return task_loss(data.task, out, y)


def _split_sums(data: Dataset, out: torch.Tensor, y: torch.Tensor,
                std: torch.Tensor | None) -> torch.Tensor:
    """(summed loss, correct count or summed squared error) of one chunk, as one tensor: the
    caller reads them with one host sync."""
    loss = _loss(data, out, y).double() * len(y)
    if data.task == "classification":
        hits = (out.argmax(dim=1) == y).sum().double()
    else:
        hits = ((out - y) * std).pow(2).sum().double()
    return torch.stack([loss, hits])


def _scores(data: Dataset, sums: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean loss, accuracy or RMSE) of a split with targets ``y`` from its summed values."""
    loss_sum, hits = sums.tolist()
    n = len(y)
    if data.task == "classification":
        return loss_sum / n, hits / n
    return loss_sum / n, math.sqrt(hits / (n * y.shape[1]))


def _target_std(data: Dataset, x: torch.Tensor) -> torch.Tensor | None:
    if data.task != "regression":
        return None
    return torch.tensor(data.target_std, dtype=x.dtype, device=x.device)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    """``model`` in eval mode for the block, back in training mode after it, even on error."""
    model.eval()
    try:
        yield
    finally:
        model.train()


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Dataset, x: torch.Tensor, y: torch.Tensor
             ) -> tuple[float, float]:
    """(loss, metric) on one split: accuracy, or RMSE in the target's original units."""
    std = _target_std(data, x)
    sums = torch.zeros(2, dtype=torch.float64, device=x.device)
    rows = eval_rows(math.prod(x.shape[1:]), x.device)
    with _eval_mode(model):
        for i in range(0, len(x), rows):
            xb, yb = x[i:i + rows], y[i:i + rows]
            sums += _split_sums(data, model(xb), yb, std)
    return _scores(data, sums, y)


def joined_inputs(splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor | None:
    """Every split's inputs in one tensor when together they fit one evaluation chunk
    (:func:`eval_rows`), else None. Small tabular models pay mostly per call: one forward for
    the three splits instead of three costs a third of the calls, and each row's output is the
    same."""
    first = next(iter(splits.values()))[0]
    if sum(len(x) for x, _ in splits.values()) > eval_rows(math.prod(first.shape[1:]),
                                                             first.device):
        return None
    return torch.cat([x for x, _ in splits.values()])


@torch.no_grad()
def evaluate_splits(model: torch.nn.Module, data: Dataset,
                    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                    joined: torch.Tensor | None = None) -> dict[str, tuple[float, float]]:
    """(loss, metric) of every split, as :func:`evaluate`; ``joined`` (from
    :func:`joined_inputs`) evaluates them all in one forward."""
    if joined is None:
        return {name: evaluate(model, data, x, y) for name, (x, y) in splits.items()}
    with _eval_mode(model):
        out = model(joined)
    std = _target_std(data, joined)
    parts = torch.split(out, [len(x) for x, _ in splits.values()])
    sums = torch.stack([_split_sums(data, part, y, std)
                        for part, (_, y) in zip(parts, splits.values())]).cpu()
    return {name: _scores(data, s, y) for s, (name, (_, y)) in zip(sums, splits.items())}


def fit(spec: RunSpec, data: Dataset, adapter: Adapter,
        callbacks: list[Callback] | None = None) -> RunResult:
    """Train one model with the callbacks its specification asks for, plus ``callbacks``;
    never raises for a diverging or failing model (see ``status``)."""
    started = time.perf_counter()
    device = torch.device(spec.device)
    result = RunResult(status="ok", metric=data.metric, provenance=adapter.provenance(),  # library
                       data_info=dict(data.info), threads=torch.get_num_threads())
    callbacks = [*callbacks_for(spec), *(callbacks or [])]
    try:
        _fit(spec, data, adapter, device, callbacks, result)
    except Diverged as exc:
        result.status, result.error, result.diverged_step = "diverged", str(exc), exc.step
    except RunTimeout as exc:  # the epochs measured so far stay in the result
        result.status, result.error = "timeout", str(exc)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one failing model must not stop the suite
        log.debug("run %s failed", spec.title, exc_info=True)
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        result.status, result.error = "error", f"{type(exc).__name__}: {exc}\n{tail}"
    result.wall_time_s = time.perf_counter() - started
    if device.type == "cuda":
        result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    return result


def _fit(spec: RunSpec, data: Dataset, adapter: Adapter, device: torch.device,
         callbacks: list[Callback], result: RunResult) -> None:
    t = spec.training
    model = adapter.build(spec.arch, data.in_dim, data.out_dim, seed=spec.seed, device=device)
    apply_init(adapter, model, t.init, spec.seed)
    result.params = adapter.count_params(model)
    _record_flops(result, adapter, spec.arch, data)
    model.train()
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], t)
    result.record("optimizer_impl_used", implementation(optimizer))
    scheduler = _scheduler(optimizer, t, data.metric)
    penalty = _penalty(adapter, model, t)
    splits = {name: (x.to(device), y.to(device)) for name, (x, y) in data.splits().items()}
    x_train, y_train = splits["train"]
    joined = joined_inputs(splits)
    n = len(x_train)
    full_batch = t.optimizer == "lbfgs"
    batch_size = n if full_batch else t.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    state = FitState(spec, adapter, model, optimizer, data, result,
                     total_steps=t.epochs * steps_per_epoch, splits=splits)
    callback_time = 0.0
    # Batch order depends only on the run's seed, through a private generator.
    order_rng = torch.Generator().manual_seed(spec.seed)
    _sync(device)
    tick = time.perf_counter()
    if _warm_up(adapter, model, x_train[:batch_size], state.total_steps):
        _sync(device)
        result.warmup_time_s = time.perf_counter() - tick
    result.provenance = adapter.provenance(model)  # of this model: e.g. whether it compiled
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tick = time.perf_counter()
    for cb in callbacks:
        cb.on_fit_start(state)
    callback_time += time.perf_counter() - tick

    better = (lambda a, b: a > b) if higher_is_better(data.metric) else (lambda a, b: a < b)
    first_epoch_loss: float | None = None
    best_val: float | None = None
    best_test: float | None = None
    stale = 0
    train_time = eval_time = 0.0
    samples = 0
    refinements = dict(spec.arch.grid_schedule)
    grid = spec.arch.grid
    stage_start = grid_updates = 0
    for epoch in range(1, t.epochs + 1):
        state.epoch = epoch
        if epoch in refinements:  # the KAN paper's grid extension, then a fresh optimiser
            grid = refinements[epoch]
            _sync(device)
            tick = time.perf_counter()
            deviation = adapter.extend_grid(model, grid, x_train[:REFINE_SAMPLES])
            current_lr = optimizer.param_groups[0]["lr"]
            optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], t)
            for group in optimizer.param_groups:  # the schedule goes on where it was
                group["lr"], group["initial_lr"] = current_lr, t.lr
            if scheduler is not None:
                scheduler.optimizer = optimizer
            state.optimizer = optimizer
            result.params = adapter.count_params(model)
            _record_flops(result, adapter, spec.arch.model_copy(update={"grid": grid}), data)
            _sync(device)
            train_time += time.perf_counter() - tick
            tick = time.perf_counter()
            if _warm_up(adapter, model, x_train[:batch_size],  # kernels of the new grid size
                        state.total_steps - state.step):
                _sync(device)
                result.warmup_time_s = (result.warmup_time_s or 0.0) + time.perf_counter() - tick
            result.record(f"grid_refine_deviation_epoch{epoch}", deviation)
        if epoch in refinements or epoch == 1:
            stage_start = epoch
        if _grid_update_due(t, epoch - stage_start):  # pykan's fit: knots follow the data
            _sync(device)
            tick = time.perf_counter()
            if adapter.update_grid(model, x_train[:REFINE_SAMPLES]):
                grid_updates += 1
            _sync(device)
            train_time += time.perf_counter() - tick
        perm = torch.randperm(n, generator=order_rng).to(device)
        step_losses = torch.empty(steps_per_epoch, device=device)
        step_regs = torch.zeros(steps_per_epoch, device=device)
        step_callback_time = 0.0
        _sync(device)
        tick = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        for b, start in enumerate(range(0, n, batch_size)):
            idx = perm[start:start + batch_size]
            wanted = [cb for cb in callbacks if cb.wants_step(state.step + 1)]
            if wanted:
                _sync(device)
                hook_tick = time.perf_counter()
                for cb in wanted:
                    cb.on_step_start(state)
                _sync(device)
                step_callback_time += time.perf_counter() - hook_tick
            try:
                if full_batch:
                    loss, reg = _lbfgs_step(optimizer, model, data, x_train, y_train, penalty)
                else:
                    optimizer.zero_grad(set_to_none=True)
                    loss = _loss(data, model(x_train[idx]), y_train[idx])
                    reg = penalty()
                    (loss if reg is None else loss + reg).backward()
                    if t.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                    optimizer.step()
            except Exception as exc:
                # Some implementations fail outright on non-finite weights (e.g. a NaN used as
                # a grid index) instead of returning NaN: that is divergence, not a bug.
                if not _all_finite(model):
                    raise Diverged(state.step + 1, epoch, "model parameters") from exc
                raise
            step_losses[b] = loss.detach()
            if reg is not None:
                step_regs[b] = reg.detach()
            state.step += 1
            state.step_reg = None if reg is None else reg.detach()
            samples += len(idx)
            if wanted:
                _sync(device)
                hook_tick = time.perf_counter()
                for cb in wanted:
                    cb.on_step_end(state, loss)
                _sync(device)
                step_callback_time += time.perf_counter() - hook_tick
        _sync(device)
        epoch_time = time.perf_counter() - tick - step_callback_time
        train_time += epoch_time
        callback_time += step_callback_time
        # One host sync per epoch: find the first non-finite step after the fact.
        finite = torch.isfinite(step_losses)
        if not bool(finite.all()):
            first_bad = int((~finite).nonzero()[0])
            step = state.step - len(step_losses) + first_bad + 1
            result.epochs, result.steps = epoch, state.step
            raise Diverged(step, epoch, "training loss")
        epoch_loss = step_losses.mean().item()
        if first_epoch_loss is None:
            first_epoch_loss = epoch_loss
        elif t.divergence_bound is not None:
            bound = t.divergence_bound * first_epoch_loss
            above = step_losses > bound
            if bool(above.any()):
                step = state.step - len(step_losses) + int(above.nonzero()[0]) + 1
                result.epochs, result.steps = epoch, state.step
                raise Diverged(step, epoch, "training loss",
                               f"exceeded {t.divergence_bound:g}x the first epoch's mean "
                               f"({bound:.4g})")

        tick = time.perf_counter()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": epoch_loss,
                                  "epoch_time_s": epoch_time, "lr": lr}
        if refinements:  # the staircase: grid size and parameter count of every epoch
            record["grid"], record["params"] = grid, result.params
        if t.regularization is not None:  # the weighted term added to the loss, epoch mean
            record["reg"] = step_regs.mean().item()
        try:
            scores = evaluate_splits(model, data, splits, joined)
        except Exception as exc:
            if not _all_finite(model):
                result.epochs, result.steps = epoch, state.step
                raise Diverged(state.step, epoch, "model parameters") from exc
            raise
        for name, (loss_value, metric_value) in scores.items():
            if not (math.isfinite(loss_value) and math.isfinite(metric_value)):
                result.epochs, result.steps = epoch, state.step
                raise Diverged(state.step, epoch, f"{name} loss")
            record[f"{name}_eval_loss"] = loss_value
            record[f"{name}_metric"] = metric_value
        eval_time += time.perf_counter() - tick
        state.record = record
        tick = time.perf_counter()
        for cb in callbacks:
            cb.on_epoch_end(state)
        callback_time += time.perf_counter() - tick
        result.record("callback_time_s", callback_time)
        result.curves.append(record)
        result.epochs, result.steps = epoch, state.step

        if best_test is None or better(record["test_metric"], best_test):
            best_test = record["test_metric"]
        if best_val is None or better(record["val_metric"], best_val):
            best_val, stale = record["val_metric"], 0
            if t.select == "best_val":
                _select(result, record, data.metric)
        else:
            stale += 1
        if t.select == "last":
            _select(result, record, data.metric)
        if t.patience is not None and stale >= t.patience:
            break
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(record["val_metric"])
        elif scheduler is not None:
            scheduler.step()

    last = result.curves[-1]
    result.test_metric_last = last["test_metric"]
    # the gap where training ended, beside the headline gap at the selected epoch
    result.record("gap_last", overfitting_gap(data.metric, last["train_metric"],
                                              last["test_metric"]))
    result.test_metric_best_test = best_test
    if refinements:
        _record_grid_stages(result, data.metric)
    if t.grid_update is not None:
        result.record("grid_updates", grid_updates)
    result.train_time_s = train_time
    result.eval_time_s = eval_time
    result.throughput = samples / train_time if train_time > 0 else None


def _warm_up(adapter: Adapter, model: torch.nn.Module, x: torch.Tensor, steps: int) -> bool:
    """The adapter's warm-up, told the planned steps where it takes them (a plugin written
    before ``steps`` existed is called without)."""
    if "steps" in inspect.signature(adapter.warm_up).parameters:
        return adapter.warm_up(model, x, steps=steps)
    return adapter.warm_up(model, x)


def _record_flops(result: RunResult, adapter: Adapter, arch, data: Dataset) -> None:
    """Per-sample FLOPs of the model as it trains (after a grid refinement: of the new G, so
    the run keeps its final model's, like its parameter count): ``flops_nominal`` (the
    fairness study's convention; absent for a family without one), ``flops_impl`` (forward as
    executed) and ``train_flops`` (forward + backward); see adapters/flops.py."""
    try:
        flops = adapter.flops(arch, data.in_dim, data.out_dim)
    except AdapterError:  # a plugin that does not model its FLOPs
        return
    if flops.nominal is not None:
        result.record("flops_nominal", flops.nominal)
    result.record("flops_impl", flops.impl)
    result.record("train_flops", flops.train)


def _grid_update_due(t: TrainingSpec, epoch_in_stage: int) -> bool:
    """Whether grids are refitted at this epoch of the grid stage (0: its first epoch)."""
    g = t.grid_update
    return g is not None and epoch_in_stage < g.until and epoch_in_stage % g.every == 0


def _record_grid_stages(result: RunResult, metric: str) -> None:
    """The grid-extension figures of a run with a grid schedule: the test metric at the end of
    each grid size's stage (``test_metric_grid<G>``, the last epoch trained with it: no
    selection, as the KAN paper reports them), and for RMSE the least-squares slope of
    log RMSE against log G over the stages (``grid_rmse_slope``; the KAN paper's scaling law
    predicts -(k + 1) for a smooth target)."""
    ends: dict[int, float] = {}
    for record in result.curves:  # later epochs of a stage overwrite earlier ones
        ends[record["grid"]] = record["test_metric"]
    for grid, value in ends.items():
        result.record(f"test_metric_grid{grid}", value)
    if metric == "rmse" and len(ends) >= 2 and all(v > 0 for v in ends.values()):
        slope, _ = np.polyfit(np.log(list(ends)), np.log(list(ends.values())), 1)
        result.record("grid_rmse_slope", float(slope))


def _penalty(adapter: Adapter, model: torch.nn.Module, t: TrainingSpec):
    """A function giving the weighted regularisation term of the last training forward, or
    None (no regulariser asked for)."""
    spec = t.regularization
    if spec is None:
        return lambda: None
    adapter.enable_regularization(model)
    # the suite checked that every non-zero term is one the adapter weighs
    weights = {name: w for name, w in spec.terms().items() if name in adapter.regularization_terms}

    def term() -> torch.Tensor:
        reg = adapter.regularization(model, **weights)
        if reg is None:
            raise ValueError(f"adapter '{adapter.name}' has no regulariser of its own")
        return spec.weight * reg

    return term


def _lbfgs_step(optimizer: torch.optim.Optimizer, model: torch.nn.Module, data: Dataset,
                x: torch.Tensor, y: torch.Tensor, penalty
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One full-batch LBFGS step; returns the task loss and the regularisation term before
    it (the closure's first evaluation)."""
    first: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = _loss(data, model(x), y)
        reg = penalty()
        total = loss if reg is None else loss + reg
        total.backward()
        if not first:
            first.append((loss.detach(), None if reg is None else reg.detach()))
        return total

    optimizer.step(closure)
    return first[0]


def _all_finite(model: torch.nn.Module) -> bool:
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _select(result: RunResult, record: dict[str, Any], metric: str) -> None:
    result.best_epoch = record["epoch"]
    result.train_metric = record["train_metric"]
    result.val_metric = record["val_metric"]
    result.test_metric = record["test_metric"]
    result.gap = overfitting_gap(metric, record["train_metric"], record["test_metric"])
