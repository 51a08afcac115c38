"""Synthetic regression sets: the KAN paper's toy functions and special functions.

Inputs are drawn uniformly from a box; the target is computed exactly (float64). Nothing is
downloaded. Metric: RMSE in the target's units.

KAN paper toy functions (Liu et al. 2024, "KAN: Kolmogorov-Arnold Networks", section 3.1;
inputs uniform in [-1, 1] as there). ``name``: inputs, target, box.

- ``toy_bessel_j0``: 1, J0(20 x), [-1, 1]
- ``toy_exp_sin_sq``: 2, exp(sin(pi x) + y^2), [-1, 1]^2
- ``toy_xy``: 2, x y, [-1, 1]^2
- ``toy_exp_mean_sin100``: 100, exp(mean_i sin^2(pi x_i / 2)), [-1, 1]^100
- ``toy_exp_sin4d``: 4, exp((sin(pi (x1^2 + x2^2)) + sin(pi (x3^2 + x4^2))) / 2), [-1, 1]^4

Two further smooth 2-d examples:

- ``toy_sin_exp``: sin(x) exp(-y^2), x in [-pi, pi], y in [-2, 2]
- ``toy_sin_cos_sq``: sin(x1) cos(x2) + x1^2 / 2, [-pi, pi]^2

Special functions of two arguments (scipy.special; the KAN paper's section 3.2 fits the same
families). The boxes keep each function finite and moderate everywhere (checked on a
401 x 401 grid: |f| <= 10):

- ``special_ellipj``: sn(u | m), the first output of ellipj; u in [-2, 2], m in [0, 1]
- ``special_ellipkinc``: F(phi | m), incomplete elliptic integral of the first kind;
  phi in [-1.5, 1.5], m in [0, 1] (m sin^2 phi < 1, so finite)
- ``special_ellipeinc``: E(phi | m), second kind; phi in [-1.5, 1.5], m in [0, 1]
- ``special_jv``: J_v(z), Bessel of the first kind; v in [0, 2], z in [0, 5]
- ``special_yv``: Y_v(z), Bessel of the second kind; v in [0, 2], z in [1, 5] (Y -> -inf at 0)
- ``special_kv``: K_v(z), modified Bessel, second kind; v in [0, 2], z in [1, 5] (K -> inf
  at 0)
- ``special_iv``: I_v(z), modified Bessel, first kind; v in [0, 2], z in [0, 3]
- ``special_lpmv_m0``, ``special_lpmv_m1``, ``special_lpmv_m2``: P_v^m(x), associated
  Legendre function of order m = 0, 1, 2 (fixed per dataset) and real degree v; inputs
  v in [0, 3], x in [-0.9, 0.9] (non-integer degrees diverge at x = -1)

Size: every set has ``n_train`` + ``n_test`` rows (default 1000 + 1000).

Options: ``n_train`` (default 1000) generated training samples, from which validation is
carved (``split.val_size``), so the model fits ``(1 - val_size) * n_train`` of them;
``n_test`` (default 1000) fresh samples used as the official test set; ``noise`` (default 0)
the standard deviation, in the target's units, of Gaussian noise added to the generated
training targets (so training and validation), never to the test targets: test RMSE
measures the distance to the true function. The generator is seeded from ``split.seed`` and
the dataset's name, so the data are the same for every model and run of a seed and differ
between datasets. Inputs and targets are then standardised with training statistics like
every other dataset (``split.scale``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from bench.datasets.base import Dataset, SplitSpec, split_and_scale
from bench.datasets.registry import DatasetOptionError, dataset
from bench.errors import DatasetError

OPTIONS = ("n_train", "n_test", "noise")
PI = np.pi


@dataclass(frozen=True)
class ToyFunction:
    name: str
    formula: str
    fn: Callable[[np.ndarray], np.ndarray]  # (N, d) float64 -> (N,)
    box: tuple[tuple[float, float], ...]  # (low, high) per input
    source: str

    @property
    def dims(self) -> int:
        return len(self.box)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        low = np.array([lo for lo, _ in self.box])
        high = np.array([hi for _, hi in self.box])
        x = low + (high - low) * rng.random((n, self.dims))
        return x, np.asarray(self.fn(x), dtype=np.float64).reshape(n)


_PAPER = "KAN paper (Liu et al. 2024), section 3.1"
_SPECIAL = "scipy.special (KAN paper section 3.2 fits the same families)"

FUNCTIONS: dict[str, ToyFunction] = {
    f.name: f
    for f in [
        ToyFunction("toy_bessel_j0", "J0(20 x)", lambda x: special.j0(20 * x[:, 0]),
                    ((-1, 1),), _PAPER),
        ToyFunction("toy_exp_sin_sq", "exp(sin(pi x) + y^2)",
                    lambda x: np.exp(np.sin(PI * x[:, 0]) + x[:, 1] ** 2), ((-1, 1),) * 2,
                    _PAPER),
        ToyFunction("toy_xy", "x y", lambda x: x[:, 0] * x[:, 1], ((-1, 1),) * 2, _PAPER),
        ToyFunction("toy_exp_mean_sin100", "exp(mean_i sin^2(pi x_i / 2)), 100 inputs",
                    lambda x: np.exp(np.mean(np.sin(PI * x / 2) ** 2, axis=1)),
                    ((-1, 1),) * 100, _PAPER),
        ToyFunction("toy_exp_sin4d", "exp((sin(pi (x1^2 + x2^2)) + sin(pi (x3^2 + x4^2))) / 2)",
                    lambda x: np.exp(0.5 * (np.sin(PI * (x[:, 0] ** 2 + x[:, 1] ** 2))
                                            + np.sin(PI * (x[:, 2] ** 2 + x[:, 3] ** 2)))),
                    ((-1, 1),) * 4, _PAPER),
        ToyFunction("toy_sin_exp", "sin(x) exp(-y^2)",
                    lambda x: np.sin(x[:, 0]) * np.exp(-x[:, 1] ** 2), ((-PI, PI), (-2, 2)),
                    "smooth 2-d example"),
        ToyFunction("toy_sin_cos_sq", "sin(x1) cos(x2) + x1^2 / 2",
                    lambda x: np.sin(x[:, 0]) * np.cos(x[:, 1]) + 0.5 * x[:, 0] ** 2,
                    ((-PI, PI),) * 2, "smooth 2-d example"),
        ToyFunction("special_ellipj", "sn(u | m) = scipy.special.ellipj(u, m)[0]",
                    lambda x: special.ellipj(x[:, 0], x[:, 1])[0], ((-2, 2), (0, 1)), _SPECIAL),
        ToyFunction("special_ellipkinc", "F(phi | m) = scipy.special.ellipkinc(phi, m)",
                    lambda x: special.ellipkinc(x[:, 0], x[:, 1]), ((-1.5, 1.5), (0, 1)),
                    _SPECIAL),
        ToyFunction("special_ellipeinc", "E(phi | m) = scipy.special.ellipeinc(phi, m)",
                    lambda x: special.ellipeinc(x[:, 0], x[:, 1]), ((-1.5, 1.5), (0, 1)),
                    _SPECIAL),
        ToyFunction("special_jv", "J_v(z) = scipy.special.jv(v, z)",
                    lambda x: special.jv(x[:, 0], x[:, 1]), ((0, 2), (0, 5)), _SPECIAL),
        ToyFunction("special_yv", "Y_v(z) = scipy.special.yv(v, z)",
                    lambda x: special.yv(x[:, 0], x[:, 1]), ((0, 2), (1, 5)), _SPECIAL),
        ToyFunction("special_kv", "K_v(z) = scipy.special.kv(v, z)",
                    lambda x: special.kv(x[:, 0], x[:, 1]), ((0, 2), (1, 5)), _SPECIAL),
        ToyFunction("special_iv", "I_v(z) = scipy.special.iv(v, z)",
                    lambda x: special.iv(x[:, 0], x[:, 1]), ((0, 2), (0, 3)), _SPECIAL),
        *[
            ToyFunction(f"special_lpmv_m{m}", f"P_v^{m}(x) = scipy.special.lpmv({m}, v, x)",
                        (lambda order: lambda x: special.lpmv(order, x[:, 0], x[:, 1]))(m),
                        ((0, 3), (-0.9, 0.9)), _SPECIAL)
            for m in (0, 1, 2)
        ],
    ]
}


def _count(name: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetOptionError(key, f"dataset '{name}': option '{key}' must be an integer "
                                      f">= {minimum}, got {value!r}")
    return value


def generate(name: str, split: SplitSpec, n_train: int = 1000, n_test: int = 1000,
             noise: float = 0.0) -> Dataset:
    """Sample ``FUNCTIONS[name]`` and apply the shared split/scaling protocol."""
    f = FUNCTIONS[name]
    n_train = _count(name, "n_train", n_train, 10)
    n_test = _count(name, "n_test", n_test, 1)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise DatasetOptionError("noise", f"dataset '{name}': option 'noise' must be a number "
                                          f">= 0, got {noise!r}")
    # one stream per (seed, dataset): training inputs, test inputs, then the noise
    rng = np.random.default_rng([split.seed, zlib.crc32(name.encode())])
    x, y = f.sample(rng, n_train)
    x_test, y_test = f.sample(rng, n_test)
    if not (np.isfinite(y).all() and np.isfinite(y_test).all()):  # a box mistake, not user error
        raise DatasetError(f"dataset '{name}': non-finite targets in the box {f.box}")
    if noise > 0:
        y = y + noise * rng.standard_normal(n_train)
    info = {
        "source": f.source, "function": f.formula,
        "box": [list(map(float, b)) for b in f.box] if f.dims <= 4
        else f"[{f.box[0][0]:g}, {f.box[0][1]:g}]^{f.dims}",
        "sampling": "uniform in the box, float64; generator seeded by (split.seed, crc32(name))",
        "n_generated": {"train (train + validation)": n_train, "test": n_test},
        "noise": (f"Gaussian, std {float(noise):g} (target units), training/validation targets "
                  f"only; test targets exact") if noise > 0 else None,
    }
    ds = split_and_scale(name, "regression", x, y, split, x_test=x_test, y_test=y_test,
                         info=info)
    ds.info["split"] = f"separately generated test set ({n_test} samples)"
    return ds


def _register(name: str) -> None:
    f = FUNCTIONS[name]

    @dataset(name, "regression", f"{f.formula} on {f.dims} input(s) ({f.source})",
             options=OPTIONS, offline=True)
    def _load(split: SplitSpec, data_dir: Path | None = None, **options: Any) -> Dataset:
        return generate(name, split, **options)


for _name in FUNCTIONS:
    _register(_name)
