"""Compiled stack kernels called around dynamo (adapters/native/direct.py): the same results as
through dynamo, and every case it cannot vouch for sent through dynamo."""

from __future__ import annotations

import pytest
import torch

from adapters.native import direct, fused
from adapters.native.layer import NativeKAN


@pytest.fixture
def compiling(monkeypatch):
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1")
    if not fused.enabled() or not direct.available():
        pytest.skip("torch.compile (or the inductor entry point direct calls use) unavailable here")
    monkeypatch.setattr(fused, "_cache", {})  # kernels built here, under this test's switches


def _call(fn):
    return direct.DirectCall(fn, dict(fused._INDUCTOR_OPTIONS))


def _step(model, x):
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()] + [x.grad.clone()]


@pytest.mark.parametrize("widths", [(3, 4, 2), (20, 3, 2)], ids=str)
def test_the_stack_runs_around_dynamo_with_the_same_results(widths, compiling, monkeypatch):
    x = torch.rand(24, widths[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2.6 - 1.3

    def run(switch: str):
        monkeypatch.setenv(direct.ENV_SWITCH, switch)
        torch.manual_seed(0)
        model = NativeKAN(widths, grid=5, k=3).double()
        results = [_step(model, x) for _ in range(3)]
        return model._stack_kernels(), results

    stack, results = run("1")
    compiled = stack._compiled
    assert all(isinstance(compiled[name], direct.DirectCall) for name in ("forward", "backward_all"))
    # the first call of each went through dynamo (and checked a direct call against it)
    assert compiled["forward"].direct_calls == 2 and compiled["backward_all"].direct_calls == 2
    plain_stack, plain = run("0")
    assert not any(isinstance(fn, direct.DirectCall) for fn in plain_stack._compiled.values())
    for (out, grads), (want_out, want_grads) in zip(results, plain):
        assert torch.equal(out, want_out)
        assert all(torch.equal(g, w) for g, w in zip(grads, want_grads))


def test_a_pure_function_is_called_directly_after_one_call(compiling):
    call = _call(lambda x, *ps: (x * 2 + ps[0], (ps[0] * ps[1]).sum()))
    x, a, b = torch.rand(8, 3), torch.rand(8, 3), torch.rand(8, 3)
    for i in range(3):
        y, s = call(x, a, b)
        torch.testing.assert_close(y, x * 2 + a)
        torch.testing.assert_close(s, (a * b).sum())
        assert call.direct_calls == i
    # another dtype is another graph: through dynamo first, then direct
    y, _ = call(x.double(), a.double(), b.double())
    assert y.dtype == torch.float64 and call.direct_calls == 2
    call(x.double(), a.double(), b.double())
    assert call.direct_calls == 3


def test_a_graph_that_returns_an_input_is_never_called_directly(compiling):
    call = _call(lambda x, y: (x * 2, y))
    x, y = torch.rand(4), torch.rand(4)
    for _ in range(3):
        doubled, same = call(x, y)
        assert same is y  # dynamo's answer: the input itself, which no graph output is
        torch.testing.assert_close(doubled, x * 2)
    assert call.direct_calls == 0


def test_strides_the_graph_was_not_built_for_go_through_dynamo(compiling):
    call = _call(lambda x: (x * 3).sum(0))
    x = torch.rand(5, 6)
    call(x)
    call(x)
    assert call.direct_calls == 1
    xt = torch.rand(6, 5).t()  # the same shape, transposed strides
    torch.testing.assert_close(call(xt), (xt * 3).sum(0))
    torch.testing.assert_close(call(x), (x * 3).sum(0))


def test_arguments_it_cannot_key_go_through_dynamo(compiling):
    call = _call(lambda xs, w: xs[0] * w)
    x, w = torch.rand(3), torch.rand(3)
    for _ in range(3):
        torch.testing.assert_close(call([x], w), x * w)
    assert call.direct_calls == 0


def test_grad_mode_is_part_of_the_key(compiling):
    call = _call(lambda x: x.sin())
    x = torch.rand(4)
    with torch.no_grad():
        call(x)
        call(x)
    assert call.direct_calls == 1
    xg = x.clone().requires_grad_(True)
    out = call(xg)  # grad mode on: a graph of its own, through dynamo first
    assert call.direct_calls == 1 and out.requires_grad
    out.sum().backward()
    torch.testing.assert_close(xg.grad, x.cos())


def test_the_switch_turns_direct_calls_off(compiling, monkeypatch):
    monkeypatch.setenv(direct.ENV_SWITCH, "0")
    model = NativeKAN((3, 4, 2), grid=5, k=3)
    model(torch.rand(8, 3))
    assert not any(isinstance(fn, direct.DirectCall) for fn in model._stack_kernels()._compiled.values())


def test_calls_under_autocast_go_through_dynamo(compiling):
    call = _call(lambda x, w: x @ w)
    x, w = torch.rand(4, 3), torch.rand(3, 2)
    call(x, w)
    call(x, w)
    assert call.direct_calls == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = call(x, w)
    assert out.dtype == torch.bfloat16 and call.direct_calls == 1  # dynamo's graph with the casts


def test_batch_sizes_that_vary_stay_correct(compiling):
    """A third batch size runs dynamo's size-generic graph directly; a batch of one (which
    dynamo compiles apart) never takes it."""
    call = _call(lambda x, w: (x @ w).relu())
    w = torch.rand(3, 2) - 0.5
    for batch in (24, 30, 40, 40, 1, 1, 7):
        x = torch.rand(batch, 3) - 0.5
        torch.testing.assert_close(call(x, w), (x @ w).relu())
    # 24 and 1 compiled to their sizes, 30 to a size-generic graph: 40 (twice), the second 1
    # and 7 went direct
    assert call.direct_calls == 4
