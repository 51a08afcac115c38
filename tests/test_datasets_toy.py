"""Synthetic regression sets: registration, exact targets, determinism, noise, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special

from bench.datasets import SplitSpec, dataset_entry, dataset_names, load_dataset, toy
from bench.datasets import DatasetOptionError

RAW = SplitSpec(scale="none")

PAPER = ["toy_bessel_j0", "toy_exp_sin_sq", "toy_xy", "toy_exp_mean_sin100", "toy_exp_sin4d",
         "toy_sin_exp", "toy_sin_cos_sq"]
SPECIAL = ["special_ellipj", "special_ellipkinc", "special_ellipeinc", "special_jv",
           "special_yv", "special_kv", "special_iv", "special_lpmv_m0", "special_lpmv_m1",
           "special_lpmv_m2"]


def _targets(ds, part: str = "test") -> np.ndarray:
    """Targets back in original units."""
    y = getattr(ds, f"y_{part}").double().numpy()
    return (y * np.array(ds.target_std) + np.array(ds.target_mean)).ravel()


def test_all_registered_offline_regression():
    names = set(dataset_names())
    for name in PAPER + SPECIAL:
        assert name in names
        entry = dataset_entry(name)
        assert entry.task == "regression" and entry.offline
        assert entry.options == {"n_train", "n_test", "noise"}
    assert set(toy.FUNCTIONS) == set(PAPER + SPECIAL)


@pytest.mark.parametrize("name", PAPER + SPECIAL)
def test_shapes_finite_and_in_box(name):
    ds = load_dataset(name, RAW, n_train=200, n_test=50)
    f = toy.FUNCTIONS[name]
    assert ds.in_dim == f.dims and ds.out_dim == 1 and ds.metric == "rmse"
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (160, 40, 50)
    x = torch.cat([ds.x_train, ds.x_val, ds.x_test]).double().numpy()
    low = np.array([lo for lo, _ in f.box])
    high = np.array([hi for _, hi in f.box])
    assert (x >= low - 1e-6).all() and (x <= high + 1e-6).all()
    y = _targets(ds)
    assert np.isfinite(y).all() and np.abs(y).max() < 50
    assert np.allclose(y, f.fn(ds.x_test.double().numpy()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, fn", [
    ("toy_xy", lambda x: x[:, 0] * x[:, 1]),
    ("toy_bessel_j0", lambda x: special.jv(0, 20 * x[:, 0])),
    ("toy_exp_sin_sq", lambda x: np.exp(np.sin(np.pi * x[:, 0]) + x[:, 1] ** 2)),
    ("toy_exp_mean_sin100", lambda x: np.exp((np.sin(np.pi * x / 2) ** 2).sum(axis=1) / 100)),
    ("toy_sin_cos_sq", lambda x: np.sin(x[:, 0]) * np.cos(x[:, 1]) + x[:, 0] ** 2 / 2),
    ("special_ellipj", lambda x: special.ellipj(x[:, 0], x[:, 1])[0]),
    ("special_lpmv_m2", lambda x: special.lpmv(2, x[:, 0], x[:, 1])),
])
def test_targets_are_the_formula(name, fn):
    """Independent restatement of the formulas (float64 inputs from the float32 tensors)."""
    ds = load_dataset(name, RAW, n_train=100, n_test=100)
    assert np.allclose(_targets(ds), fn(ds.x_test.double().numpy()), rtol=1e-4, atol=1e-4)


def test_deterministic_per_seed_and_dataset():
    a = load_dataset("toy_sin_exp", SplitSpec(seed=3), n_train=100)
    b = load_dataset("toy_sin_exp", SplitSpec(seed=3), n_train=100)
    c = load_dataset("toy_sin_exp", SplitSpec(seed=4), n_train=100)
    d = load_dataset("toy_xy", SplitSpec(seed=3), n_train=100)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_test, c.x_test)
    assert not torch.equal(a.x_test, d.x_test)
    assert a.info["split"].startswith("separately generated test set")


def test_noise_only_on_training_targets():
    clean = load_dataset("toy_xy", RAW, n_train=4000, n_test=500)
    noisy = load_dataset("toy_xy", RAW, n_train=4000, n_test=500, noise=0.1)
    assert torch.equal(clean.x_train, noisy.x_train) and torch.equal(clean.x_test, noisy.x_test)
    assert np.allclose(_targets(clean), _targets(noisy), atol=1e-6)  # test targets exact
    x = noisy.x_train.double().numpy()
    residual = _targets(noisy, "train") - x[:, 0] * x[:, 1]
    assert 0.09 < residual.std() < 0.11
    assert "training/validation targets only" in noisy.info["noise"]
    assert clean.info["noise"] is None


def test_default_sizes_and_scaling():
    ds = load_dataset("toy_exp_sin4d")
    assert (len(ds.x_train) + len(ds.x_val), len(ds.x_test)) == (1000, 1000)
    assert torch.allclose(ds.x_train.mean(dim=0), torch.zeros(4), atol=1e-5)
    assert abs(ds.y_train.mean().item()) < 1e-5 and ds.target_std is not None


@pytest.mark.parametrize("options, match", [
    ({"n_train": 5}, "n_train"),
    ({"n_test": 0}, "n_test"),
    ({"n_train": 10.5}, "n_train"),
    ({"noise": -1}, "noise"),
    ({"noise": "high"}, "noise"),
    ({"seed": 1}, "does not accept"),
])
def test_bad_options(options, match):
    with pytest.raises(DatasetOptionError, match=match) as err:
        load_dataset("toy_xy", **options)
    assert err.value.option == next(iter(options))  # a suite names datasets[i].options.<it>
