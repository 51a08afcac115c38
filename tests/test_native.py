"""The native KAN: basis against SciPy, layer against efficient-kan, adapter contract."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import adapters
from adapters.base import ModelSpec
from adapters.mlp import ACTIVATIONS as MLP_ACTIVATIONS
from adapters.native import activations as native_activations
from adapters.native.basis import cox_de_boor, uniform_basis, uniform_knots
from adapters.native.layer import NativeKANLayer
from helpers import break_torch_compile

scipy_interpolate = pytest.importorskip("scipy.interpolate")


def _scipy_basis(t: np.ndarray, k: int, x: np.ndarray) -> np.ndarray:
    """Every basis element on knots ``t`` at ``x``, zero outside its support."""
    n = len(t) - k - 1
    out = np.zeros((len(x), n))
    for j in range(n):
        b = scipy_interpolate.BSpline.basis_element(t[j : j + k + 2], extrapolate=False)
        out[:, j] = np.nan_to_num(b(x), nan=0.0)
    return out


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("grid", [1, 5, 12])
def test_uniform_basis_matches_scipy(k, grid):
    lo, hi = -1.5, 2.0
    t = uniform_knots(grid, k, (lo, hi), dtype=torch.float64).numpy()
    # inside, outside, and exactly on every knot
    x = np.concatenate([np.linspace(t[0] - 1.0, t[-1] + 1.0, 3001), t])
    ours = uniform_basis(torch.from_numpy(x), lo, (hi - lo) / grid, grid, k).numpy()
    assert ours.shape == (len(x), grid + k)
    assert _rel_err(ours, _scipy_basis(t, k, x)) < 1e-10
    # design_matrix covers the base interval [t_k, t_{G+k}]
    inner = x[(x >= t[k]) & (x <= t[grid + k])]
    dm = scipy_interpolate.BSpline.design_matrix(inner, t, k).toarray()
    ours_inner = uniform_basis(torch.from_numpy(inner), lo, (hi - lo) / grid, grid, k).numpy()
    # scipy closes the last interval on the right; half-open cells give 0 at t_{G+2k} only,
    # which is outside the base interval, so the two agree everywhere here
    assert _rel_err(ours_inner, dm) < 1e-10
    # exactly zero strictly outside the knot span (on the last knot itself the half-open
    # cell is decided by rounding, and the basis is continuous there: ~1e-16)
    outside = (x < t[0]) | (x > t[-1])
    assert np.all(ours[outside] == 0.0)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_cox_de_boor_matches_scipy_on_uneven_knots(k):
    rng = np.random.default_rng(k)
    t = np.sort(rng.uniform(-2, 2, 12))
    x = np.concatenate([np.linspace(-3, 3, 1001), t])
    ours = cox_de_boor(torch.from_numpy(x)[:, None], torch.from_numpy(t), k)[:, 0].numpy()
    assert _rel_err(ours, _scipy_basis(t, k, x)) < 1e-10


def _efficient_kan_layer(in_f, out_f, grid, k, base_activation=torch.nn.SiLU):
    KANLinear = pytest.importorskip("ikan.KAN").KANLinear
    return KANLinear(
        in_f,
        out_f,
        grid_size=grid,
        spline_order=k,
        scale_noise=0.1,
        scale_base=1.0,
        scale_spline=1.0,
        base_activation=base_activation,
        grid_eps=0.02,
        grid_range=[-1, 1],
    )


@pytest.mark.parametrize("k,grid", [(1, 3), (2, 5), (3, 5), (3, 20), (4, 7), (5, 4)])
def test_layer_matches_efficient_kan(k, grid):
    torch.manual_seed(0)
    in_f, out_f = 7, 5
    ref = _efficient_kan_layer(in_f, out_f, grid, k)
    ours = NativeKANLayer(in_f, out_f, grid=grid, k=k)
    with torch.no_grad():
        ours.base_weight.copy_(ref.base_weight)
        ours.spline_weight.copy_(ref.spline_weight)
        ours.spline_scaler.copy_(ref.spline_scaler)
    torch.testing.assert_close(ours.grid, ref.grid, atol=1e-6, rtol=0)
    # inside, outside (the knot span ends at +-(1 + 2k/G)) and on the knots
    x = torch.cat([torch.randn(64, in_f) * 2.0, ref.grid.T[:, :in_f].clone()])
    # a linear spline's derivative jumps at the knots, where the side is a rounding decision
    _assert_same_layer(ours, ref, x, input_grad_rows=slice(0, 64) if k == 1 else slice(None))


def _assert_same_layer(ours, ref, x, input_grad_rows=slice(None)):
    """Same outputs, input gradients (on ``input_grad_rows``) and parameter gradients."""
    x_ref = x.clone().requires_grad_(True)
    x_our = x.clone().requires_grad_(True)
    y_ref, y_our = ref(x_ref), ours(x_our)
    torch.testing.assert_close(y_our, y_ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y_ref)
    y_ref.backward(g)
    y_our.backward(g)
    rows = input_grad_rows
    torch.testing.assert_close(x_our.grad[rows], x_ref.grad[rows], atol=1e-5, rtol=1e-5)
    for name in ("base_weight", "spline_weight", "spline_scaler"):
        torch.testing.assert_close(
            getattr(ours, name).grad, getattr(ref, name).grad, atol=1e-5, rtol=1e-5
        )


# -- the base activation ------------------------------------------------------------------------

ACTIVATION_NAMES = sorted(MLP_ACTIVATIONS)


def test_native_supports_every_mlp_activation():
    assert set(native_activations.ACTIVATIONS) == set(MLP_ACTIVATIONS)
    for name, module in MLP_ACTIVATIONS.items():
        assert NativeKANLayer(2, 1, base_activation=module).activation.name == name
    with pytest.raises(ValueError, match="swish"):
        NativeKANLayer(2, 1, base_activation="swish")


@pytest.mark.parametrize("mode", ["fused", "dense", "sparse", "reference"])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_layer_matches_efficient_kan_for_every_activation(activation, mode):
    torch.manual_seed(0)
    in_f, out_f, grid, k = 6, 4, 4, 3
    ref = _efficient_kan_layer(in_f, out_f, grid, k, MLP_ACTIVATIONS[activation])
    ours = NativeKANLayer(in_f, out_f, grid=grid, k=k, contraction=mode, base_activation=activation)
    with torch.no_grad():
        ours.base_weight.copy_(ref.base_weight)
        ours.spline_weight.copy_(ref.spline_weight)
        ours.spline_scaler.copy_(ref.spline_scaler)
    # inside and outside the knot span, on the knots (G = 4: 0 is one, the kink of relu)
    x = torch.cat([torch.randn(40, in_f) * 2.0, ref.grid.T[:, :in_f].clone(), torch.zeros(1, in_f)])
    _assert_same_layer(ours, ref, x)


def _activation_kernel_call(layer, mode, compiled):
    """The custom autograd function of a contraction for the layer's activation, as
    ``f(x, w, s, b)``: the kernels made here (not cached), compiled or eager."""
    from adapters.native import fused, sparse
    from adapters.native.layer import _DenseKAN, _Uniform

    config = (*layer.uniform, layer.grid_size, layer.k)
    act = layer.activation.name
    if mode == "dense":
        return lambda xx, w, s, b: _DenseKAN.apply(xx, w, s, b, _Uniform(*config, activation=act)), None
    shape = (layer.in_features, layer.out_features)
    if mode == "fused":
        kernels = fused.Kernels(*config, compile=compiled, shape=shape, activation=act)
        return lambda xx, w, s, b: fused.FusedKAN.apply(xx, w, s, b, kernels), kernels
    kernels = fused.Kernels(*config, compile=compiled, shape=shape, make=sparse.make_kernels, activation=act)
    return lambda xx, w, s, b: sparse.SparseKAN.apply(xx, w, s, b, kernels), kernels


def _activation_gradcheck(activation, mode, compiled):
    layer = NativeKANLayer(3, 2, grid=5, k=3, base_activation=activation).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
        layer.spline_scaler.normal_()
    # points in and outside the knot span, none at 0 (relu's kink) or on a knot
    x = (torch.rand(16, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1) * 3.0
    params = [p.detach().clone().requires_grad_(True) for p in (layer.spline_weight, layer.spline_scaler, layer.base_weight)]
    f, kernels = _activation_kernel_call(layer, mode, compiled)
    inp = x.requires_grad_(True)
    assert torch.autograd.gradcheck(f, (inp, *params), eps=1e-7, atol=1e-6, rtol=1e-5)
    return kernels


@pytest.mark.parametrize("mode", ["fused", "dense", "sparse"])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activation_gradcheck_eager(activation, mode):
    _activation_gradcheck(activation, mode, compiled=False)


@pytest.mark.parametrize("mode,activation", [("fused", "gelu"), ("sparse", "relu"), ("fused", "leaky_relu")])
def test_activation_gradcheck_compiled(mode, activation, compile_on):
    from adapters.native import fused

    if not fused.enabled():
        pytest.skip("torch.compile unavailable here")
    kernels = _activation_gradcheck(activation, mode, compiled=True)
    assert kernels.is_compiled  # no fallback to the eager twins happened


def test_kernels_are_cached_per_activation():
    from adapters.native import fused, sparse

    config = (-1.0, 0.4, 5, 3)
    assert fused.kernels(*config, (3, 2), activation="relu") is not fused.kernels(*config, (3, 2))
    assert fused.kernels(*config, (3, 2), activation="relu") is fused.kernels(*config, (3, 2), activation="relu")
    assert sparse.kernels(*config, (3, 2), activation="tanh").activation.name == "tanh"


@pytest.mark.parametrize("mode", ["auto", "fused", "dense", "sparse", "reference"])
def test_relu_changes_native_as_it_changes_efficient_kan(mode):
    """Through the adapters: the same seed builds the same weights whatever the activation (as
    in efficient-kan); with efficient-kan's weights copied in, native's function is
    efficient-kan's for silu and for relu, and the two differ."""
    ek = adapters.get("efficient_kan")
    if ek.unavailable_reason() is not None:
        pytest.skip(ek.unavailable_reason())
    native = adapters.get("native")
    x = torch.randn(64, 5) * 1.5
    outputs = {}
    for activation in ("silu", "relu"):
        spec = ModelSpec(hidden=(6,), grid=5, k=3, activation=activation)
        ours = native.build(spec.model_copy(update={"options": {"contraction": mode}}), 5, 3, seed=0)
        theirs = ek.build(spec, 5, 3, seed=0)
        for a, b in zip(ours.layers, theirs.layers):
            assert isinstance(b.base_activation, MLP_ACTIVATIONS[activation])
            with torch.no_grad():
                for name in ("base_weight", "spline_weight", "spline_scaler"):
                    getattr(a, name).copy_(getattr(b, name))
        with torch.no_grad():
            outputs[activation] = (ours(x), theirs(x))
        torch.testing.assert_close(*outputs[activation], atol=1e-5, rtol=1e-5)
    (ours_silu, theirs_silu), (ours_relu, theirs_relu) = outputs["silu"], outputs["relu"]
    assert (ours_relu - ours_silu).abs().max() > 1e-2
    torch.testing.assert_close(ours_relu - ours_silu, theirs_relu - theirs_silu, atol=1e-5, rtol=1e-5)
    built = [native.build(ModelSpec(hidden=(6,), activation=a), 5, 3, seed=0) for a in ("silu", "relu")]
    assert all(torch.equal(p, q) for p, q in zip(built[0].parameters(), built[1].parameters()))


def test_unknown_activation_is_an_adapter_error():
    a = adapters.get("native")
    for call in (lambda s: a.build(s, 3, 2, seed=0), lambda s: a.param_count(s, 3, 2), a.check_spec):
        with pytest.raises(adapters.AdapterError, match="activation 'swish'.*gelu.*silu"):
            call(ModelSpec(activation="swish"))
    with pytest.raises(adapters.AdapterError, match="contraction 'fast'"):
        a.check_spec(ModelSpec(options={"contraction": "fast"}))


# -- provenance of each model -----------------------------------------------------------------

def test_provenance_describes_each_model(compile_on):
    """Two models of the same (singleton) adapter report their own kernels, whatever the other
    one did meanwhile; without a model, the library's provenance."""
    a = adapters.get("native")
    spec = ModelSpec(hidden=(3,), grid=5, k=3)
    eager = a.build(spec.model_copy(update={"options": {"contraction": "reference"}}), 2, 1, seed=0)
    compiling = a.build(spec, 2, 1, seed=0)
    idle = a.build(spec, 2, 1, seed=1)
    assert set(a.provenance()) == {"provider", "version"}
    assert a.provenance(eager)["compiled_kernel"] == "false"
    if not compiling.layers[0].compiles():
        pytest.skip("torch.compile unavailable here")
    assert a.provenance(compiling)["compiled_kernel"] == "unknown"
    x = torch.rand(8, 2) * 2 - 1
    assert a.warm_up(compiling, x) is True
    ran = compiling.layers[0].uses_compiled_kernels()
    assert a.provenance(compiling)["compiled_kernel"] == ("true" if ran else "false")
    assert a.provenance(eager)["compiled_kernel"] == "false"
    assert a.provenance(idle)["compiled_kernel"] == "unknown"  # not warmed up yet
    assert a.warm_up(eager, x) is False and a.provenance(eager)["compiled_kernel"] == "false"
    assert a.provenance(compiling)["compiled_kernel"] == ("true" if ran else "false")
    assert {k: v for k, v in a.provenance(compiling).items() if k != "compiled_kernel"} == a.provenance()


def test_provenance_with_compiling_off_is_false_from_the_start(monkeypatch):
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "0")
    a = adapters.get("native")
    model = a.build(ModelSpec(hidden=(3,)), 2, 1, seed=0)
    assert a.provenance(model)["compiled_kernel"] == "false"
    with pytest.raises(adapters.AdapterError, match="NativeKAN"):
        a.provenance(torch.nn.Linear(2, 1))


SPECS = [
    ModelSpec(hidden=(8,), grid=5, k=3),
    ModelSpec(hidden=(4, 3), grid=7, k=1),
    ModelSpec(hidden=(), grid=2, k=5, grid_range=(-2.0, 3.0)),
]


@pytest.mark.parametrize("spec", SPECS)
def test_param_count_matches_built_model(spec):
    a = adapters.get("native")
    model = a.build(spec, in_dim=6, out_dim=2, seed=0)
    assert a.count_params(model) == a.param_count(spec, 6, 2)
    widths = spec.widths(6, 2)
    edges = sum(x * y for x, y in zip(widths[:-1], widths[1:]))
    assert a.param_count(spec, 6, 2) == edges * (spec.grid + spec.k + 2)


def test_same_seed_same_model_and_global_rng_untouched():
    a = adapters.get("native")
    spec = SPECS[0]
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    m1 = a.build(spec, in_dim=6, out_dim=2, seed=7)
    m2 = a.build(spec, in_dim=6, out_dim=2, seed=7)
    m3 = a.build(spec, in_dim=6, out_dim=2, seed=8)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[n], s2[n]) for n in s1)
    assert not torch.equal(s1["layers.0.base_weight"], s3["layers.0.base_weight"])


def test_build_dtype_and_instrumentation():
    a = adapters.get("native")
    assert a.name == "native" and a.family == "kan"
    spec = SPECS[0]
    model = a.build(spec, in_dim=6, out_dim=2, seed=0, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(torch.randn(5, 6, dtype=torch.float64)).shape == (5, 2)
    coefs = a.spline_coefficients(model)
    assert [tuple(c.shape) for c in coefs] == [(8, 6, 8), (2, 8, 8)]
    reg = a.regularization(model)
    assert reg.ndim == 0 and torch.isfinite(reg)
    reg.backward()
    assert model.layers[0].spline_weight.grad is not None
    prov = a.provenance()
    assert prov["provider"] == "kanbench-native" and prov["version"]
    compiled = "unknown" if model.layers[0].compiles() else "false"  # before any warm-up
    assert a.provenance(model) == {**prov, "compiled_kernel": compiled}
    assert set(a.probe(model)) == {"coef_abs_mean", "coef_abs_max", "coef_rms"}


def test_initialisation_matches_efficient_kan_scales():
    torch.manual_seed(0)
    ref = _efficient_kan_layer(200, 50, 5, 3)
    ours = NativeKANLayer(200, 50, grid=5, k=3)
    for name in ("base_weight", "spline_scaler"):
        r, o = getattr(ref, name).detach(), getattr(ours, name).detach()
        assert abs(r.abs().max().item() - o.abs().max().item()) < 0.01 * r.abs().max().item()
        assert abs(r.std().item() - o.std().item()) < 0.05 * r.std().item()
    r, o = ref.spline_weight.detach(), ours.spline_weight.detach()
    assert 0.7 < o.std().item() / r.std().item() < 1.3


def test_update_grid_preserves_function_on_data():
    a = adapters.get("native")
    spec = ModelSpec(hidden=(5,), grid=5, k=3)
    model = a.build(spec, in_dim=3, out_dim=2, seed=0, dtype=torch.float64)
    x = torch.rand(400, 3, dtype=torch.float64) * 1.6 - 0.8
    before = model(x)
    assert a.update_grid(model, x) is True
    after = model(x)
    assert model.layers[0].uniform is None
    assert not torch.equal(model.layers[0].grid[0], model.layers[0].grid[1])
    scale = before.abs().max().item()
    assert (after - before).abs().max().item() < 0.05 * scale


# -- the uniform-grid kernel --------------------------------------------------------------------

def _edge_inputs(layer: NativeKANLayer, n: int = 12) -> torch.Tensor:
    """Random points inside and outside the knot span plus points exactly on knots."""
    g = torch.Generator().manual_seed(1)
    span = float(layer.grid[0, -1])
    x = (torch.rand(n, layer.in_features, generator=g, dtype=torch.float64) * 2 - 1) * 1.3 * span
    knots = layer.grid.T.to(torch.float64)  # (n_knots, in)
    return torch.cat([x, knots[:: max(1, len(knots) // 4)]])


def _contraction_call(layer, mode):
    """The layer's custom autograd function for a contraction, as ``f(x, w, s, b)``."""
    from adapters.native import sparse
    from adapters.native.layer import _DenseKAN, _Uniform

    config = (*layer.uniform, layer.grid_size, layer.k)
    if mode == "dense":
        return lambda xx, w, s, b: _DenseKAN.apply(xx, w, s, b, _Uniform(*config))
    kernels = sparse.kernels(*config, (layer.in_features, layer.out_features))
    return lambda xx, w, s, b: sparse.SparseKAN.apply(xx, w, s, b, kernels)


@pytest.mark.parametrize("mode", ["dense", "sparse"])
@pytest.mark.parametrize("k,grid", [(1, 3), (2, 4), (3, 5), (4, 2), (5, 3), (3, 12)])
def test_kernel_gradcheck(mode, k, grid):
    layer = NativeKANLayer(3, 2, grid=grid, k=k, contraction=mode).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
    x = _edge_inputs(layer)
    # knots are where a derivative of a degree-k spline may jump; keep the finite differences
    # off them for k = 1 and test the on-knot points through the analytic comparison below
    x_fd = x[:12] if k == 1 else x
    params = [p.detach().clone().requires_grad_(True) for p in (layer.spline_weight, layer.spline_scaler, layer.base_weight)]
    inp = x_fd.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(_contraction_call(layer, mode), (inp, *params), eps=1e-7, atol=1e-6, rtol=1e-5)


def _assert_matches_reference(layer, x, x_rows=slice(None)):
    """The layer's output and its gradients (input, spline weight, scaler, base weight) equal
    those of the plain-autograd reference path; ``x_rows`` limits the input-gradient check
    (linear splines: the derivative jumps at the knots). Returns the gradients."""
    x = x.detach().requires_grad_(True)
    double = x.dtype == torch.float64
    y_tol = dict(atol=1e-11, rtol=1e-10) if double else dict(atol=1e-5, rtol=1e-5)
    g_tol = dict(atol=1e-10, rtol=1e-9) if double else dict(atol=1e-5, rtol=1e-5)
    y = layer(x)
    g = torch.randn_like(y)
    params = [x, layer.spline_weight, layer.spline_scaler, layer.base_weight]
    got = torch.autograd.grad(y, params, g)
    y_ref = layer.reference_forward(x)
    want = torch.autograd.grad(y_ref, params, g)
    torch.testing.assert_close(y, y_ref, **y_tol)
    torch.testing.assert_close(got[0][x_rows], want[0][x_rows], **g_tol)
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a, b, **g_tol)
    return got


@pytest.mark.parametrize("mode", ["dense", "sparse"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_kernel_matches_reference_path(mode, k):
    layer = NativeKANLayer(5, 4, grid=6, k=k, contraction=mode).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
    rows = slice(0, 12) if k == 1 else slice(None)  # linear splines: derivative jumps at knots
    _assert_matches_reference(layer, _edge_inputs(layer), rows)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_sparse_kernel_over_several_input_blocks(compiled, monkeypatch):
    """Blocks of inputs (the last one shorter) and changing batch sizes give the reference
    function and gradients; compiled and eager kernels alike."""
    from adapters.native import sparse

    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1" if compiled else "0")
    n_in, grid, k = 170, 50, 3
    layer = NativeKANLayer(n_in, 4, grid=grid, k=k, contraction="sparse").double()
    assert len(sparse.layer_blocks(n_in, 4, grid, k)) == 3  # 77 + 77 + 16 inputs
    with torch.no_grad():
        layer.spline_weight.normal_()
        layer.spline_scaler.normal_()
    if compiled and not layer.compiles():
        pytest.skip("torch.compile unavailable here")
    for batch in (7, 33, 7):
        _assert_matches_reference(layer, torch.rand(batch, n_in, dtype=torch.float64) * 2.6 - 1.3)
    if compiled:
        assert layer.uses_compiled_kernels()


@pytest.mark.parametrize("k,grid", [(1, 30), (3, 40)])
def test_compiled_sparse_kernel_gradcheck(k, grid, compile_on):
    from adapters.native import sparse

    layer = NativeKANLayer(3, 2, grid=grid, k=k).double()
    assert layer._takes_sparse()  # "auto" takes the sparse contraction at this G
    with torch.no_grad():
        layer.spline_weight.normal_()
    kernels = sparse.kernels(*layer.uniform, grid, k, (3, 2))
    if not kernels.is_compiled:
        pytest.skip("torch.compile unavailable here")
    x = _edge_inputs(layer)
    x_fd = x[:12] if k == 1 else x  # linear splines: the derivative jumps at the knots
    params = [p.detach().clone().requires_grad_(True) for p in (layer.spline_weight, layer.spline_scaler, layer.base_weight)]
    inp = x_fd.clone().requires_grad_(True)
    f = _contraction_call(layer, "sparse")
    assert torch.autograd.gradcheck(f, (inp, *params), eps=1e-7, atol=1e-6, rtol=1e-5)
    assert kernels.is_compiled  # no fallback happened


def test_kernel_skips_input_gradient_when_not_needed():
    layer = NativeKANLayer(6, 3, grid=5, k=3)
    x = torch.randn(20, 6)  # no requires_grad
    layer(x).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_non_uniform_path_after_update_grid_matches_efficient_kan_basis():
    layer = NativeKANLayer(3, 2, grid=5, k=3).double()
    x = torch.randn(300, 3, dtype=torch.float64)
    layer.update_grid(x)
    assert layer.uniform is None
    # the general path is plain autograd through Cox-de Boor
    xx = x[:10].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: layer(v), (xx,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("new_grid,bound", [(10, 1e-5), (20, 1e-5), (50, 1e-5), (7, 0.1)])
def test_extend_grid_preserves_function(new_grid, bound):
    torch.manual_seed(0)
    layer = NativeKANLayer(4, 3, grid=5, k=3).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
    x = torch.rand(300, 4, dtype=torch.float64) * 2 - 1  # inside the grid range
    before = layer(x)
    deviation = layer.extend_grid(new_grid)
    after = layer(x)
    assert layer.spline_weight.shape == (3, 4, new_grid + 3)
    assert layer.uniform is not None  # still the fast path
    # multiples of G contain the old spline space: exact up to rounding; otherwise the
    # least-squares error of the coarser function on the finer grid (reported in the docstring)
    assert deviation < bound
    assert (after - before).abs().max().item() < bound * 10


def test_extend_grid_keeps_a_data_adapted_grid_and_the_function():
    torch.manual_seed(0)
    layer = NativeKANLayer(2, 3, grid=3, k=3).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
        layer.update_grid(torch.randn(500, 2, dtype=torch.float64) ** 3)  # skewed: non-uniform
    old_interior = layer.grid[:, 3:7].clone()
    x = old_interior[:, 0] + torch.rand(400, 2, dtype=torch.float64) * (
        old_interior[:, -1] - old_interior[:, 0])
    before = layer(x)
    deviation = layer.extend_grid(6)
    assert layer.uniform is None and layer.spline_weight.is_contiguous()
    # every old knot is still a knot (each old cell split in two), so the spaces nest
    assert torch.allclose(layer.grid[:, 3:10:2], old_interior)
    assert deviation < 1e-9
    assert (layer(x) - before).abs().max().item() < 1e-9


# -- the fused (torch.compile'd) kernel, its eager fallback, non-finite inputs -----------------

def _fused_call(layer, kernels):
    from adapters.native.fused import FusedKAN

    def f(xx, w, s, b):
        return FusedKAN.apply(xx, w, s, b, kernels)

    return f


@pytest.mark.parametrize("layout", ["basis-major", "batch-inner", "batch-inner-blas", "weight-blocks"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("k,grid", [(1, 3), (2, 4), (3, 5), (4, 2), (5, 3)])
def test_fused_kernel_gradcheck(compiled, k, grid, layout, monkeypatch):
    from adapters.native import fused

    if compiled:
        monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1")

    if compiled and (k, grid) not in ((1, 3), (3, 5), (5, 3)):
        pytest.skip("compiled variant on a subset: each configuration costs a compile")
    if compiled and not fused.enabled():
        pytest.skip("torch.compile unavailable here")
    n_in = 3
    if layout == "batch-inner-blas":  # products by BLAS, not inductor's loops
        monkeypatch.setattr(fused, "SMALL_LOOP_FLOATS", 0)
    if layout == "weight-blocks":
        # W packed a block of 3 inputs at a time (3, 3, 1) on a layer small enough for
        # finite differences
        n_in = 7
        monkeypatch.setattr(fused, "BATCH_INNER_MAX_IN", 0)
        monkeypatch.setattr(fused, "BLOCKED_MIN_FLOATS", 0)
        monkeypatch.setattr(fused, "MIN_BLOCK_COLUMNS", 1)
        monkeypatch.setattr(fused, "WEIGHT_BLOCK_FLOATS", 2 * (grid + k + 1) * 3)
    layer = NativeKANLayer(n_in, 2, grid=grid, k=k).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
        layer.spline_scaler.normal_()
    # kernels made for no particular shape build C basis-major; a 3-input layer's batch-inner.
    # Made here, not taken from the cache: the block settings above are not part of its key.
    shape = None if layout == "basis-major" else (n_in, 2)
    kernels = fused.Kernels(*layer.uniform, grid, k, compile=compiled, shape=shape)
    assert kernels.options == {"batch_inner": layout.startswith("batch-inner"),
                               "loops": layout == "batch-inner",
                               "blocks": 3 if layout == "weight-blocks" else 0,
                               "grad_out_batch_inner": layout == "batch-inner"}
    x = _edge_inputs(layer)
    x_fd = x[:12] if k == 1 else x  # linear splines: the derivative jumps at the knots
    params = [p.detach().clone().requires_grad_(True) for p in (layer.spline_weight, layer.spline_scaler, layer.base_weight)]
    inp = x_fd.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(_fused_call(layer, kernels), (inp, *params), eps=1e-7, atol=1e-6, rtol=1e-5)
    assert kernels.is_compiled == compiled  # a compile failure would have fallen back to eager


@pytest.mark.parametrize("n_in", [5, 20], ids=["batch-inner", "basis-major"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_fused_kernel_matches_reference_path(k, dtype, n_in):
    layer = NativeKANLayer(n_in, 4, grid=6, k=k, contraction="fused").to(dtype)
    with torch.no_grad():
        layer.spline_weight.normal_()
    rows = slice(0, 12) if k == 1 else slice(None)
    _assert_matches_reference(layer, _edge_inputs(layer).to(dtype), rows)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_fused_kernel_in_weight_blocks(compiled, monkeypatch):
    """A layer whose packed weight is built a block of inputs at a time (the last block
    shorter) computes the reference function and gradients."""
    from adapters.native import fused

    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1" if compiled else "0")
    n_in, n_out, grid, k = 300, 300, 20, 3
    assert [e - s for s, e in fused._weight_blocks(n_in, n_out, grid + k + 1)] == [145, 145, 10]
    layer = NativeKANLayer(n_in, n_out, grid=grid, k=k, contraction="fused").double()
    with torch.no_grad():
        layer.spline_weight.normal_()
        layer.spline_scaler.normal_()
    if compiled and not fused.enabled():
        pytest.skip("torch.compile unavailable here")
    grads = _assert_matches_reference(layer, torch.rand(9, n_in, dtype=torch.float64) * 2.6 - 1.3)
    assert all(g.is_contiguous() for g in grads)
    kernels = fused.kernels(*layer.uniform, grid, k, (n_in, n_out))  # the ones the layer ran
    assert kernels.options["blocks"] == 3 and kernels.is_compiled == compiled


def test_auto_falls_back_to_eager_when_compile_is_off_or_fails(monkeypatch):
    from adapters.native import fused

    torch.manual_seed(0)
    n_in = 6
    ref = NativeKANLayer(n_in, 3, grid=5, k=3, contraction="dense")
    x = torch.rand(40, n_in) * 2 - 1

    def check():
        layer = NativeKANLayer(n_in, 3, grid=5, k=3)
        assert layer.compiles() == fused.enabled()
        layer.load_state_dict(ref.state_dict())
        y = layer(x)
        y.sum().backward()
        torch.testing.assert_close(y, ref(x), atol=1e-6, rtol=1e-6)
        assert layer.spline_weight.grad is not None

    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "0")
    check()
    monkeypatch.delenv("KANBENCH_NATIVE_COMPILE")

    break_torch_compile(monkeypatch)
    check()  # the first call falls back to the eager twin, later ones to dense/sparse
    check()
    assert not fused.kernels(*ref.uniform, 5, 3, (n_in, 3)).is_compiled  # the layer ran eager


def test_sparse_kernels_fall_back_to_eager_when_compile_fails(monkeypatch):
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1")
    break_torch_compile(monkeypatch)
    layer = NativeKANLayer(6, 3, grid=40, k=3).double()
    assert layer.compiles() and layer._takes_sparse()
    x = torch.rand(20, 6, dtype=torch.float64) * 2.4 - 1.2
    for _ in range(2):  # the first call falls back inside the call, later ones from the start
        _assert_matches_reference(layer, x)
    assert not layer.uses_compiled_kernels()


@pytest.mark.parametrize("mode", ["auto", "fused", "dense", "sparse", "reference"])
def test_non_finite_inputs_give_nan_not_a_crash(mode):
    layer = NativeKANLayer(4, 3, grid=5, k=3, contraction=mode)
    x = torch.rand(6, 4) * 2 - 1
    x[1, 2] = float("nan")
    x[3, 0] = float("inf")
    x[4, 1] = -float("inf")
    x.requires_grad_(True)
    y = layer(x)
    assert torch.isnan(y[1]).all() and torch.isnan(y[4]).all()  # silu(NaN), silu(-inf) = NaN
    assert not torch.isfinite(y[3]).any()
    assert torch.isfinite(y[[0, 2, 5]]).all()
    loss = torch.nn.functional.cross_entropy(y, torch.zeros(6, dtype=torch.long))
    assert torch.isnan(loss)
    loss.backward()  # no crash in the backward either
