"""The inkan adapter: its own parameterisation, counting, seeding, compiled-basis record."""

from __future__ import annotations

import pytest
import torch

import adapters
from adapters.base import AdapterError, ModelSpec

pytest.importorskip("inkan")

EAGER = {"compile_basis": False}


def test_registered_and_provenance():
    assert "inkan" in adapters.names()
    a = adapters.get("inkan")
    assert a.name == "inkan" and a.family == "kan"
    assert a.unavailable_reason() is None
    prov = a.provenance()
    assert prov == {"provider": "inkan", "version": __import__("inkan").__version__}


@pytest.mark.parametrize("hidden,grid", [((8,), 5), ((4, 3), 7), ((), 2)])
def test_param_count_matches_built_model(hidden, grid):
    a = adapters.get("inkan")
    spec = ModelSpec(hidden=hidden, grid=grid, k=3, options=EAGER)
    model = a.build(spec, in_dim=6, out_dim=2, seed=0)
    widths = spec.widths(6, 2)
    assert a.count_params(model) == a.param_count(spec, 6, 2)
    assert a.param_count(spec, 6, 2) == sum(x * y for x, y in zip(widths[:-1], widths[1:])) * (grid + 4)


def test_only_cubic_and_known_options():
    a = adapters.get("inkan")
    with pytest.raises(AdapterError, match=r"k=2; inkan supports cubic"):
        a.build(ModelSpec(hidden=(4,), k=2, options=EAGER), 3, 1, seed=0)
    with pytest.raises(AdapterError, match="k=5"):
        a.param_count(ModelSpec(hidden=(4,), k=5), 3, 1)
    with pytest.raises(AdapterError, match="does not understand"):
        a.build(ModelSpec(hidden=(4,), options={"scale_noise": 0.1}), 3, 1, seed=0)
    for key, bad in [("compile_basis", "yes"), ("basis_mode", "global"), ("contraction", "fused")]:
        with pytest.raises(AdapterError, match=f"option {key} '{bad}'; expected one of"):
            a.check_spec(ModelSpec(options={key: bad}))
    a.check_spec(ModelSpec(options={"compile_basis": True, "basis_mode": "dense", "contraction": "direct"}))


def test_seeded_eager_forward_backward_and_instrumentation():
    a = adapters.get("inkan")
    spec = ModelSpec(hidden=(5,), grid=6, options=EAGER)
    m1 = a.build(spec, 4, 3, seed=3)
    m2 = a.build(spec, 4, 3, seed=3)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    m3 = a.build(spec, 4, 3, seed=4)
    assert torch.equal(torch.rand(1), before)  # global RNG untouched
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[n], s2[n]) for n in s1)
    assert not all(torch.equal(s1[n], s3[n]) for n in s1)
    x = torch.randn(7, 4)
    y = m1(x)
    assert y.shape == (7, 3)
    y.sum().backward()
    assert all(p.grad is not None for p in m1.parameters())
    assert m1.compiled_basis is False
    assert a.provenance(m1)["compiled_basis"] == "false"
    coefs = a.spline_coefficients(m1)
    assert [tuple(c.shape) for c in coefs] == [(5, 4 * 9), (3, 5 * 9)]
    # views of the packed weights, so a shock written into them reaches the model
    assert [c._base is layer.weight for c, layer in zip(coefs, m1.layers)] == [True, True]
    packed = m1.layers[0].weight.detach().clone()
    with torch.no_grad():
        coefs[0].add_(1.0)
    assert torch.equal(m1.layers[0].weight[:, :36], packed[:, :36] + 1.0)
    assert torch.equal(m1.layers[0].weight[:, 36:], packed[:, 36:])  # base weights untouched
    assert a.regularization(m1) is None and a.update_grid(m1, x) is False


def test_compile_fallback_records_eager(monkeypatch):
    a = adapters.get("inkan")
    model = a.build(ModelSpec(hidden=(3,), options={"compile_basis": True}), 2, 1, seed=0)
    assert model.compiled_basis is None and a.provenance(model)["compiled_basis"] == "unknown"

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    for layer in model.layers:
        layer._basis_fn = broken
    y = model(torch.randn(5, 2))
    assert y.shape == (5, 1)
    assert model.compiled_basis is False and a.provenance(model)["compiled_basis"] == "false"


def test_provenance_describes_each_model():
    """Two models of the (singleton) adapter, compile_basis True and False, each report their
    own basis, whatever the other did meanwhile."""
    from inkan import layer as inkan_layer

    a = adapters.get("inkan")
    compiled = a.build(ModelSpec(hidden=(3,), options={"compile_basis": True}), 2, 1, seed=0)
    eager = a.build(ModelSpec(hidden=(3,), options=EAGER), 2, 1, seed=0)
    assert a.provenance(compiled)["compiled_basis"] == "unknown"
    assert a.provenance(eager)["compiled_basis"] == "false"
    x = torch.randn(5, 2)
    eager(x)
    assert a.provenance(compiled)["compiled_basis"] == "unknown"
    # the compiled basis "runs" (the eager function stands in for it: no compile in this test)
    for layer in compiled.layers:
        layer._basis_fn = inkan_layer._BASIS_FNS[(layer.basis_mode, False)]
    compiled(x)
    assert a.provenance(compiled)["compiled_basis"] == "true"
    assert a.provenance(eager)["compiled_basis"] == "false"
    later = a.build(ModelSpec(hidden=(3,), options={"compile_basis": True}), 2, 1, seed=0)
    assert a.provenance(later)["compiled_basis"] == "unknown"
    assert a.provenance(compiled)["compiled_basis"] == "true"
    with pytest.raises(AdapterError, match="InkanNet"):
        a.provenance(torch.nn.Linear(2, 1))
