"""pykan adapter: contained (no files, no global RNG changes) and counting only what trains."""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adapters.base import AdapterError, ModelSpec, package_version
from adapters.pykan import PykanAdapter, PykanNet

ROOT = Path(__file__).resolve().parents[1]
SPEC = ModelSpec(hidden=(4,), grid=3, k=3)  # widths [3, 4, 2]

pytestmark = pytest.mark.skipif(
    PykanAdapter().unavailable_reason() is not None, reason="pykan is not installed"
)


@pytest.fixture(scope="module")
def adapter() -> PykanAdapter:
    return PykanAdapter()


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def test_availability_and_provenance(adapter):
    assert adapter.unavailable_reason() is None
    version = package_version("pykan")
    assert version is not None
    assert adapter.provenance() == {"provider": "pykan", "version": version}
    assert adapter.provenance(adapter.build(SPEC, 3, 2, seed=0)) == adapter.provenance()


def test_forward_shape_and_finite_grads(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    assert isinstance(model, PykanNet)
    x = torch.rand(16, 3, dtype=torch.float32) * 2 - 1
    y = model(x)
    assert y.shape == (16, 2) and y.dtype == torch.float32
    y.pow(2).sum().backward()
    params = _trainable(model)
    assert params
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for n, p in params.items() if n.endswith("coef"))


def test_float64_build(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(torch.rand(4, 3, dtype=torch.float64)).dtype == torch.float64
    # same seed, same initial values whatever the dtype (built in float32, then cast)
    ref = adapter.build(SPEC, 3, 2, seed=0)
    for (n, a), (_, b) in zip(ref.named_parameters(), model.named_parameters()):
        assert torch.equal(a.double(), b), n


@pytest.mark.parametrize(
    ("spec", "in_dim", "out_dim", "expected"),
    [
        # 3*4*(3+3+2) + 4*2*(3+3+2)
        (SPEC, 3, 2, 160),
        # 2*3*(5+2+2) + 3*5*9 + 5*1*9
        (ModelSpec(hidden=(3, 5), grid=5, k=2), 2, 1, 234),
        # affine node params: + 4 per output node of each layer (4*4 + 4*2)
        (ModelSpec(hidden=(4,), grid=3, k=3, options={"affine_trainable": True}), 3, 2, 184),
    ],
)
def test_param_count_matches_built_model(adapter, spec, in_dim, out_dim, expected):
    model = adapter.build(spec, in_dim, out_dim, seed=1)
    by_hand = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert adapter.param_count(spec, in_dim, out_dim) == expected
    assert adapter.count_params(model) == expected
    assert by_hand == expected


def test_only_function_affecting_tensors_train(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    kinds = ("coef", "scale_base", "scale_sp")
    expected = {f"kan.act_fun.{layer}.{t}" for layer in range(2) for t in kinds}
    assert set(_trainable(model)) == expected
    symbolic = dict(model.kan.symbolic_fun.named_parameters())
    assert any(n.endswith("affine") for n in symbolic)  # they exist, and are frozen
    assert not any(p.requires_grad for p in symbolic.values())
    assert model.kan.symbolic_enabled is False and model.kan.save_act is False
    assert model.kan.auto_save is False


def test_affine_node_params_affect_output_when_trainable(adapter):
    spec = ModelSpec(hidden=(4,), grid=3, k=3, options={"affine_trainable": True})
    model = adapter.build(spec, 3, 2, seed=0)
    x = torch.rand(8, 3) * 2 - 1
    model(x).sum().backward()
    for name in ("node_bias_1", "node_scale_1", "subnode_bias_0", "subnode_scale_0"):
        p = getattr(model.kan, name)
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name


def test_seed_determinism(adapter):
    a = adapter.build(SPEC, 3, 2, seed=7).state_dict()
    b = adapter.build(SPEC, 3, 2, seed=7).state_dict()
    c = adapter.build(SPEC, 3, 2, seed=8).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["kan.act_fun.0.coef"], c["kan.act_fun.0.coef"])
    assert not torch.equal(a["kan.act_fun.0.scale_base"], c["kan.act_fun.0.scale_base"])


def test_global_rng_untouched(adapter):
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    py, npy, pt = random.getstate(), np.random.get_state(), torch.get_rng_state()
    adapter.build(SPEC, 3, 2, seed=0)
    assert random.getstate() == py
    after = np.random.get_state()
    assert after[0] == npy[0] and np.array_equal(after[1], npy[1]) and after[2:] == npy[2:]
    assert torch.equal(torch.get_rng_state(), pt)


def test_no_files_written(adapter, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    before = _tree(tmp_path)
    model = adapter.build(SPEC, 3, 2, seed=0)
    x = torch.rand(32, 3) * 2 - 1
    model(x).sum().backward()
    adapter.update_grid(model, x)
    adapter.enable_regularization(model)
    model(x)
    adapter.regularization(model)
    adapter.extend_grid(model, 6, x)
    assert _tree(tmp_path) == before
    assert not (tmp_path / "model").exists()
    # the checkpoint folder pykan was pointed at is gone too
    assert not Path(model.kan.ckpt_path).exists()


def test_no_files_written_including_import(tmp_path):
    # A fresh interpreter, so that import-time side effects are seen as well.
    code = (
        "import torch\n"
        "from adapters.pykan import PykanAdapter\n"
        "from adapters.base import ModelSpec\n"
        "a = PykanAdapter()\n"
        "m = a.build(ModelSpec(hidden=(2,), grid=3, k=2), 2, 1, seed=0)\n"
        "x = torch.rand(8, 2)\n"
        "m(x).sum().backward()\n"
        "a.update_grid(m, x)\n"
        "import os; print(os.getcwd())\n"
    )
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path)
    assert _tree(tmp_path) == []


def test_update_grid_follows_data(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    g = torch.Generator().manual_seed(0)
    scale, shift = torch.tensor([6.0, 2.0, 0.5]), torch.tensor([3.0, 1.0, 0.0])
    x = torch.rand(200, 3, generator=g) * scale - shift
    assert adapter.update_grid(model, x) is True
    grid = model.kan.act_fun[0].grid  # (in, G + 2k + 1); interior knots k .. k+G
    k, G = SPEC.k, SPEC.grid
    lo, hi = x.min(0).values, x.max(0).values
    assert torch.allclose(grid[:, k], lo, atol=0.05 * (hi - lo).max())
    assert torch.allclose(grid[:, k + G], hi, atol=0.05 * (hi - lo).max())
    assert torch.isfinite(model(x)).all()


def test_spline_coefficients(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    coefs = adapter.spline_coefficients(model)
    assert [tuple(c.shape) for c in coefs] == [(3, 4, 6), (4, 2, 6)]
    assert all(c is layer.coef for c, layer in zip(coefs, model.kan.act_fun))


def test_regularization_is_pykans_own_reg_of_the_training_forward(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    x = torch.rand(64, 3) * 2 - 1
    with pytest.raises(AdapterError, match="enable_regularization"):
        model(x)
        adapter.regularization(model)
    adapter.enable_regularization(model)
    model.train()
    model(x)
    weights = dict(l1=0.7, entropy=2.0, coef=0.3, coefdiff=0.2)
    reg = adapter.regularization(model, **weights)
    assert reg.requires_grad  # it trains: the penalty's gradient reaches the coefficients
    # the oracle: pykan itself, on its save_act path (what its fit does)
    kan = copy.deepcopy(model.kan)
    kan.save_act = True
    kan(x)
    expected = kan.get_reg("edge_forward_spline_n", 0.7, 2.0, 0.3, 0.2)
    assert reg.item() == pytest.approx(expected.item(), rel=1e-6)
    reg.backward()
    assert model.kan.act_fun[0].coef.grad.abs().sum() > 0
    # evaluation forwards stay on pykan's fast path and record nothing
    model.eval()
    model(x)
    assert model.kan.save_act is False and model.kan.acts_scale_spline == []


def test_extend_grid_is_pykans_refinement_and_preserves_the_function(adapter):
    model = adapter.build(SPEC, 3, 2, seed=0)
    x = torch.rand(512, 3) * 2 - 1
    with torch.no_grad():
        before = model(x)
    old_coef = model.kan.act_fun[0].coef
    deviation = adapter.extend_grid(model, 6, x)
    assert [tuple(c.shape) for c in adapter.spline_coefficients(model)] == [(3, 4, 9), (4, 2, 9)]
    assert model.kan.act_fun[0].coef is not old_coef and model.build_kwargs["grid"] == 6
    assert adapter.count_params(model) == adapter.param_count(
        SPEC.model_copy(update={"grid": 6}), 3, 2)
    # doubling G nests the spline spaces: the least-squares refit is exact up to rounding
    assert deviation < 1e-4
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-4)
    # the symbolic branch stays frozen, and the refined model still trains
    assert not any(p.requires_grad for p in model.kan.symbolic_fun.parameters())
    model(x).sum().backward()
    assert model.kan.act_fun[0].coef.grad is not None
    copy.deepcopy(model)


def test_activation_and_options(adapter):
    ident = adapter.build(ModelSpec(hidden=(4,), grid=3, activation="identity"), 3, 2, seed=0)
    x = torch.linspace(-1, 1, 5)
    assert torch.equal(ident.kan.act_fun[0].base_fun(x), x)
    relu = adapter.build(ModelSpec(hidden=(4,), grid=3, activation="relu"), 3, 2, seed=0)
    assert isinstance(relu.kan.act_fun[0].base_fun, torch.nn.ReLU)
    with pytest.raises(AdapterError, match="activation 'nope'; expected one of .*identity"):
        adapter.build(ModelSpec(hidden=(4,), activation="nope"), 3, 2, seed=0)
    with pytest.raises(AdapterError, match="activation 'nope'"):
        adapter.param_count(ModelSpec(hidden=(4,), activation="nope"), 3, 2)
    with pytest.raises(AdapterError, match="noise_scale must be >= 0"):
        adapter.check_spec(ModelSpec(options={"noise_scale": -1.0}))
    with pytest.raises(AdapterError, match="mult_arity"):
        adapter.build(ModelSpec(hidden=(4,), options={"mult_arity": 3}), 3, 2, seed=0)
    # noise_scale reaches pykan: zero noise gives zero spline coefficients
    quiet = adapter.build(ModelSpec(hidden=(4,), grid=3, options={"noise_scale": 0.0}), 3, 2, 0)
    assert all(torch.count_nonzero(c) == 0 for c in adapter.spline_coefficients(quiet))


def test_forward_keeps_no_batch_and_model_deep_copies(adapter):
    # pykan caches the input batch on the model; with an input that requires grad that cache
    # is a non-leaf tensor and copy.deepcopy(model) would raise.
    model = adapter.build(SPEC, 3, 2, seed=0)
    x = (torch.rand(8, 3) * 2).requires_grad_()
    y = model(x - 1)
    y.sum().backward()
    assert model.kan.cache_data is None and model.kan.acts is None
    clone = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(clone(x - 1), model(x - 1))
