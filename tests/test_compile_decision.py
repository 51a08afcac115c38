"""native compiles its kernels only where that pays over the run's planned steps."""

from __future__ import annotations

import pytest
import torch

import adapters
from adapters import ModelSpec
from adapters.native import COMPILE_SECONDS_PER_CONFIG, compile_pays
from bench import suite as suite_mod
from bench.plan import build_plan
from bench.runner import execute
from bench.store import Store


def test_the_decision_weighs_the_largest_saving_against_the_compile_cost():
    # 800 steps of 2 ms eager save at most 0.8 s: less than compiling 2 configurations
    pays, why = compile_pays(800, 0.002, 2)
    assert not pays
    assert why == ("eager: at most 0.8 s saved over 800 steps of 2 ms eager, less than 24 s to "
                   "compile 2 layer configurations")
    # 5000 steps of 17 ms save at most 42.5 s: more than compiling 2
    pays, why = compile_pays(5000, 0.017, 2)
    assert pays and why.startswith("compiled: at most 42.5 s saved over 5000 steps")
    # the boundary: a saving equal to the cost does not pay
    steps = int(COMPILE_SECONDS_PER_CONFIG / (0.5 * 0.5))  # steps of 0.5 s save 0.25 s each
    assert not compile_pays(steps, 0.5, 1)[0] and compile_pays(steps + 1, 0.5, 1)[0]


def test_configurations_compiled_already_cost_nothing():
    # nothing left to compile: any saving pays
    pays, why = compile_pays(800, 0.002, 0, 2)
    assert pays
    assert why == ("compiled: 2 layer configurations compiled already in this process; at most "
                   "0.8 s saved over 800 steps of 2 ms eager")
    # only the configurations still to compile are weighed
    pays, why = compile_pays(800, 0.002, 1, 1)
    assert not pays
    assert why == ("eager: at most 0.8 s saved over 800 steps of 2 ms eager, less than 12 s to "
                   "compile 1 layer configuration (1 more compiled already in this process)")
    assert compile_pays(5000, 0.017, 1, 1)[0]


def _compiling_model():
    a = adapters.get("native")
    model = a.build(ModelSpec(hidden=(3,), grid=5, k=3), 2, 1, seed=0)
    if not model.layers[0].compiles():
        pytest.skip("torch.compile unavailable here (or KANBENCH_NATIVE_COMPILE=0)")
    return a, model


def test_a_short_run_stays_eager_and_says_why(compile_on, monkeypatch):
    from adapters.native import fused

    # no kernels compiled by earlier tests of this process: those would cost nothing to use
    monkeypatch.setattr(fused, "_cache", {})
    a, model = _compiling_model()
    x = torch.rand(16, 2) * 2 - 1
    before = [p.detach().clone() for p in model.parameters()]
    assert a.warm_up(model, x, steps=10) is True
    assert not any(layer.uses_compiled_kernels() for layer in model.layers)
    prov = a.provenance(model)
    assert prov["compiled_kernel"] == "false"
    assert prov["compile_decision"].startswith("eager: at most ") and "10 steps" in prov["compile_decision"]
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_a_long_run_compiles(compile_on):
    a, model = _compiling_model()
    x = torch.rand(16, 2) * 2 - 1
    assert a.warm_up(model, x, steps=10**9) is True
    assert a.provenance(model)["compile_decision"].startswith("compiled: ")
    assert a.provenance(model)["compiled_kernel"] == (
        "true" if model.layers[0].uses_compiled_kernels() else "false")


def test_kernels_an_earlier_run_warmed_up_make_a_short_run_compile(compile_on, monkeypatch):
    """Another seed of a model whose compiled kernels are warm in this process compiles even
    for a few steps; the bookkeeping only (compilation itself: the slow test below)."""
    import adapters.native as native
    from adapters.native import fused

    monkeypatch.setattr(fused, "_cache", {})  # this test's kernels only
    warmed = []
    monkeypatch.setattr(native, "compile_warm_up", lambda model, x: warmed.append(model))
    a, first = _compiling_model()
    assert [warm for _, warm in first.compiled_warm()] == [False, False]
    assert fused._cache == {}  # asking built nothing
    x = torch.rand(16, 2) * 2 - 1
    a.warm_up(first, x, steps=10)
    assert a.provenance(first)["compile_decision"].startswith("eager: ")
    assert not warmed and first.compiled_warm() == []  # decided eager: nothing compiles
    second = a.build(ModelSpec(hidden=(3,), grid=5, k=3), 2, 1, seed=1)
    assert [warm for _, warm in second.compiled_warm()] == [False, False]
    # as after a real warm-up in float64 (NativeKAN.mark_compiled_warm): not this model's
    second._find_stack().warm.add((torch.device("cpu"), torch.float64))
    assert [warm for _, warm in second.compiled_warm()] == [False, False]
    second._find_stack().warm.add((torch.device("cpu"), torch.float32))
    assert [warm for _, warm in second.compiled_warm()] == [True, True]
    assert a.warm_up(second, x, steps=10) is True
    assert warmed == [second]
    assert a.provenance(second)["compile_decision"].startswith(
        "compiled: 2 layer configurations compiled already in this process; at most ")
    # another shape is not warm
    other = a.build(ModelSpec(hidden=(4,), grid=5, k=3), 2, 1, seed=0)
    assert [warm for _, warm in other.compiled_warm()] == [False, False]
    a.warm_up(other, x, steps=10)
    assert a.provenance(other)["compile_decision"].startswith("eager: ")


@pytest.mark.slow
def test_a_second_seed_reuses_the_compiled_kernels(compile_on, monkeypatch):
    from adapters.native import fused

    monkeypatch.setattr(fused, "_cache", {})
    a, first = _compiling_model()
    x = torch.rand(16, 2) * 2 - 1
    a.warm_up(first, x, steps=10**9)
    if not first.uses_compiled_kernels():
        pytest.skip("torch.compile failed here")
    assert all(warm for _, warm in first.compiled_warm())
    second = a.build(ModelSpec(hidden=(3,), grid=5, k=3), 2, 1, seed=1)
    a.warm_up(second, x, steps=10)
    assert a.provenance(second)["compile_decision"].startswith(
        "compiled: 2 layer configurations compiled already in this process")
    assert a.provenance(second)["compiled_kernel"] == "true"
    with torch.no_grad():  # the compiled stack computes what the eager layers do
        compiled = second(x)
        for layer in second.layers:
            layer.compile_allowed = False
        assert torch.allclose(compiled, second(x), atol=1e-5)


SUITE = """
name: decide
seeds: [0]
training: {epochs: 3, batch_size: 16, lr: 0.01}
datasets: [iris]
models: [{name: kan, adapter: native, hidden: [3], grid: 5, k: 3}]
"""


@pytest.mark.slow
def test_results_are_the_same_whichever_path_runs(write_suite, tmp_path, monkeypatch, compile_on):
    """The same run, once decided eager (its few planned steps) and once forced to compile."""
    import adapters.native as native

    path = write_suite(SUITE)
    plan = build_plan(suite_mod.load(path), path)
    if not adapters.get("native").build(ModelSpec(hidden=(3,)), 4, 3, seed=0).layers[0].compiles():
        pytest.skip("torch.compile unavailable here (or KANBENCH_NATIVE_COMPILE=0)")
    results = {}
    for label, seconds in (("eager", 1e9), ("compiled", 0.0)):
        monkeypatch.setattr(native, "COMPILE_SECONDS_PER_CONFIG", seconds)
        with Store(tmp_path / f"{label}.sqlite") as store:
            execute(plan, store)
            results[label] = store.runs().iloc[0]
    assert '"compile_decision": "eager: ' in results["eager"].provenance_json
    assert '"compile_decision": "compiled: ' in results["compiled"].provenance_json
    for column in ("train_metric", "val_metric", "test_metric"):
        assert results["eager"][column] == pytest.approx(results["compiled"][column], abs=1e-5)
