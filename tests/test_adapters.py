"""The contract every registered adapter keeps (plugins included)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import adapters
from adapters import Adapter, AdapterError, ModelSpec, UnknownAdapterError

REQUIRED = {"mlp", "pykan", "efficient_kan", "native"}
SPEC = ModelSpec(hidden=(5,), grid=4, k=3)


def available(name: str) -> Adapter:
    a = adapters.get(name)
    reason = a.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{name} unavailable: {reason}")
    return a


def test_required_adapters_registered():
    assert REQUIRED <= set(adapters.names())


def test_unknown_adapter_lists_known_names():
    with pytest.raises(UnknownAdapterError) as info:
        adapters.get("no_such_kan")
    message = str(info.value)
    assert "no_such_kan" in message
    for name in REQUIRED:
        assert name in message


@pytest.mark.parametrize("name", adapters.names())
def test_build_forward_backward_and_count(name):
    a = available(name)
    model = a.build(SPEC, in_dim=6, out_dim=3, seed=0, device="cpu")
    x = torch.randn(17, 6)
    out = model(x)
    assert out.shape == (17, 3)
    assert torch.isfinite(out).all()
    out.pow(2).mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable
    for p in trainable:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert any(p.grad.abs().sum() > 0 for p in trainable)
    counted = sum(p.numel() for p in trainable)
    assert a.count_params(model) == counted
    assert a.param_count(SPEC, 6, 3) == counted
    assert a.family in ("kan", "mlp")
    assert a.provenance().get("provider")


@pytest.mark.parametrize("name", adapters.names())
def test_param_count_matches_built_model_across_shapes(name):
    a = available(name)
    for spec, i, o in [(ModelSpec(hidden=(3, 4), grid=3, k=3), 2, 1),
                       (ModelSpec(hidden=(7,), grid=6, k=3), 9, 4)]:
        model = a.build(spec, i, o, seed=1)
        assert a.param_count(spec, i, o) == a.count_params(model), (spec, i, o)


@pytest.mark.parametrize("name", adapters.names())
def test_seeded_and_isolated(name):
    a = available(name)
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    m1 = a.build(SPEC, 4, 2, seed=7)
    m2 = a.build(SPEC, 4, 2, seed=7)
    m3 = a.build(SPEC, 4, 2, seed=8)
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])
    p1, p2, p3 = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (m1, m2, m3))
    assert torch.equal(p1, p2)
    assert not torch.equal(p1, p3)


@pytest.mark.parametrize("name", adapters.names())
def test_spline_coefficients_are_trainable_tensors_of_the_model(name):
    a = available(name)
    model = a.build(SPEC, 3, 2, seed=0)
    coefs = a.spline_coefficients(model)
    assert coefs
    params = {id(p) for p in model.parameters()}
    assert all(id(c) in params for c in coefs)
    stats = a.probe(model)
    assert stats and all(np.isfinite(v) for v in stats.values())


def test_mlp_shape_and_activation():
    a = adapters.get("mlp")
    model = a.build(ModelSpec(hidden=(8, 8), activation="relu"), 30, 2, seed=0)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(30, 8), (8, 8), (8, 2)]
    assert isinstance(model[-1], torch.nn.Linear)  # no activation on the output
    assert sum(isinstance(m, torch.nn.ReLU) for m in model) == 2
    with pytest.raises(AdapterError, match="unknown activation 'swish'"):
        a.build(ModelSpec(activation="swish"), 3, 2, seed=0)


def test_unknown_option_is_rejected():
    with pytest.raises(AdapterError, match="does not understand option"):
        adapters.get("mlp").build(ModelSpec(options={"dropout": 0.1}), 3, 2, seed=0)


class _LinearAdapter(Adapter):
    """A third-party adapter as a user would write it."""

    name = "test_linear_plugin"
    family = "mlp"

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        with adapters.isolated_rng(seed):
            return torch.nn.Linear(in_dim, out_dim).to(device=device, dtype=dtype)

    def param_count(self, spec, in_dim, out_dim):
        return in_dim * out_dim + out_dim

    def spline_coefficients(self, model):
        return [model.weight]


def test_register_plugin_adapter():
    if "test_linear_plugin" not in adapters.names():
        adapters.register(_LinearAdapter)
    a = adapters.get("test_linear_plugin")
    assert "test_linear_plugin" in adapters.names()
    model = a.build(ModelSpec(), 4, 2, seed=0)
    assert a.count_params(model) == a.param_count(ModelSpec(), 4, 2) == 10
    with pytest.raises(AdapterError, match="already registered"):
        adapters.register(_LinearAdapter)
