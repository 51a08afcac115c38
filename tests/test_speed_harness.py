"""bench.speed.harness: the speed benchmarks' MLPs are matched by the suites' budget solver."""

from __future__ import annotations

import pytest

import adapters
from adapters import ModelSpec
from bench.budget import solve_width
from bench.errors import BudgetError
from bench.plan import resolve_models
from bench.speed.harness import (
    Config,
    FAMILY_TOLERANCE,
    FULL,
    MLP_TOLERANCE,
    QUICK,
    REFERENCE_KAN,
    bench_spec,
    kan_params,
    matched_mlp_spec,
    skip_reason,
)
from bench.suite import Suite


@pytest.mark.parametrize("cfg", FULL, ids=[c.id for c in FULL])
def test_matched_mlp_is_the_budget_solvers(cfg):
    in_dim, out_dim = cfg.widths[0], cfg.widths[-1]
    mlp = adapters.get("mlp")
    target = kan_params(cfg)
    assert target == adapters.get(REFERENCE_KAN).param_count(cfg.spec, in_dim, out_dim)
    # what a suite's `budget: {match: <kan>, tolerance: 0.02}` gives an MLP with null widths
    expected = solve_width(mlp, ModelSpec(), [None] * (len(cfg.widths) - 2), in_dim, out_dim,
                           target, 0.02, cfg.id)
    got = matched_mlp_spec(cfg)
    assert got == expected.spec
    assert len(got.hidden) == len(cfg.widths) - 2
    params = mlp.param_count(got, in_dim, out_dim)
    assert params == expected.params
    assert MLP_TOLERANCE == 0.02
    assert abs(params - target) <= 0.02 * target


@pytest.mark.parametrize("cfg", FULL, ids=[c.id for c in FULL])
def test_matched_mlp_equals_a_suites_matched_mlp(cfg):
    """The same configuration written as a suite (the KAN with fixed widths, the MLP matched to
    it) resolves to the same MLP."""
    suite = Suite.model_validate({
        "datasets": ["iris"],
        "models": [
            {"name": "kan", "adapter": REFERENCE_KAN, "hidden": list(cfg.widths[1:-1]),
             "grid": cfg.grid, "k": cfg.k},
            {"name": "mlp", "adapter": "mlp", "hidden": [None] * (len(cfg.widths) - 2),
             "budget": {"match": "kan", "tolerance": 0.02}},
        ],
    })
    solved = resolve_models(suite, cfg.widths[0], cfg.widths[-1], cfg.id)
    assert solved["kan"].params == kan_params(cfg)
    assert solved["mlp"].spec.hidden == matched_mlp_spec(cfg).hidden


def test_quick_configs_are_full_configs():
    assert set(QUICK) <= set(FULL)


def test_a_config_without_hidden_layers_has_no_matched_mlp():
    with pytest.raises(BudgetError, match=r"\[4,2\] b8 G5.*no null hidden width"):
        matched_mlp_spec(Config((4, 2), 8))


@pytest.mark.parametrize("impl", [n for n in adapters.names() if adapters.get(n).hyper])
def test_a_family_without_a_grid_is_timed_at_the_reference_kans_parameter_count(impl):
    """Like the MLP, so that its time compares with the matched MLP's at equal parameters."""
    cfg = Config((30, 8, 2), 512)
    spec = bench_spec(impl, cfg)
    params = adapters.get(impl).param_count(spec, 30, 2)
    assert abs(params - kan_params(cfg)) <= FAMILY_TOLERANCE * kan_params(cfg)
    assert skip_reason(impl, Config((784, 64, 10), 256, 20)) == (
        f"{impl} has no grid: its model here is the one of the G5 configuration")


def test_every_implementation_steps_with_the_suites_optimiser():
    """The benchmarks' Adam is the one the suites train with (bench.optimizers, auto): the
    same implementation for every model, so per-tensor costs do not favour any of them."""
    import torch

    from bench.optimizers import build_optimizer, implementation
    from bench.records import TrainingSpec
    from bench.speed.harness import make_bench

    cfg = Config((2, 5, 1), 16)
    for impl in ("native", "mlp", "efficient_kan", "inkan"):
        if adapters.get(impl).unavailable_reason():
            continue
        bench = make_bench(impl, cfg)
        suites = build_optimizer(bench.model.parameters(), TrainingSpec(lr=1e-3))
        assert isinstance(bench.opt, torch.optim.Adam) and bench.opt.defaults["lr"] == 1e-3
        assert bench.info["optimizer_impl_used"] == implementation(bench.opt) == implementation(suites)
