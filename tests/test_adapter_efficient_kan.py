"""efficient-kan adapter: efficient-kan's defaults, exact B-spline basis, counts, containment."""

from __future__ import annotations

import importlib.util
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from adapters.base import AdapterError, ModelSpec, package_version
from adapters.efficient_kan import EfficientKANAdapter, EfficientKANNet

ROOT = Path(__file__).resolve().parents[1]
SPEC = ModelSpec(hidden=(4,), grid=5, k=3)  # widths [3, 4, 2]
ORIGINAL = importlib.util.find_spec("efficient_kan") is not None

pytestmark = pytest.mark.skipif(
    EfficientKANAdapter().unavailable_reason() is not None,
    reason="neither efficient_kan nor ikan is installed",
)


@pytest.fixture(scope="module")
def adapter() -> EfficientKANAdapter:
    return EfficientKANAdapter()


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def test_provenance_names_the_provider(adapter):
    assert adapter.unavailable_reason() is None
    prov = adapter.provenance()
    if ORIGINAL:
        assert prov["provider"] == "efficient_kan"
    else:
        assert prov == {"provider": "ikan", "version": package_version("ikan")}
        assert prov["version"] is not None
    # decided once: a second call answers the same
    assert adapter.provenance() == prov
    # each model records the provider that built it
    model = adapter.build(SPEC, 3, 2, seed=0)
    assert (model.provider, model.provider_version) == (prov["provider"], prov["version"])
    assert adapter.provenance(model) == prov
    with pytest.raises(AdapterError, match="EfficientKANNet"):
        adapter.provenance(torch.nn.Linear(2, 1))


def test_layer_uses_efficient_kan_defaults(adapter):
    model = adapter.build(ModelSpec(grid=4, k=2, grid_range=(-2.0, 3.0)), 16, 32, seed=0)
    (layer,) = model.layers
    assert (layer.scale_noise, layer.scale_base, layer.scale_spline) == (0.1, 1.0, 1.0)
    assert layer.grid_eps == 0.02
    assert layer.enable_standalone_scale_spline is True
    assert isinstance(layer.base_activation, torch.nn.SiLU)
    assert (layer.grid_size, layer.spline_order) == (4, 2)
    # knots: uniform step 5/4 over [-2, 3], extended by k=2 on both sides
    expected = -2.0 + 1.25 * torch.arange(-2, 4 + 2 + 1, dtype=torch.float32)
    assert torch.allclose(layer.grid, expected.expand(16, -1))
    # The scales really reached the initialisation: kaiming_uniform with a = sqrt(5)*scale
    # bounds |w| by 1/sqrt(fan_in) at scale 1.0 (ikan's own 0.3 / 0.1 give ~2/sqrt(fan_in)).
    bound = 1 / math.sqrt(16)
    for w in (layer.base_weight, layer.spline_scaler):
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.9 * bound


def test_forward_shape_and_finite_grads(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    assert isinstance(model, EfficientKANNet) and len(model.layers) == 2
    x = torch.rand(16, 3, dtype=torch.float32) * 2 - 1
    y = model(x)
    assert y.shape == (16, 2) and y.dtype == torch.float32
    # non-contiguous input is accepted (the wrapper makes it contiguous)
    assert torch.allclose(model(x.T.contiguous().T), y)
    y.pow(2).sum().backward()
    params = _trainable(model)
    kinds = ("base_weight", "spline_weight", "spline_scaler")
    assert set(params) == {f"layers.{i}.{n}" for i in range(2) for n in kinds}
    for name, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_float64_build(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0, dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in [*model.parameters(), *model.buffers()])
    assert model(torch.rand(4, 3, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    ("spec", "in_dim", "out_dim", "expected"),
    [
        (SPEC, 3, 2, 3 * 4 * 10 + 4 * 2 * 10),
        (ModelSpec(hidden=(3, 5), grid=3, k=1), 2, 1, (2 * 3 + 3 * 5 + 5 * 1) * 6),
        (ModelSpec(grid=7, k=5), 4, 3, 4 * 3 * 14),
    ],
)
def test_param_count_matches_built_model(adapter, spec, in_dim, out_dim, expected):
    model = adapter.build(spec, in_dim, out_dim, seed=0)
    by_hand = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert adapter.param_count(spec, in_dim, out_dim) == expected
    assert adapter.count_params(model) == expected
    assert by_hand == expected


def test_seed_determinism_and_global_rng(adapter):
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    py, npy, pt = random.getstate(), np.random.get_state(), torch.get_rng_state()
    a = adapter.build(SPEC, 3, 2, seed=3).state_dict()
    b = adapter.build(SPEC, 3, 2, seed=3).state_dict()
    c = adapter.build(SPEC, 3, 2, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("layers.0.base_weight", "layers.0.spline_weight", "layers.1.spline_scaler"):
        assert not torch.equal(a[name], c[name]), name
    assert random.getstate() == py
    assert np.array_equal(np.random.get_state()[1], npy[1])
    assert torch.equal(torch.get_rng_state(), pt)


# -- the provider's B-spline basis against scipy ---------------------------------------------


def _basis_oracle(x: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """Every B-spline of degree k on knots t, evaluated anywhere (0 outside its support)."""
    n = len(t) - k - 1
    cols = []
    for j in range(n):
        values = BSpline.basis_element(t[j : j + k + 2], extrapolate=False)(x)
        cols.append(np.nan_to_num(values, nan=0.0))
    return np.stack(cols, axis=1)


def _layer64(adapter: EfficientKANAdapter, grid: int, k: int, in_dim: int = 3):
    model = adapter.build(ModelSpec(grid=grid, k=k), in_dim, 2, seed=0, dtype=torch.float64)
    return model.layers[0]


def _check_basis(layer, rng: np.random.Generator, n: int = 64) -> None:
    k, G = layer.spline_order, layer.grid_size
    knots = layer.grid.detach().numpy()  # (in, G + 2k + 1), one row per input feature
    lo, hi = knots[:, k], knots[:, G + k]
    first, last = knots[:, 0], knots[:, -1]

    def basis(x: np.ndarray) -> np.ndarray:  # x: (n, in)
        return layer.b_splines(torch.from_numpy(x)).detach().numpy()

    # inside the base interval [t_k, t_{G+k}) (right endpoint excluded): scipy's design matrix
    inside = rng.uniform(lo, hi, size=(n, len(lo)))
    got = basis(inside)
    for i, t in enumerate(knots):
        want = BSpline.design_matrix(inside[:, i], t, k).toarray()
        np.testing.assert_allclose(got[:, i, :], want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[:, i, :].sum(1), 1.0, rtol=1e-10)  # partition of unity

    # in the extension knots on either side: each basis function on its own
    left = rng.uniform(first, lo, size=(n // 2, len(lo)))
    right = rng.uniform(hi, last, size=(n // 2, len(lo)))
    outside = np.concatenate([left, right])
    got = basis(outside)
    for i, t in enumerate(knots):
        want = _basis_oracle(outside[:, i], t, k)
        np.testing.assert_allclose(got[:, i, :], want, rtol=1e-10, atol=1e-12)
    assert np.abs(got).max() > 0  # the extension region is not trivially zero

    # beyond the extended knots every basis function vanishes
    far = np.concatenate(
        [first - 1 - rng.uniform(0, 5, (8, len(lo))), last + 1 + rng.uniform(0, 5, (8, len(lo)))]
    )
    got = basis(far)
    assert np.array_equal(got, np.zeros_like(got))
    np.testing.assert_array_equal(_basis_oracle(far[:, 0], knots[0], k), 0.0)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_b_splines_match_scipy_uniform_knots(adapter, k):
    _check_basis(_layer64(adapter, grid=5, k=k), np.random.default_rng(k))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_b_splines_match_scipy_after_grid_update(adapter, k):
    # update_grid makes the knots non-uniform and different for each input feature
    layer = _layer64(adapter, grid=4, k=k)
    rng = np.random.default_rng(10 + k)
    data = rng.standard_normal((300, 3)) ** 3 * np.array([0.5, 2.0, 4.0]) + np.array([0, 1, -3])
    layer.update_grid(torch.from_numpy(data))
    steps = np.diff(layer.grid.numpy(), axis=1)
    assert not np.allclose(steps, steps[:, :1])  # really non-uniform
    assert not np.allclose(layer.grid[0].numpy(), layer.grid[1].numpy())
    _check_basis(layer, rng)


# -- instrumentation ---------------------------------------------------------------------------


def test_spline_coefficients_and_regularization(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    coefs = adapter.spline_coefficients(model)
    assert [tuple(c.shape) for c in coefs] == [(4, 3, 8), (2, 4, 8)]
    assert all(c is layer.spline_weight for c, layer in zip(coefs, model.layers))

    reg = adapter.regularization(model)
    expected = 0.0
    for w in coefs:  # efficient-kan's L1 + entropy, written out
        l1 = w.detach().abs().mean(-1)
        p = l1 / l1.sum()
        expected += l1.sum().item() - (p * p.log()).sum().item()
    assert reg.item() == pytest.approx(expected, rel=1e-6)
    reg.backward()
    assert all(c.grad is not None and torch.isfinite(c.grad).all() for c in coefs)


def test_update_grid_follows_each_layers_inputs(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 3, generator=g) * torch.tensor([6.0, 2.0, 0.5]) - torch.tensor([3.0, 1, 0])
    assert adapter.update_grid(model, x) is True
    k, G = SPEC.k, SPEC.grid
    first = model.layers[0].grid
    # the interior knots span the data (efficient-kan adds a 0.01 margin)
    assert torch.all(first[:, k] <= x.min(0).values)
    assert torch.all(first[:, k + G] >= x.max(0).values)
    assert torch.allclose(first[:, k], x.min(0).values, atol=0.02)
    # the second layer was fitted to what the (updated) first layer outputs
    with torch.no_grad():
        h = model.layers[0](x)
    second = model.layers[1].grid
    assert torch.allclose(second[:, k], h.min(0).values, atol=0.02)
    assert torch.allclose(second[:, k + G], h.max(0).values, atol=0.02)
    assert torch.isfinite(model(x)).all()


def test_rejects_unknown_options_and_activation(adapter):
    with pytest.raises(AdapterError, match="scale_noise"):
        adapter.build(ModelSpec(options={"scale_noise": 0.5}), 3, 2, seed=0)
    with pytest.raises(AdapterError, match="activation"):
        adapter.build(ModelSpec(activation="nope"), 3, 2, seed=0)
    with pytest.raises(AdapterError, match="activation 'nope'"):
        adapter.param_count(ModelSpec(activation="nope"), 3, 2)
    relu = adapter.build(ModelSpec(activation="relu"), 3, 2, seed=0)
    assert isinstance(relu.layers[0].base_activation, torch.nn.ReLU)


@pytest.mark.skipif(ORIGINAL, reason="only the ikan fallback needs containing")
def test_ikan_import_leaves_cwd_and_stdout_alone(tmp_path):
    # ikan's package __init__ chdirs into site-packages and prints; a fresh interpreter shows
    # that the adapter avoids both and never executes that __init__.
    code = (
        "import os, sys, torch\n"
        "from adapters.efficient_kan import EfficientKANAdapter\n"
        "from adapters.base import ModelSpec\n"
        "a = EfficientKANAdapter()\n"
        "m = a.build(ModelSpec(hidden=(2,), grid=3, k=2), 2, 1, seed=0)\n"
        "m(torch.rand(4, 2)).sum().backward()\n"
        "assert a.provenance()['provider'] == 'ikan'\n"
        "print(os.getcwd()); print('ikan' in sys.modules)\n"
    )
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": path},
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(tmp_path), "False"]
    assert list(tmp_path.iterdir()) == []
