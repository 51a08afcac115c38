"""Plugins for tests/test_plugins.py, named by import path (``plugin_examples:...``): one of
each way a third-party adapter or dataset can be broken, beside working ones."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adapters import Adapter, isolated_rng
from bench.datasets.plugins import ArrayDataset


class LinearAdapter(Adapter):
    """A working plugin: one linear map per layer, tanh between."""

    name = "plugin_linear"
    family = "mlp"
    spec_fields = frozenset({"hidden", "options"})

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        widths = spec.widths(in_dim, out_dim)
        layers: list[nn.Module] = []
        with isolated_rng(seed):
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), nn.Tanh()]
        return nn.Sequential(*layers[:-1]).to(device=device, dtype=dtype)

    def param_count(self, spec, in_dim, out_dim):
        widths = spec.widths(in_dim, out_dim)
        return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))

    def spline_coefficients(self, model):
        return [m.weight for m in model if isinstance(m, nn.Linear)]


class WrongShape(LinearAdapter):
    name = "plugin_wrong_shape"

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        return super().build(spec, in_dim, out_dim + 1, seed, device, dtype)


class Miscounted(LinearAdapter):
    name = "plugin_miscounted"

    def param_count(self, spec, in_dim, out_dim):
        return super().param_count(spec, in_dim, out_dim) + 1


class NoCoefficients(Adapter):  # spline_coefficients missing: cannot be instantiated
    name = "plugin_incomplete"
    family = "mlp"

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        return nn.Linear(in_dim, out_dim)

    def param_count(self, spec, in_dim, out_dim):
        return in_dim * out_dim + out_dim


def xor(data_dir, n: int = 300):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(int)


XOR = ArrayDataset(task="classification", arrays=xor, options=("n",), description="XOR")
RAGGED = ArrayDataset(task="regression", arrays=lambda data_dir: (np.zeros(10), np.zeros(10)))
NOT_A_DATASET = {"task": "classification"}
