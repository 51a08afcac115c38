"""The contract every registered adapter keeps (plugins included)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import adapters
from adapters import Adapter, AdapterError, ModelSpec, UnknownAdapterError
from helpers import available

REQUIRED = {"mlp", "pykan", "efficient_kan", "native"}
SPEC = ModelSpec(hidden=(5,), grid=4, k=3)


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
def test_provenance_of_a_model_and_of_the_library(name):
    a = available(name)
    model = a.build(SPEC, 3, 2, seed=0)
    library, own = a.provenance(), a.provenance(model)
    assert {"provider", "version"} <= set(library) and library["provider"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in own.items())
    # the model's provenance adds to the library's, never contradicts it
    assert {k: own[k] for k in library} == library


@pytest.mark.parametrize("name", adapters.names())
def test_adapter_keeps_no_per_model_state(name):
    """Adapters are singletons and runs may overlap: building, warming up and running a model
    leave the adapter as it was (library state such as a resolved provider aside, which the
    first build settles)."""
    a = available(name)
    a.build(SPEC, 3, 2, seed=0)
    before = dict(vars(a))
    model = a.build(ModelSpec(hidden=(2,), grid=3, k=3), 3, 2, seed=1)
    x = torch.rand(4, 3)
    a.warm_up(model, x)
    model(x).sum().backward()
    a.provenance(model)
    assert vars(a) == before


# -- the model spec: every field honoured or rejected -----------------------------------------

@pytest.mark.parametrize("name", adapters.names())
def test_spec_fields_are_model_spec_fields(name):
    a = adapters.get(name)
    assert isinstance(a.spec_fields, frozenset)
    assert a.spec_fields <= set(ModelSpec.model_fields)
    assert {"hidden", "options"} <= a.spec_fields


def test_spec_fields_by_adapter():
    every = set(ModelSpec.model_fields)
    assert adapters.get("mlp").spec_fields == {"hidden", "activation", "options"}
    for name in ("efficient_kan", "inkan"):  # no grid refinement of their own
        assert adapters.get(name).spec_fields == every - {"grid_schedule"}, name
    for name in ("native", "pykan"):
        assert adapters.get(name).spec_fields == every, name


@pytest.mark.parametrize("name", adapters.names())
def test_bad_activation_is_rejected_naming_the_field(name):
    a = adapters.get(name)
    if "activation" not in a.spec_fields:
        pytest.skip(f"{name} does not read the activation")
    bad = ModelSpec(activation="swish")
    with pytest.raises(AdapterError, match=r"activation 'swish'; expected one of .*relu"):
        a.check_spec(bad)
    with pytest.raises(AdapterError, match="activation 'swish'"):
        a.param_count(bad, 3, 2)
    with pytest.raises(AdapterError, match="activation 'swish'"):
        available(name).build(bad, 3, 2, seed=0)


@pytest.mark.parametrize("name", adapters.names())
def test_check_spec_accepts_the_default_spec_and_rejects_unknown_options(name):
    a = adapters.get(name)
    a.check_spec(ModelSpec(hidden=(4,)))
    with pytest.raises(AdapterError, match=r"does not understand option\(s\) \['no_such_option'\]"):
        a.check_spec(ModelSpec(options={"no_such_option": 1}))
    with pytest.raises(AdapterError, match="no_such_option"):
        a.param_count(ModelSpec(options={"no_such_option": 1}), 3, 2)


@pytest.mark.parametrize("name", adapters.names())
def test_every_activation_of_the_table_is_honoured(name):
    """Each adapter that reads the activation builds a model with every activation of the
    shared table, and relu gives another function than silu from the same seed."""
    from adapters.mlp import ACTIVATIONS

    a = available(name)
    if "activation" not in a.spec_fields:
        pytest.skip(f"{name} does not read the activation")
    options = {"compile_basis": False} if name == "inkan" else {}
    x = torch.rand(6, 3) * 2 - 1
    outputs = {}
    for activation in ACTIVATIONS:
        spec = ModelSpec(hidden=(4,), grid=3, k=3, activation=activation, options=options)
        a.check_spec(spec)
        with torch.no_grad():
            outputs[activation] = a.build(spec, 3, 2, seed=0)(x)
    assert not torch.allclose(outputs["relu"], outputs["silu"])


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
    params = {id(p) for p in model.parameters() if p.requires_grad}
    # a trainable parameter, or a view of part of one (inkan's spline block of its packed weight)
    assert all(id(c if c._base is None else c._base) in params for c in coefs)
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
    # the MLP reads no spline fields: they are not its to check
    a.check_spec(ModelSpec(hidden=(3,), grid=50, k=5, grid_range=(0.0, 9.0)))


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
    # the interface's defaults: every spec field read, the option keys checked
    assert a.spec_fields == set(ModelSpec.model_fields) - {"grid_schedule"}
    a.check_spec(ModelSpec())
    with pytest.raises(AdapterError, match="does not understand"):
        a.check_spec(ModelSpec(options={"x": 1}))
    assert a.provenance(a.build(ModelSpec(), 4, 2, seed=0))["provider"] == "kanbench"
    model = a.build(ModelSpec(), 4, 2, seed=0)
    assert a.count_params(model) == a.param_count(ModelSpec(), 4, 2) == 10
    with pytest.raises(AdapterError, match="already registered"):
        adapters.register(_LinearAdapter)


@pytest.mark.parametrize("name", adapters.names())
def test_building_and_training_leave_the_working_directory_alone(name, tmp_path, monkeypatch):
    """No adapter changes the working directory or writes into it (ikan's modules, pykan's
    checkpoints would)."""
    monkeypatch.chdir(tmp_path)
    a = available(name)
    model = a.build(SPEC, 3, 2, seed=0)
    model(torch.rand(5, 3)).sum().backward()
    assert Path.cwd() == tmp_path and not list(tmp_path.iterdir())
