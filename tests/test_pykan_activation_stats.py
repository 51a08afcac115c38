"""pykan's activation statistics (the study's per-step logger columns) and the default of
other adapters."""

from __future__ import annotations

import copy

import pytest
import torch

from adapters.base import AdapterError, ModelSpec
from helpers import available

SPEC = ModelSpec(hidden=(4,), grid=3, k=3)  # widths [3, 4, 2]
STATS = {"subnode_act_mean": "subnode_actscale", "edge_act_mean": "edge_actscale",
         "act_scale_mean": "acts_scale", "act_scale_spline_mean": "acts_scale_spline"}


def _inputs(dtype=torch.float32) -> torch.Tensor:
    return torch.linspace(-1, 1, 3 * 32, dtype=dtype).reshape(32, 3).sin()


def _expected(model, x) -> dict[str, float]:
    """Independently: a copy of the MultKAN, pykan's own save_act forward, the lists read here."""
    kan = copy.deepcopy(model.kan)
    kan.save_act = True
    with torch.no_grad():
        kan(x)
    out = {}
    for stat, name in STATS.items():
        tensors = getattr(kan, name)
        assert len(tensors) == 2  # one per layer
        out[stat] = torch.cat([t.reshape(-1) for t in tensors]).mean().item()
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pykan_statistics_match_its_own_save_act_forward(dtype):
    adapter = available("pykan")
    model = adapter.build(SPEC, 3, 2, seed=0, dtype=dtype)
    model.train()
    x = _inputs(dtype)
    expected = _expected(model, x)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()

    stats = adapter.activation_statistics(model, x)

    assert set(stats) == set(STATS)
    for name, value in expected.items():
        assert isinstance(stats[name], float) and stats[name] > 0, name
        assert stats[name] == pytest.approx(value, rel=1e-12), name
    # with the symbolic branch off, the spline part is the whole edge
    assert stats["act_scale_mean"] == pytest.approx(stats["act_scale_spline_mean"])
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and model.kan.save_act is False
    assert model.kan.cache_data is None and model.kan.acts is None
    assert model.kan.spline_preacts == [] and model.kan.acts_premult == []
    copy.deepcopy(model)
    # the wrapper's own forward is unchanged: same output as before the call
    assert torch.equal(model(x), copy.deepcopy(model)(x))


def test_pykan_statistics_leave_the_regulariser_its_training_forward():
    adapter = available("pykan")
    model = adapter.build(SPEC, 3, 2, seed=0)
    adapter.enable_regularization(model)
    model.train()
    x = _inputs()
    model(x)  # a training forward records what the regulariser reads
    recorded = list(model.kan.acts_scale_spline)
    adapter.activation_statistics(model, x[:5])
    assert all(a is b for a, b in zip(model.kan.acts_scale_spline, recorded))
    adapter.regularization(model).backward()  # still attached to the training graph


def test_pykan_statistics_need_a_batch():
    adapter = available("pykan")
    model = adapter.build(SPEC, 3, 2, seed=0)
    with pytest.raises(AdapterError, match="batch"):
        adapter.activation_statistics(model, _inputs()[:1])


@pytest.mark.parametrize("name", ["mlp", "native"])
def test_other_adapters_have_none(name):
    adapter = available(name)
    model = adapter.build(SPEC, 3, 2, seed=0)
    assert adapter.activation_statistics(model, _inputs()) == {}
