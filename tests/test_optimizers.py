"""The training optimiser: the fastest implementation torch has, for every model alike, recorded
per run; forcing one is configuration (in the key), auto is not."""

from __future__ import annotations

import inspect

import pytest
import torch

from bench import suite as suite_mod
from bench.errors import SuiteError
from bench.optimizers import _CLASSES, build_optimizer, implementation
from bench.plan import build_plan
from bench.records import OPTIMIZER_IMPLS, TrainingSpec
from bench.runner import run_one

FUSED_ON_CPU = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 4)

SUITE = """
name: optimisers
seeds: [0]
training: {{epochs: 3, batch_size: 16, lr: 0.01{extra}}}
datasets: [iris]
models:
  - {{name: kan, adapter: native, hidden: [3], grid: 4}}
  - {{name: mlp, adapter: mlp, hidden: [6]}}
"""


def test_the_table_of_implementations_is_what_torch_constructors_accept():
    for name, cls in _CLASSES.items():
        accepted = inspect.signature(cls).parameters
        expected = tuple(impl for impl in ("fused", "foreach") if impl in accepted)
        assert OPTIMIZER_IMPLS[name] == (*expected, "for_loop"), name


@pytest.mark.skipif(not FUSED_ON_CPU, reason="fused CPU kernels came with torch 2.4")
@pytest.mark.parametrize("name, expected", [("adam", "fused"), ("adamw", "fused"),
                                            ("sgd", "fused"), ("rmsprop", "foreach"),
                                            ("lbfgs", "for_loop")])
def test_auto_takes_the_fastest_implementation_the_optimizer_has(name, expected):
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]
    opt = build_optimizer(params, TrainingSpec(optimizer=name))
    assert implementation(opt) == expected


@pytest.mark.parametrize("impl", ["foreach", "for_loop"])
def test_a_forced_implementation_is_built(impl):
    params = [torch.nn.Parameter(torch.randn(3, 2))]
    opt = build_optimizer(params, TrainingSpec(optimizer="adam", optimizer_impl=impl))
    assert implementation(opt) == impl


def test_torch_defaults_are_reported_as_what_they_run_on_cpu():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.randn(3))])  # foreach=None: loop on CPU
    assert implementation(opt) == "for_loop"


@pytest.mark.skipif(not FUSED_ON_CPU, reason="fused CPU kernels came with torch 2.4")
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_and_loop_updates_agree(name):
    """The implementations differ in rounding only: 50 steps of a small model agree to 1e-5."""
    def train(impl):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        opt = build_optimizer(model.parameters(), TrainingSpec(
            optimizer=name, lr=0.01, weight_decay=0.01, optimizer_impl=impl))
        assert implementation(opt) == impl
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
        start = torch.cat([p.detach().flatten() for p in model.parameters()])
        for _ in range(50):
            opt.zero_grad()
            model(x).sin().mean().backward()
            opt.step()
        return start, torch.cat([p.detach().flatten() for p in model.parameters()])

    (start, fused), (_, loop) = train("fused"), train("for_loop")
    assert (fused - start).abs().max() > 0.05  # the steps moved the parameters
    torch.testing.assert_close(fused, loop, atol=1e-5, rtol=1e-5)


def test_an_implementation_the_optimizer_lacks_is_a_suite_error(write_suite):
    path = write_suite(SUITE.format(extra=", optimizer: rmsprop, optimizer_impl: fused"))
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    assert "rmsprop has no fused implementation" in str(err.value)
    assert "foreach, for_loop" in str(err.value)


def test_auto_keeps_the_key_a_forced_implementation_changes_it(write_suite):
    auto = build_plan(suite_mod.load(path := write_suite(SUITE.format(extra=""))), path)
    same = build_plan(suite_mod.load(p2 := write_suite(SUITE.format(extra=", optimizer_impl: auto"))), p2)
    forced = build_plan(suite_mod.load(p3 := write_suite(SUITE.format(extra=", optimizer_impl: for_loop"))), p3)
    assert "optimizer_impl" not in auto.runs[0].training.identity()
    assert [r.key for r in auto.runs] == [r.key for r in same.runs]
    assert not {r.key for r in auto.runs} & {r.key for r in forced.runs}


@pytest.mark.skipif(not FUSED_ON_CPU, reason="fused CPU kernels came with torch 2.4")
def test_every_model_of_a_run_records_the_same_implementation(write_suite):
    path = write_suite(SUITE.format(extra=""))
    plan = build_plan(suite_mod.load(path), path)
    results = [run_one(spec) for spec in plan.runs]
    assert [r.status for r in results] == ["ok", "ok"]
    assert [r.values["optimizer_impl_used"] for r in results] == ["fused", "fused"]


@pytest.mark.skipif(not FUSED_ON_CPU, reason="fused CPU kernels came with torch 2.4")
def test_the_export_shows_the_setting_and_what_ran(write_suite, tmp_path):
    from bench.runner import execute
    from bench.store import Store

    path = write_suite(SUITE.format(extra=""))
    with Store(tmp_path / "s.sqlite") as store:
        execute(build_plan(suite_mod.load(path), path), store)
        exported = store.export()
    assert exported.optimizer_impl.tolist() == ["auto", "auto"]
    assert exported.optimizer_impl_used.tolist() == ["fused", "fused"]
