"""Budgets in FLOPs, ladders, fixed-ratio depths and grid rungs; FLOPs stored with every run."""

from __future__ import annotations

import pandas as pd
import pytest

import adapters
from bench import suite as suite_mod
from bench.cli import main
from bench.plan import build_plan
from bench.runner import execute
from bench.store import Store

HEADER = """
seeds: [0]
training: {epochs: 2, batch_size: 32}
datasets: [{name: toy_sin_exp, options: {n_train: 100, n_test: 50}}]
models:
"""
KAN = "  - {name: kan, adapter: native, hidden: [5], grid: 5, k: 3}\n"


def _plan(write_suite, models):
    path = write_suite(HEADER + models)
    return build_plan(suite_mod.load(path), path)


def _by_model(plan):
    return {label_model: s for label, solved in plan.solved.items()
            for label_model, s in solved.items()}


@pytest.mark.parametrize("kind", ["nominal", "impl"])
def test_a_flops_target_is_met_within_tolerance(write_suite, kind):
    plan = _plan(write_suite, f"  - {{name: mlp, adapter: mlp, budget: {{flops: 20000, "
                              f"flops_kind: {kind}}}}}\n")
    s = _by_model(plan)["mlp"]
    flops = adapters.get("mlp").flops(s.spec, 2, 1)
    achieved = flops.nominal if kind == "nominal" else flops.impl
    assert s.by == f"flops_{kind}" and s.achieved == achieved
    assert abs(achieved - 20000) / 20000 <= 0.02
    assert plan.runs[0].budget["by"] == f"flops_{kind}"


def test_matching_by_flops_meets_the_reference_models_flops(write_suite):
    plan = _plan(write_suite, KAN + "  - {name: mlp, adapter: mlp, budget: {match: kan, "
                                    "by: flops}}\n")
    solved = _by_model(plan)
    kan = adapters.get("native").flops(solved["kan"].spec, 2, 1).nominal
    mlp = adapters.get("mlp").flops(solved["mlp"].spec, 2, 1).nominal
    assert solved["mlp"].target == round(kan) and abs(mlp - kan) / kan <= 0.02
    # a parameter match of the same pair gives another width: the two budgets differ
    by_params = _by_model(_plan(write_suite, KAN + "  - {name: mlp, adapter: mlp, budget: "
                                                   "{match: kan}}\n"))
    assert by_params["mlp"].spec.hidden != solved["mlp"].spec.hidden


def test_an_unreachable_flops_target_is_a_suite_error_with_the_closest_value(write_suite,
                                                                              capsys):
    path = write_suite(HEADER + "  - {name: mlp, adapter: mlp, budget: {flops: 5, "
                                "tolerance: 0.01}}\n")
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    width1 = adapters.get("mlp").flops(adapters.ModelSpec(hidden=(1,)), 2, 1).nominal
    assert f"{path}: models[0].budget" in err
    assert f"closest achievable (width 1) gives {width1:,.0f} FLOPs per sample (nominal)" in err


def test_a_shape_solves_several_widths_at_fixed_ratios(write_suite):
    plan = _plan(write_suite, "  - {name: deep, adapter: mlp, hidden: [null, null], "
                              "budget: {params: 5000, shape: [2, 1], tolerance: 0.05}}\n")
    hidden = _by_model(plan)["deep"].spec.hidden
    assert abs(hidden[0] - 2 * hidden[1]) <= 1 and hidden[1] > 10


def test_a_ladder_expands_into_one_model_per_rung_and_matches_follow_it(write_suite):
    plan = _plan(write_suite, "  - {name: kan, adapter: native, hidden: [null], grid: 5, "
                              "budget: {params: [1000, 3000, 1.0e+4]}}\n"
                              "  - {name: mlp, adapter: mlp, budget: {match: kan}}\n")
    solved = _by_model(plan)
    assert list(solved) == ["kan@1k", "kan@3k", "kan@10k", "mlp@1k", "mlp@3k", "mlp@10k"]
    for rung, target in (("1k", 1000), ("3k", 3000), ("10k", 10000)):
        kan, mlp = solved[f"kan@{rung}"], solved[f"mlp@{rung}"]
        assert abs(kan.params - target) / target <= 0.02
        assert mlp.reference == f"kan@{rung}" and abs(mlp.params - kan.params) / kan.params <= 0.02
    assert len(plan.runs) == 6 and {r.model for r in plan.runs} == set(solved)


def test_a_grid_rung_solves_g_at_fixed_widths(write_suite):
    plan = _plan(write_suite, "  - {name: kan, adapter: native, hidden: [5], "
                              "budget: {params: [300, 600], vary: grid, tolerance: 0.1}}\n")
    solved = _by_model(plan)
    native = adapters.get("native")
    for name, target in (("kan@300", 300), ("kan@600", 600)):
        s = solved[name]
        assert s.spec.hidden == (5,)
        assert s.params == native.param_count(s.spec, 2, 1)
        assert abs(s.params - target) / target <= 0.1
    assert solved["kan@600"].spec.grid > solved["kan@300"].spec.grid


@pytest.mark.parametrize("model, key, message", [
    ("{name: m, adapter: mlp, hidden: [4], budget: {params: 300, vary: grid}}",
     "models[0].budget.vary", "adapter 'mlp' has no grid to vary"),
    ("{name: m, adapter: native, hidden: [null], budget: {params: 300, vary: grid}}",
     "models[0].hidden", "solves G at fixed widths"),
    ("{name: m, adapter: mlp, budget: {params: 300, flops: 1000}}",
     "models[0].budget", "exactly one of"),
    ("{name: m, adapter: mlp, budget: {params: [300, 300]}}",
     "models[0].budget.params", "lists a target twice"),
    ("{name: m, adapter: mlp, hidden: [null, null], budget: {params: 3000, shape: [2]}}",
     "models[0]", "budget.shape gives 1 ratios for 2 null hidden widths"),
])
def test_bad_budgets_are_suite_errors(write_suite, capsys, model, key, message):
    path = write_suite(HEADER + f"  - {model}\n")
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {key}" in err and message in err, err


def test_every_run_stores_its_flops_and_the_budget_command_shows_them(write_suite, tmp_path,
                                                                       capsys):
    path = write_suite(HEADER + KAN + "  - {name: mlp, adapter: mlp, budget: {match: kan, "
                                      "by: flops, flops_kind: impl}}\n")
    assert main(["budget", str(path)]) == 0
    out = capsys.readouterr().out
    assert "FLOPs nominal" in out and "FLOPs impl" in out and "flops impl" in out
    plan = build_plan(suite_mod.load(path), path)
    with Store(tmp_path / "s.sqlite") as store:
        execute(plan, store)
        table = store.export()
    for row in table.itertuples():
        spec = next(r for r in plan.runs if r.key == row.run_key)
        flops = adapters.get(spec.adapter).flops(spec.arch, 2, 1)
        assert (row.flops_nominal, row.flops_impl, row.train_flops) == (
            flops.nominal, flops.impl, flops.train)
    mlp = table[table.model == "mlp"].iloc[0]
    kan_impl = table[table.model == "kan"].flops_impl.iloc[0]
    # the stored budget error is the FLOPs', not the parameters'
    assert mlp.budget_error == pytest.approx((mlp.flops_impl - round(kan_impl)) / round(kan_impl))
    assert not pd.isna(mlp.budget_error)
