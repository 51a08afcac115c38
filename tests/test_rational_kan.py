"""The group-rational KAN (adapters/rational_kan.py): KAT's safe Pade function per group of
channels, then a linear map; its fitted starts reproduced from their definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares
from scipy.special import erf

import adapters
from adapters import AdapterError, ModelSpec
from adapters.rational_kan import RATIONAL_FITS, group_of

X = np.linspace(-6, 6, 2001)
TARGETS = {"gelu": 0.5 * X * (1 + erf(X / np.sqrt(2))), "silu": X / (1 + np.exp(-X)), "identity": X}


def rational(c, x):
    p = sum(c[i] * x ** i for i in range(6))
    return p / (1 + np.abs(sum(c[6 + j] * x ** (j + 1) for j in range(4))))


def test_each_layer_computes_a_rational_function_per_group_then_a_linear_map():
    a = adapters.get("rational_kan")
    model = a.build(ModelSpec(hidden=(4,), options={"groups": 2}), 5, 3, seed=0).double()
    with torch.no_grad():  # every group its own function
        for layer in model:
            layer.numerator.add_(torch.randn_like(layer.numerator) * 0.1)
            layer.denominator.add_(torch.randn_like(layer.denominator) * 0.1)
    x = torch.randn(9, 5, dtype=torch.float64) * 2
    h = x.numpy()
    for layer in model:
        coefs = torch.cat([layer.numerator, layer.denominator], 1).detach().numpy()
        groups = group_of(h.shape[1], 2).numpy()
        r = np.stack([rational(coefs[g], h[:, i]) for i, g in enumerate(groups)], 1)
        h = r @ layer.linear.weight.detach().numpy().T + layer.linear.bias.detach().numpy()
    assert np.allclose(model(x).detach().numpy(), h, atol=1e-12)


def test_groups_are_contiguous_and_nearly_equal_and_never_more_than_the_inputs():
    assert group_of(13, 8).tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7]
    assert group_of(3, 8).tolist() == [0, 1, 2]
    a = adapters.get("rational_kan")
    assert a.param_count(ModelSpec(hidden=(4,)), 3, 2) == (3 * 10 + 12 + 4) + (4 * 10 + 8 + 2)


@pytest.mark.parametrize("init, error", [("gelu", 0.0038), ("silu", 0.00022), ("identity", 1e-15)])
def test_the_fitted_starts_are_what_their_definition_gives(init, error):
    """Least squares on [-6, 6] from the linearised solution, as the module docstring says:
    the refit matches the stored constants' function, and both are within the stated error."""
    stored = np.array(RATIONAL_FITS[init])
    assert np.abs(rational(stored, X) - TARGETS[init]).max() < error
    if init == "identity":
        return
    f = TARGETS[init]
    a = np.concatenate([np.stack([X ** i for i in range(6)], 1),
                        -f[:, None] * np.stack([X ** (j + 1) for j in range(4)], 1)], 1)
    start = np.linalg.lstsq(a, f, rcond=None)[0]
    refit = least_squares(lambda c: rational(c, X) - f, start, method="lm", xtol=1e-15,
                          ftol=1e-15, max_nfev=50000).x
    assert np.abs(rational(refit, X) - rational(stored, X)).max() < 1e-6


def test_bad_options_name_the_option():
    with pytest.raises(AdapterError, match="options.init: Input should be 'gelu', 'silu' or "
                                           "'identity'"):
        adapters.get("rational_kan").check_spec(ModelSpec(options={"init": "relu"}))
    with pytest.raises(AdapterError, match="options.groups"):
        adapters.get("rational_kan").check_spec(ModelSpec(options={"groups": 0}))
