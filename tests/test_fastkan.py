"""The radial-basis KAN (adapters/fastkan.py): FastKAN's formula, its hyper-parameters validated
and stored with their defaults, and the README's comparison with the cubic B-spline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

import adapters
from adapters import AdapterError, ModelSpec
from bench import suite as suite_mod
from bench.errors import SuiteError
from bench.plan import build_plan


def _reference(layer, x: np.ndarray) -> np.ndarray:
    """One FastKAN layer computed with NumPy from its parameters."""
    p = {n: t.detach().double().numpy() for n, t in layer.named_parameters()}
    u = x
    if layer.norm is not None:
        mean = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        u = (x - mean) / np.sqrt(var + layer.norm.eps) * p["norm.weight"] + p["norm.bias"]
    centres, h = layer.centres.double().numpy(), layer.spacing
    basis = np.exp(-(((u[:, :, None] - centres) / h) ** 2)).reshape(len(x), -1)
    y = basis @ p["spline_weight"].T
    if layer.base is not None:
        silu = x / (1 + np.exp(-x))
        y = y + silu @ p["base.weight"].T + p["base.bias"]
    return y


@pytest.mark.parametrize("options", [{}, {"centres": 5, "range": [-1, 3]},
                                     {"layer_norm": False, "base_activation": None}])
def test_each_layer_computes_fastkans_formula(options):
    a = adapters.get("fastkan")
    model = a.build(ModelSpec(hidden=(4,), options=options), 3, 2, seed=0).double()
    x = torch.randn(7, 3, dtype=torch.float64) * 1.5
    h = x.numpy()
    for layer in model:
        h = _reference(layer, h)
    assert np.allclose(model(x).detach().numpy(), h, atol=1e-12)


@pytest.mark.parametrize("options, message", [
    ({"centres": 1}, "options.centres: Input should be greater than or equal to 2"),
    ({"range": [1, -1]}, "range must be increasing"),
    ({"base_activation": "swish"}, "options.base_activation: Input should be"),
    ({"spline_init_scale": 0}, "options.spline_init_scale: Input should be greater than 0"),
    ({"grid": 5}, r"does not understand option\(s\) \['grid'\]"),
])
def test_bad_hyperparameters_name_the_option(options, message):
    with pytest.raises(AdapterError, match=message):
        adapters.get("fastkan").check_spec(ModelSpec(options=options))


def test_a_layer_norm_over_one_input_is_refused():
    a = adapters.get("fastkan")
    with pytest.raises(AdapterError, match="layer_norm: false"):
        a.param_count(ModelSpec(hidden=(4,)), 1, 1)
    a.param_count(ModelSpec(hidden=(4,), options={"layer_norm": False}), 1, 1)


SUITE = """
name: rbf
seeds: [0]
training: {epochs: 1}
datasets: [iris]
models:
  - {name: rbf, adapter: fastkan, hidden: [4], options: {centres: 6}}
  - {name: mlp, adapter: mlp, budget: {match: rbf}}
"""


def test_the_planner_stores_every_hyperparameter_and_matches_an_mlp(write_suite):
    path = write_suite(SUITE)
    plan = build_plan(suite_mod.load(path), path)
    rbf = next(r for r in plan.runs if r.model == "rbf")
    assert rbf.arch.options == {"basis": "gaussian_rbf", "centres": 6, "range": [-2.0, 2.0],
                                "layer_norm": True, "base_activation": "silu",
                                "spline_init_scale": 0.1}
    assert rbf.arch.describe("kan") == ("hidden=[4] gaussian_rbf centres=6 range=[-2,2] "
                                        "layer_norm=True base_activation=silu "
                                        "spline_init_scale=0.1")
    # iris: 4 inputs, 3 classes; per layer 2a + b a 6 + b a + b
    assert rbf.params == (8 + 4 * 4 * 6 + 4 * 4 + 4) + (8 + 3 * 4 * 6 + 3 * 4 + 3)
    mlp = next(r for r in plan.runs if r.model == "mlp")
    assert abs(mlp.params - rbf.params) / rbf.params <= 0.02


@pytest.mark.parametrize("field, text", [
    ("options", "{name: rbf, adapter: fastkan, hidden: [4], options: {centres: 0}}"),
    ("grid", "{name: rbf, adapter: fastkan, hidden: [4], grid: 7}"),
])
def test_a_suite_with_a_bad_family_setting_names_the_key(write_suite, field, text):
    path = write_suite(SUITE.replace("{name: rbf, adapter: fastkan, hidden: [4], "
                                     "options: {centres: 6}}", text))
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    assert f"models[0].{field}" in str(err.value)


def test_the_readme_comparison_with_the_cubic_bspline():
    """The Gaussian of width h, best scaled, is within 0.062 of the cubic B-spline on knots h
    apart; at width 0.85 h within 0.009; the Gaussians sum to sqrt(pi) within 0.02%."""
    x = np.linspace(-4, 4, 80001)
    spline = np.nan_to_num(BSpline.basis_element([-2, -1, 0, 1, 2], extrapolate=False)(x))

    def error(width: float) -> float:
        g = np.exp(-(x / width) ** 2)
        return float(np.abs((g @ spline) / (g @ g) * g - spline).max())

    assert 0.061 < error(1.0) < 0.062 and error(0.85) < 0.009
    u = np.linspace(0, 1, 1001)
    total = sum(np.exp(-(u - j) ** 2) for j in range(-20, 21))
    assert np.abs(total / np.sqrt(np.pi) - 1).max() < 2e-4


def test_the_export_has_each_runs_family_hyperparameters(write_suite, tmp_path):
    from bench.runner import execute
    from bench.store import Store

    path = write_suite(SUITE.replace("  - {name: mlp, adapter: mlp, budget: {match: rbf}}\n",
                                     "  - {name: cheb, adapter: chebyshev_kan, hidden: [3], "
                                     "options: {degree: 4}}\n"))
    plan = build_plan(suite_mod.load(path), path)
    with Store(tmp_path / "s.sqlite") as store:
        assert execute(plan, store).statuses == {"ok": 2}
        export = store.export().set_index("model")
    assert export.option_centres["rbf"] == 6 and export.option_range["rbf"] == "[-2.0, 2.0]"
    assert export.option_degree["cheb"] == 4 and export.option_scale_cheby["cheb"] == 0.3
    assert export.option_basis.to_dict() == {"rbf": "gaussian_rbf", "cheb": "chebyshev"}
