"""Training loop: selection on validation, divergence, metrics, callbacks."""

from __future__ import annotations

import math

import pytest
import torch

import adapters
from bench import suite as suite_mod
from bench.plan import build_plan
from bench.callbacks import Callback
from bench.train import fit, overfitting_gap


def plan_for(write_suite, text):
    path = write_suite(text)
    return build_plan(suite_mod.load(path), path)


def test_best_epoch_is_chosen_on_validation(write_suite):
    plan = plan_for(write_suite, """
        seeds: [0]
        training: {epochs: 12, lr: 0.05, batch_size: 32}
        datasets: [wine]
        models: [{name: mlp, adapter: mlp, hidden: [8]}]
    """)
    spec = plan.runs[0]
    r = fit(spec, plan.dataset("wine"), adapters.get("mlp"))
    assert r.status == "ok", r.error
    vals = [c["val_metric"] for c in r.curves]
    first_best = vals.index(max(vals)) + 1
    assert r.best_epoch == first_best
    chosen = r.curves[first_best - 1]
    assert r.test_metric == chosen["test_metric"]
    assert r.train_metric == chosen["train_metric"]
    assert r.gap == pytest.approx(chosen["train_metric"] - chosen["test_metric"])
    assert r.test_metric_best_test == max(c["test_metric"] for c in r.curves)
    assert r.test_metric_last == r.curves[-1]["test_metric"]
    last = r.curves[-1]
    assert r.values["gap_last"] == pytest.approx(last["train_metric"] - last["test_metric"])
    assert r.epochs == 12 and len(r.curves) == 12
    assert r.train_time_s > 0 and r.throughput > 0 and r.threads == torch.get_num_threads()
    assert r.params == 13 * 8 + 8 + 8 * 3 + 3
    assert "probe_coef_abs_mean" in r.curves[0]


def test_rmse_in_original_units_and_gap_sign(write_suite):
    plan = plan_for(write_suite, """
        seeds: [0]
        training: {epochs: 3, select: last}
        datasets: [diabetes]
        models: [{name: mlp, adapter: mlp, hidden: [4]}]
    """)
    data = plan.dataset("diabetes")
    r = fit(plan.runs[0], data, adapters.get("mlp"))
    assert r.status == "ok" and r.best_epoch == 3
    # RMSE is in the target's units (disease progression, std ~ 77), not standardised units.
    model = adapters.get("mlp").build(plan.runs[0].arch, data.in_dim, data.out_dim, seed=0)
    from bench.train import evaluate

    _, rmse = evaluate(model, data, data.x_test, data.y_test)
    std = data.target_std[0]
    with torch.no_grad():
        manual = math.sqrt(((model(data.x_test) - data.y_test) * std).pow(2).mean().item())
    assert rmse == pytest.approx(manual, rel=1e-5)
    assert rmse > 10
    assert r.gap == pytest.approx(r.test_metric - r.train_metric)
    assert overfitting_gap("rmse", 1.0, 2.0) == 1.0
    assert overfitting_gap("accuracy", 0.9, 0.8) == pytest.approx(0.1)


def test_early_stopping_uses_patience(write_suite):
    plan = plan_for(write_suite, """
        seeds: [0]
        training: {epochs: 200, lr: 0.05, patience: 3}
        datasets: [iris]
        models: [{name: mlp, adapter: mlp, hidden: [8]}]
    """)
    r = fit(plan.runs[0], plan.dataset("iris"), adapters.get("mlp"))
    assert r.status == "ok"
    assert r.epochs < 200
    assert r.epochs == r.best_epoch + 3


@pytest.mark.parametrize("model", ["mlp", "native"])
def test_nan_divergence_is_recorded_with_its_step(write_suite, model):
    # SGD with an absurd learning rate on a real model: the loss overflows within a few steps.
    plan = plan_for(write_suite, f"""
        seeds: [0]
        training: {{epochs: 5, optimizer: sgd, lr: 1.0e+8, batch_size: 32}}
        datasets: [diabetes]
        models: [{{name: m, adapter: {model}, hidden: [16]}}]
    """)
    r = fit(plan.runs[0], plan.dataset("diabetes"), adapters.get(model))
    assert r.status == "diverged", r.error
    assert r.diverged_step is not None and 1 <= r.diverged_step <= r.steps
    assert "non-finite" in r.error
    assert r.test_metric is None or math.isfinite(r.test_metric)


def test_callbacks_see_every_step_and_epoch(write_suite):
    plan = plan_for(write_suite, """
        seeds: [0]
        training: {epochs: 2, batch_size: 50}
        datasets: [iris]
        models: [{name: mlp, adapter: mlp, hidden: [4]}]
    """)

    class Counter(Callback):
        def __init__(self):
            self.steps, self.epochs, self.started = 0, 0, False

        def on_fit_start(self, state):
            self.started = True

        def on_step_end(self, state, loss):
            self.steps += 1

        def on_epoch_end(self, state):
            self.epochs += 1
            state.record["custom"] = state.step

    c = Counter()
    r = fit(plan.runs[0], plan.dataset("iris"), adapters.get("mlp"), callbacks=[c])
    assert c.started and c.epochs == 2 and c.steps == r.steps == 2 * math.ceil(96 / 50)
    assert r.curves[-1]["custom"] == r.steps


def test_compile_warm_up_leaves_the_model_as_it_found_it():
    from adapters.base import compile_warm_up

    model = adapters.get("native").build(adapters.ModelSpec(hidden=[4]), 6, 3, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compile_warm_up(model, torch.randn(9, 6))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_compiled_native_is_warmed_up_outside_the_training_clock(write_suite, compile_on, monkeypatch):
    """With compiling on, the run records the compilation on its own and says the compiled
    kernel ran; the trained model equals the eager kernel's up to float rounding."""
    text = """
        seeds: [0]
        training: {epochs: 3, batch_size: 16}
        datasets: [wine]
        models: [{name: kan, adapter: native, hidden: [4], options: {contraction: fused}}]
    """
    plan = plan_for(write_suite, text)  # "fused": compiled although these layers are narrow
    compiled = fit(plan.runs[0], plan.dataset("wine"), adapters.get("native"))
    if compiled.provenance.get("compiled_kernel") != "true":
        pytest.skip("torch.compile does not work here")
    assert compiled.status == "ok", compiled.error
    assert compiled.warmup_time_s is not None and compiled.warmup_time_s > 0
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "0")
    eager = fit(plan.runs[0], plan.dataset("wine"), adapters.get("native"))
    assert eager.warmup_time_s is None and eager.provenance["compiled_kernel"] == "false"
    for a, b in zip(compiled.curves, eager.curves):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


@pytest.mark.parametrize("dataset", ["wine", "diabetes"])
@pytest.mark.parametrize("adapter", ["native", "mlp"])
def test_one_forward_for_all_splits_scores_as_split_by_split(write_suite, monkeypatch,
                                                             dataset, adapter):
    """Small splits are evaluated in one forward; each split's loss and metric are those of
    evaluating it alone, and the chunked path (splits over one evaluation batch) agrees."""
    import bench.train as train_mod

    arch = "hidden: [6], grid: 4" if adapter == "native" else "hidden: [6]"
    plan = plan_for(write_suite, f"""
        seeds: [0]
        training: {{epochs: 1}}
        datasets: [{dataset}]
        models: [{{name: m, adapter: {adapter}, {arch}}}]
    """)
    data = plan.dataset(dataset)
    model = adapters.get(adapter).build(plan.runs[0].arch, data.in_dim, data.out_dim, seed=0)
    splits = data.splits()
    joined = train_mod.joined_inputs(splits)
    assert joined is not None and len(joined) == sum(len(x) for x, _ in splits.values())
    together = train_mod.evaluate_splits(model, data, splits, joined)
    alone = {name: train_mod.evaluate(model, data, x, y) for name, (x, y) in splits.items()}
    assert list(together) == ["train", "val", "test"] == list(alone)
    for name in alone:
        assert together[name] == pytest.approx(alone[name], rel=1e-5)
    with torch.no_grad():  # the metric by hand, on the test split
        out = model(data.x_test)
    if data.task == "classification":
        assert together["test"][1] == pytest.approx(
            (out.argmax(1) == data.y_test).float().mean().item())
    else:
        std = data.target_std[0]
        assert together["test"][1] == pytest.approx(
            math.sqrt(((out - data.y_test) * std).pow(2).mean().item()), rel=1e-5)
    assert model.training  # evaluation leaves the model training
    # splits over one evaluation batch: evaluated one by one, in chunks, to the same scores
    monkeypatch.setattr(train_mod, "EVAL_BATCH", 40)
    assert train_mod.joined_inputs(splits) is None
    chunked = train_mod.evaluate_splits(model, data, splits, None)
    for name in alone:
        assert chunked[name] == pytest.approx(alone[name], rel=1e-5)


def test_cpu_evaluation_chunks_hold_a_bounded_number_of_input_values():
    """Wide inputs are evaluated in fewer rows per chunk on CPU (cache-sized intermediates);
    narrow ones, and every GPU chunk, take EVAL_BATCH rows."""
    import bench.train as train_mod
    from bench.train import EVAL_BATCH, EVAL_CPU_VALUES, eval_rows

    assert eval_rows(784, "cpu") == EVAL_CPU_VALUES // 784 < EVAL_BATCH
    assert eval_rows(10, "cpu") == EVAL_BATCH
    assert eval_rows(10**7, "cpu") == 1
    assert eval_rows(784, "cuda") == EVAL_BATCH
    # evaluate() calls the model on chunks of that many rows
    calls = []
    model = torch.nn.Linear(784, 3)
    model.register_forward_hook(lambda m, inputs, out: calls.append(len(inputs[0])))

    class Data:
        task, metric, target_std = "classification", "accuracy", None

    x, y = torch.rand(1000, 784), torch.randint(0, 3, (1000,))
    train_mod.evaluate(model, Data(), x, y)
    rows = EVAL_CPU_VALUES // 784
    assert calls == [rows] * (1000 // rows) + [1000 % rows]
