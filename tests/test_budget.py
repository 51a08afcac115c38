"""The width solver: closest count, within tolerance, across adapters and shapes."""

from __future__ import annotations

import pytest

import adapters
from adapters import ModelSpec
from bench.budget import solve_width
from bench.errors import BudgetError


def brute_force_best(adapter, template, hidden, i, o, target, max_width=3000):
    counts = {w: adapter.param_count(template.model_copy(
        update={"hidden": tuple(w if h is None else h for h in hidden)}), i, o)
        for w in range(1, max_width)}
    return min(counts, key=lambda w: (abs(counts[w] - target), w)), counts


@pytest.mark.parametrize("in_dim,out_dim", [(30, 2), (64, 10), (4, 3), (10, 1), (13, 3)])
@pytest.mark.parametrize("grid,k", [(5, 3), (3, 2), (10, 3)])
def test_mlp_matched_to_kan_within_two_percent(in_dim, out_dim, grid, k):
    kan = adapters.get("native")
    mlp = adapters.get("mlp")
    kan_spec = ModelSpec(hidden=(8,), grid=grid, k=k)
    target = kan.param_count(kan_spec, in_dim, out_dim)
    solved = solve_width(mlp, ModelSpec(), [None], in_dim, out_dim, target, 0.02, "test")
    assert abs(solved.params - target) / target <= 0.02
    assert solved.params == mlp.param_count(solved.spec, in_dim, out_dim)
    best, _ = brute_force_best(mlp, ModelSpec(), [None], in_dim, out_dim, target)
    assert solved.spec.hidden == (best,)


def test_kan_solved_for_absolute_target_two_hidden_layers():
    kan = adapters.get("efficient_kan")
    template = ModelSpec(grid=5, k=3)
    solved = solve_width(kan, template, [None, None], 20, 4, 10_000, 0.05, "test")
    best, counts = brute_force_best(kan, template, [None, None], 20, 4, 10_000, 200)
    assert solved.spec.hidden == (best, best)
    assert solved.params == counts[best]
    assert solved.rel_error == pytest.approx((counts[best] - 10_000) / 10_000)


def test_fixed_widths_are_kept():
    mlp = adapters.get("mlp")
    solved = solve_width(mlp, ModelSpec(), [16, None], 5, 2, 1000, 0.05, "test")
    assert solved.spec.hidden[0] == 16


def test_unreachable_target_names_the_model():
    mlp = adapters.get("mlp")
    with pytest.raises(BudgetError, match="model .x.*closest achievable .width.*tolerance"):
        solve_width(mlp, ModelSpec(), [None], 100, 10, 50, 0.02, "model 'x'")


def test_nothing_to_solve():
    with pytest.raises(BudgetError, match="no null hidden width"):
        solve_width(adapters.get("mlp"), ModelSpec(), [4], 3, 2, 100, 0.02, "m")


def test_budget_command_resolves_suite(write_suite, capsys):
    from bench.cli import main

    path = write_suite("""
        seeds: [0]
        datasets: [breast_cancer, digits]
        models:
          - {name: kan, adapter: native, hidden: [8], grid: 5, k: 3}
          - {name: mlp, adapter: mlp, budget: {match: kan}}
          - {name: big, adapter: mlp, budget: {params: 20000, tolerance: 0.01}}
    """)
    assert main(["budget", str(path)]) == 0
    out = capsys.readouterr().out
    # breast_cancer: KAN [30, 8, 2] G=5 k=3 has (30*8 + 8*2) * 10 = 2560 parameters
    assert "2,560" in out
    assert "match kan 2,560" in out
    # digits: [64, 8, 10] -> (64*8 + 8*10) * 10 = 5920; MLP 64h + h + 10h + 10 = 75h + 10 -> h=79
    assert "hidden=[79] silu" in out and "5,935" in out
