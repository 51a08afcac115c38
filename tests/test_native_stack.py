"""The native model as one stack: a whole model's layers in one compiled forward and one
backward (adapters/native/fused.py ``_make_stack_kernels``) where every layer runs the fused
contraction; the same function and gradients as the layers one by one."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from adapters.native import fused
from adapters.native.layer import NativeKAN
from helpers import break_torch_compile


@pytest.fixture
def compiling(monkeypatch):
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1")
    if not fused.enabled():
        pytest.skip("torch.compile unavailable here")


def _model(widths, grid=5, k=3, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = NativeKAN(widths, grid=grid, k=k).to(dtype)
    with torch.no_grad():
        for layer in model.layers:
            layer.spline_weight.normal_()
            layer.spline_scaler.normal_()
    return model


def _inputs(widths, n=24, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, widths[0], generator=g, dtype=dtype) * 2.6 - 1.3)  # some outside the grid


def _layer_by_layer(model, x):
    for layer in model.layers:
        x = layer(x)
    return x


# [3, 4, 2]: every layer batch-inner, contracted in loops; [20, 3, 2]: a basis-major first
# layer (BLAS) and a small second one; [2, 5, 1]: one output (its weight gradient row);
# [20, 3, 4, 2]: a basis-major layer and a loop one, each handing the next its output transposed
WIDTHS = [(3, 4, 2), (20, 3, 2), (2, 5, 1), (20, 3, 4, 2)]


@pytest.mark.parametrize("widths,products", [*((w, "loops") for w in WIDTHS),
                                              ((3, 4, 2), "blas"), ((20, 3, 4, 2), "blas")], ids=str)
def test_the_stack_gives_the_layers_function_and_gradients(widths, products, compiling, monkeypatch):
    if products == "blas":  # small batch-inner layers by BLAS too, not inductor's loops
        monkeypatch.setattr(fused, "SMALL_LOOP_FLOATS", 0)
        monkeypatch.setattr(fused, "_cache", {})  # kernels built under the default
    model = _model(widths)
    assert model._stack_kernels() is not None
    x = _inputs(widths).requires_grad_(True)
    stacked = model(x)
    stacked.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()] + [x.grad.clone()]
    model.zero_grad()
    x.grad = None
    layered = _layer_by_layer(model, x)
    layered.square().sum().backward()
    torch.testing.assert_close(stacked, layered, atol=1e-12, rtol=1e-12)
    for got, want in zip(grads, [p.grad for p in model.parameters()] + [x.grad]):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
        assert got.is_contiguous() and got.untyped_storage().nbytes() == got.numel() * got.element_size()


@pytest.mark.parametrize("needs_input_grad", [True, False])
def test_the_stack_passes_gradcheck(needs_input_grad, compiling):
    widths = (3, 4, 2)
    model = _model(widths)
    stack = model._stack_kernels()
    # the parameters in the stack's order: per layer spline weight, scaler, base weight
    order = [(i, name) for i in range(len(model.layers)) for name in ("spline_weight", "spline_scaler", "base_weight")]
    named = dict(model.named_parameters())
    params = [named[f"layers.{i}.{name}"].detach().clone().requires_grad_(True) for i, name in order]
    x = _inputs(widths, n=10).requires_grad_(needs_input_grad)
    assert torch.autograd.gradcheck(lambda x, *p: fused.FusedKANStack.apply(stack, x, *p),
                                    (x, *params), eps=1e-7, atol=1e-6, rtol=1e-5)
    assert stack.is_compiled


def test_training_runs_the_same_either_way(compiling):
    """Float32 training steps, stacked and layer by layer, end at the same parameters."""
    widths = (6, 8, 3)
    x, y = _inputs(widths, n=64, dtype=torch.float32), torch.arange(64) % 3

    def train(stacked: bool):
        model = _model(widths, dtype=torch.float32)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(10):
            opt.zero_grad()
            out = model(x) if stacked else _layer_by_layer(model, x)
            torch.nn.functional.cross_entropy(out, y).backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.testing.assert_close(train(True), train(False), atol=1e-5, rtol=1e-5)


def test_layers_run_one_by_one_where_the_stack_does_not_apply(compiling, monkeypatch):
    # a large grid takes the sparse contraction
    assert _model((3, 4, 2), grid=40)._stack_kernels() is None
    # a layer whose packed weight is built in input blocks
    monkeypatch.setattr(fused, "BLOCKED_MIN_FLOATS", 0)
    assert _model((20, 3, 2))._stack_kernels() is None
    monkeypatch.undo()
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1")
    # knots moved to the data; compiling switched off; compiling declined by the warm-up
    model = _model((3, 4, 2))
    assert model._stack_kernels() is not None
    model.layers[0].update_grid(_inputs((3, 4, 2)))
    assert model._stack_kernels() is None
    model = _model((3, 4, 2))
    model.layers[1].compile_allowed = False
    assert model._stack_kernels() is None
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "0")
    assert _model((3, 4, 2))._stack_kernels() is None


def test_a_model_copies_and_pickles_without_its_stack(compiling):
    model = _model((3, 4, 2))
    x = _inputs((3, 4, 2))
    y = model(x)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert copied._stack is None
        torch.testing.assert_close(copied(x), y, atol=0, rtol=0)
        assert copied._stack_kernels() is not None


def test_a_stack_that_fails_to_compile_falls_back_to_the_layers(compiling, monkeypatch):
    break_torch_compile(monkeypatch)
    model = _model((3, 4, 2))
    x = _inputs((3, 4, 2))
    reference = _model((3, 4, 2))
    for layer in reference.layers:
        layer.contraction = "reference"
    for _ in range(2):
        torch.testing.assert_close(model(x), reference(x), atol=1e-12, rtol=1e-12)
    assert model._stack_kernels() is None and not model.uses_compiled_kernels()


def test_a_replaced_layer_gets_a_stack_of_its_own(compiling):
    from adapters.native.layer import NativeKANLayer

    model = _model((3, 4, 2))
    x = _inputs((3, 4, 2))
    assert model(x).shape == (24, 2)
    model.layers[1] = NativeKANLayer(4, 5, grid=5, k=3).double()
    torch.testing.assert_close(model(x), _layer_by_layer(model, x), atol=1e-12, rtol=1e-12)
    assert model(x).shape == (24, 5) and model._stack_kernels() is not None
