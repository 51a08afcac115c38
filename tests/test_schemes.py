"""Training schemes: grids of schemes, optimisers (LBFGS included), learning-rate schedules and
the divergence bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import linregress

import adapters
from bench import suite as suite_mod
from bench.cli import main
from bench.plan import build_plan
from bench.records import TrainingSpec
from bench.records.spec import GridUpdateSpec
from bench.runner import execute, run_one
from bench.store import Store

GRID = """
name: grid
seeds: [0]
training: {epochs: 1, batch_size: 32}
schemes:
  grid: {optimizer: [adam, sgd, rmsprop], lr: [1.0e-2, 1.0e-3, 1.0e-4]}
  named: [{name: slow, lr: 0.0001, epochs: 2}]
datasets: [iris]
models:
  - {name: mlp, adapter: mlp, hidden: [4]}
"""


def _plan(write_suite, text):
    path = write_suite(text)
    return build_plan(suite_mod.load(path), path)


def test_a_grid_expands_into_named_readable_schemes_with_their_fields_as_columns(
        write_suite, tmp_path):
    plan = _plan(write_suite, GRID)
    names = [s.scheme for s in plan.runs]
    assert len(names) == 10 == len(set(names))
    assert names[:4] == ["slow", "optimizer=adam,lr=0.01", "optimizer=adam,lr=0.001",
                         "optimizer=adam,lr=0.0001"]
    by_name = {s.scheme: s.training for s in plan.runs}
    assert by_name["optimizer=rmsprop,lr=0.001"].optimizer == "rmsprop"
    assert by_name["optimizer=rmsprop,lr=0.001"].lr == 0.001
    assert by_name["slow"].epochs == 2 and by_name["optimizer=sgd,lr=0.01"].epochs == 1
    with Store(tmp_path / "s.sqlite") as store:
        execute(plan, store)
        exported = store.export()
    assert {"optimizer", "lr", "init", "schedule_kind", "training_epochs"} <= set(exported.columns)
    row = exported[exported.scheme == "optimizer=sgd,lr=0.0001"].iloc[0]
    assert (row.optimizer, row.lr, row.training_epochs, row.epochs) == ("sgd", 0.0001, 1, 1)


@pytest.mark.parametrize("bad, key, message", [
    ("lr: [1.0e-2, -1]", "schemes.grid.lr", "greater than 0"),
    ("lrate: [1.0e-2]", "schemes.grid", "unknown training field 'lrate'"),
    ("lr: []", "schemes.grid", "lists no values"),
])
def test_a_bad_grid_is_a_suite_error_naming_the_key(write_suite, capsys, bad, key, message):
    path = write_suite(GRID.replace("lr: [1.0e-2, 1.0e-3, 1.0e-4]", bad))
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {key}" in err and message in err, err


def test_new_training_fields_enter_the_key_only_when_set():
    plain = TrainingSpec()
    assert set(plain.identity()) == set(TrainingSpec.model_fields) - {
        "init", "schedule", "divergence_bound", "regularization", "grid_update", "optimizer_impl"}
    assert plain.identity() != TrainingSpec(init="xavier_normal").identity()
    assert plain.identity() != TrainingSpec(schedule="cosine").identity()
    assert plain.identity() != TrainingSpec(optimizer_impl="for_loop").identity()
    # regularisation terms added later (pykan's) enter it only when set
    reg = TrainingSpec(regularization={"weight": 0.1}).identity()["regularization"]
    assert reg == {"weight": 0.1, "l1": 1.0, "entropy": 1.0}
    assert TrainingSpec(regularization={"weight": 0.1, "coef": 0.5}).identity()[
        "regularization"] == {**reg, "coef": 0.5}


OPTIMISER_SUITE = """
seeds: [0]
training: {{epochs: {epochs}, batch_size: 25, optimizer: {optimizer}, lr: {lr}, momentum: 0.5}}
datasets: [{{name: toy_sin_exp, options: {{n_train: 100, n_test: 50}}}}]
models: [{{name: m, adapter: {adapter}, hidden: [3]}}]
"""
LEARNING_RATES = {"adam": 0.01, "adamw": 0.01, "sgd": 0.1, "rmsprop": 0.003, "lbfgs": 1.0}


@pytest.mark.parametrize("optimizer", sorted(LEARNING_RATES))
@pytest.mark.parametrize("adapter", ["mlp", "native", "efficient_kan", "pykan", "inkan"])
def test_every_optimiser_reduces_the_loss_for_every_adapter(write_suite, optimizer, adapter):
    if adapters.get(adapter).unavailable_reason():
        pytest.skip(adapters.get(adapter).unavailable_reason())
    epochs = 4 if optimizer == "lbfgs" else 8
    plan = _plan(write_suite, OPTIMISER_SUITE.format(
        epochs=epochs, optimizer=optimizer, lr=LEARNING_RATES[optimizer], adapter=adapter))
    result = run_one(plan.runs[0])
    assert result.status == "ok", result.error
    losses = [r["train_eval_loss"] for r in result.curves]
    assert losses[-1] < 0.9 * losses[0], losses
    steps_per_epoch = 1 if optimizer == "lbfgs" else 4  # 64 training rows, batches of 25
    assert result.steps == epochs * steps_per_epoch


SCHEDULE_SUITE = """
seeds: [0]
training: {{epochs: 6, batch_size: 32, lr: 0.1, optimizer: sgd, schedule: {schedule}}}
datasets: [iris]
models: [{{name: m, adapter: mlp, hidden: [4]}}]
"""


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [0.1] * 6),
    ("{kind: step, step_epochs: 2, gamma: 0.5}", [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]),
    ("{kind: exponential, gamma: 0.5}", [0.1 * 0.5 ** e for e in range(6)]),
    ("{kind: cosine, min_lr: 0.01}",
     [0.01 + 0.09 * (1 + math.cos(math.pi * e / 6)) / 2 for e in range(6)]),
])
def test_each_schedule_sets_the_documented_learning_rates(write_suite, schedule, expected):
    result = run_one(_plan(write_suite, SCHEDULE_SUITE.format(schedule=schedule)).runs[0])
    assert [r["lr"] for r in result.curves] == pytest.approx(expected)


def test_plateau_lowers_the_rate_after_epochs_without_a_better_validation_metric(write_suite):
    text = SCHEDULE_SUITE.format(schedule="{kind: plateau, patience: 1, factor: 0.5}")
    result = run_one(_plan(write_suite, text.replace("epochs: 6", "epochs: 12")).runs[0])
    lrs = [r["lr"] for r in result.curves]
    best, stale, expected = -math.inf, 0, [0.1]
    for record in result.curves[:-1]:  # torch's rule: after `patience` epochs without a gain
        if record["val_metric"] > best:
            best, stale = record["val_metric"], 0
        else:
            stale += 1
        if stale > 1:
            expected.append(expected[-1] * 0.5)
            stale = 0
        else:
            expected.append(expected[-1])
    assert lrs == pytest.approx(expected)


def test_a_loss_above_the_divergence_bound_ends_the_run_and_the_suite_goes_on(
        write_suite, tmp_path):
    text = """
    seeds: [0]
    training: {epochs: 6, batch_size: 16, optimizer: sgd, momentum: 0.0, lr: 0.01}
    schemes:
      - {name: calm}
      - {name: wild, lr: 0.5, divergence_bound: 2.0}
    datasets: [diabetes]
    models: [{name: m, adapter: mlp, hidden: [16]}]
    """
    plan = _plan(write_suite, text)
    with Store(tmp_path / "s.sqlite") as store:
        summary = execute(plan, store)
        runs = store.runs().set_index("scheme")
    assert summary.statuses == {"ok": 1, "diverged": 1}
    assert runs.loc["calm", "status"] == "ok"
    wild = runs.loc["wild"]
    assert wild.status == "diverged" and "exceeded 2x the first epoch's mean" in wild.error
    assert wild.diverged_step > 18  # past the first epoch (18 steps), which sets the bound


def test_an_initialisation_an_adapter_cannot_apply_is_a_suite_error(write_suite, capsys):
    from adapters.base import Adapter
    from adapters.mlp import MLPAdapter

    class NoInit(MLPAdapter):  # an implementation that declares no initialisation targets
        name = "test_no_init"
        init_targets = Adapter.init_targets

    adapters.register(NoInit, replace=True)
    path = write_suite(SCHEDULE_SUITE.format(schedule="constant")
                       .replace("adapter: mlp", "adapter: test_no_init")
                       .replace("optimizer: sgd", "optimizer: sgd, init: xavier_normal"))
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: models[0]: scheme 'default': " in err and "test_no_init" in err, err


REGULARIZED = """
seeds: [0]
training: {epochs: 3, batch_size: 32, lr: 0.01, regularization: {weight: 0.01, l1: 1.0, entropy: 0.5}}
datasets: [iris]
models:
  - {name: native, adapter: native, hidden: [3]}
  - {name: efficient_kan, adapter: efficient_kan, hidden: [3]}
"""


def test_regularisation_adds_the_adapters_term_and_records_it(write_suite):
    plan = _plan(write_suite, REGULARIZED)
    native, efficient = (run_one(spec) for spec in plan.runs)
    assert native.status == efficient.status == "ok"
    regs = [r["reg"] for r in native.curves]
    assert all(r > 0 for r in regs)
    # the same function and parameterisation: the same regularised training, term by term
    assert regs == pytest.approx([r["reg"] for r in efficient.curves], rel=1e-4)
    plain = run_one(_plan(write_suite, REGULARIZED.replace(
        ", regularization: {weight: 0.01, l1: 1.0, entropy: 0.5}", "")).runs[0])
    assert "reg" not in plain.curves[0]
    assert [r["train_loss"] for r in plain.curves] != [r["train_loss"] for r in native.curves]
    assert plan.runs[0].key != _plan(write_suite, REGULARIZED.replace("0.01, l1", "0.02, l1")
                                     ).runs[0].key


def test_regularisation_on_an_adapter_without_a_regulariser_is_a_suite_error(write_suite, capsys):
    path = write_suite(REGULARIZED.replace("adapter: efficient_kan, hidden: [3]",
                                           "adapter: mlp, hidden: [3]"))
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    assert (f"{path}: models[1]: scheme 'default' asks for regularization (entropy, l1), but "
            f"adapter 'mlp' has no regulariser of its own") in err


def test_a_regularisation_term_the_adapter_lacks_is_a_suite_error(write_suite, capsys):
    path = write_suite(REGULARIZED.replace("entropy: 0.5}", "entropy: 0.5, coef: 0.1}"))
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    assert (f"{path}: models[0]: scheme 'default' asks for regularization (coef, entropy, l1), "
            f"but adapter 'native' weighs only entropy, l1") in err, err


def test_pykan_trains_with_its_own_regulariser(write_suite):
    text = REGULARIZED.replace("entropy: 0.5}", "entropy: 0.5, coef: 0.1, coefdiff: 0.1}")
    text = text.split("models:")[0] + "models:\n  - {name: pykan, adapter: pykan, hidden: [3]}\n"
    spec = _plan(write_suite, text).runs[0]
    assert spec.identity()["training"]["regularization"]["coefdiff"] == 0.1
    result = run_one(spec)
    assert result.status == "ok", result.error
    assert all(r["reg"] > 0 for r in result.curves)
    plain = run_one(spec.model_copy(update={"training": spec.training.model_copy(
        update={"regularization": None})}))
    assert [r["train_loss"] for r in plain.curves] != [r["train_loss"] for r in result.curves]


def test_lbfgs_minimises_the_regularised_loss(write_suite):
    text = REGULARIZED.replace("lr: 0.01,", "lr: 1.0, optimizer: lbfgs,")
    result = run_one(_plan(write_suite, text).runs[0])
    assert result.status == "ok", result.error
    totals = [r["train_loss"] + r["reg"] for r in result.curves]
    assert totals[-1] < totals[0] and result.steps == 3


GRID_HEADER = """
seeds: [0]
training: {epochs: 9, batch_size: 32, lr: 0.01}
datasets: [{name: toy_sin_exp, options: {n_train: 300, n_test: 100}}]
models:
"""
# the grid range covers the standardised inputs, where a refinement preserves the function
GRID_SCHEDULE = GRID_HEADER + """  - {name: kan, adapter: native, hidden: [3], grid: 5, grid_range: [-6, 6],
     grid_schedule: [[4, 10], [7, 20]]}
"""


def test_a_grid_schedule_refines_preserving_the_function_and_training_goes_on(write_suite):
    spec = _plan(write_suite, GRID_SCHEDULE).runs[0]
    result = run_one(spec)
    assert result.status == "ok", result.error
    assert [r["grid"] for r in result.curves] == [5] * 3 + [10] * 3 + [20] * 3
    native = adapters.get("native")
    counts = {g: native.param_count(spec.arch.model_copy(update={"grid": g}), 2, 1)
              for g in (5, 10, 20)}
    assert [r["params"] for r in result.curves] == [counts[5]] * 3 + [counts[10]] * 3 + \
        [counts[20]] * 3
    assert result.params == counts[20]
    # G doubles: the old spline lies in the new space, so the refit is exact up to rounding
    assert result.values["grid_refine_deviation_epoch4"] < 1e-4
    assert result.values["grid_refine_deviation_epoch7"] < 1e-4
    losses = [r["train_eval_loss"] for r in result.curves]
    assert losses[-1] < losses[3] and losses[3] < losses[0]
    assert "G=5->10->20" in spec.arch.describe("kan")
    # the test RMSE at the end of each grid size's stage, and the slope of log RMSE vs log G
    ends = {g: result.curves[e - 1]["test_metric"] for g, e in ((5, 3), (10, 6), (20, 9))}
    assert {g: result.values[f"test_metric_grid{g}"] for g in ends} == ends
    expected = linregress(np.log([5, 10, 20]), np.log(list(ends.values()))).slope
    assert result.values["grid_rmse_slope"] == pytest.approx(expected)


def test_pykan_follows_a_grid_schedule_with_its_own_refinement(write_suite):
    text = GRID_SCHEDULE.replace("adapter: native", "adapter: pykan")
    spec = _plan(write_suite, text).runs[0]
    result = run_one(spec)
    assert result.status == "ok", result.error
    assert [r["grid"] for r in result.curves] == [5] * 3 + [10] * 3 + [20] * 3
    pykan = adapters.get("pykan")
    assert result.params == pykan.param_count(spec.arch.model_copy(update={"grid": 20}), 2, 1)
    assert result.values["grid_refine_deviation_epoch4"] < 1e-3
    losses = [r["train_eval_loss"] for r in result.curves]
    assert losses[-1] < losses[0]


def test_grid_updates_follow_each_grid_stage_and_leave_an_mlp_alone(write_suite):
    text = GRID_SCHEDULE.replace("lr: 0.01}", "lr: 0.01, grid_update: {every: 2, until: 4}}") + \
        "  - {name: mlp, adapter: mlp, hidden: [8]}\n"
    kan, mlp = _plan(write_suite, text).runs
    assert kan.identity()["training"]["grid_update"] == {"every": 2, "until": 4}
    plain_training = kan.training.model_copy(update={"grid_update": None})
    assert "grid_update" not in plain_training.identity()
    updated = run_one(kan)
    assert updated.status == "ok", updated.error
    # stages start at epochs 1 (G=5), 4 (G=10) and 7 (G=20): every 2nd epoch of each, 1 and 3,
    # 4 and 6, 7 and 9; with until: 1 only each stage's first epoch
    assert updated.values["grid_updates"] == 6
    first_only = kan.training.model_copy(update={"grid_update": GridUpdateSpec(every=1, until=1)})
    assert run_one(kan.model_copy(update={"training": first_only})).values["grid_updates"] == 3
    fixed = run_one(kan.model_copy(update={"training": plain_training}))
    assert [r["train_loss"] for r in fixed.curves] != [r["train_loss"] for r in updated.curves]
    # an MLP has no grid: the same training with or without grid updates
    mlp_updated = run_one(mlp)
    mlp_fixed = run_one(mlp.model_copy(update={"training": plain_training}))
    assert mlp_updated.values["grid_updates"] == 0
    assert [r["train_loss"] for r in mlp_updated.curves] == [r["train_loss"] for r in mlp_fixed.curves]


def test_a_grid_schedule_enters_the_key_only_when_set(write_suite):
    refined = _plan(write_suite, GRID_SCHEDULE).runs[0]
    plain = refined.model_copy(update={"arch": refined.arch.model_copy(
        update={"grid_schedule": ()})})
    assert "grid_schedule" not in plain.identity()["arch"]
    assert refined.identity()["arch"]["grid_schedule"] == [[4, 10], [7, 20]]
    assert plain.key != refined.key and plain.pair_key == refined.pair_key


@pytest.mark.parametrize("model, key, message", [
    ("{name: m, adapter: mlp, hidden: [3], grid_schedule: [[4, 10]]}", "models[0].grid_schedule",
     "adapter 'mlp' does not use 'grid_schedule'"),
    ("{name: m, adapter: efficient_kan, hidden: [3], grid_schedule: [[4, 10]]}",
     "models[0].grid_schedule", "adapter 'efficient_kan' does not use 'grid_schedule'"),
    ("{name: m, adapter: native, hidden: [3], grid: 5, grid_schedule: [[4, 10], [3, 20]]}",
     "models[0]", "grid_schedule must list [epoch, G] pairs"),
    ("{name: m, adapter: native, hidden: [3], grid: 5, grid_schedule: [[4, 5]]}",
     "models[0]", "G above the model's grid (5)"),
])
def test_a_grid_schedule_an_adapter_cannot_follow_is_a_suite_error(write_suite, capsys, model,
                                                                    key, message):
    path = write_suite(GRID_HEADER + f"  - {model}\n")
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {key}" in err and message in err, err
