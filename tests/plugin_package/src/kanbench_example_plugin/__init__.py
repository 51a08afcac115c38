"""An example kanbench plugin: a small radial-basis network adapter and a generated dataset
(the README's "Add your own implementation" and "Add your own dataset")."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adapters import Adapter, isolated_rng
from bench.datasets.plugins import ArrayDataset


class RBFLayer(nn.Module):
    """Per input, Gaussian bumps at fixed centres, mixed by a linear map."""

    def __init__(self, in_dim: int, out_dim: int, centres: int) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(-2, 2, centres))
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim * centres) * 0.1)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        basis = torch.exp(-(x.unsqueeze(-1) - self.centres) ** 2)
        return basis.flatten(1) @ self.weight.t() + self.bias


class RBFNetAdapter(Adapter):
    name = "example_rbf"
    family = "kan"
    basis = "gaussian"
    spec_fields = frozenset({"hidden", "grid", "options"})  # grid: centres per input

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        self.check_spec(spec)
        widths = spec.widths(in_dim, out_dim)
        with isolated_rng(seed):  # the model depends on the seed only
            layers = [RBFLayer(a, b, spec.grid) for a, b in zip(widths[:-1], widths[1:])]
        return nn.Sequential(*layers).to(device=device, dtype=dtype)

    def param_count(self, spec, in_dim, out_dim):
        self.check_spec(spec)
        widths = spec.widths(in_dim, out_dim)
        return sum(b * a * spec.grid + b for a, b in zip(widths[:-1], widths[1:]))

    def spline_coefficients(self, model):
        return [layer.weight for layer in model]


def rings(data_dir, n: int = 400, noise: float = 0.1):
    """Two concentric rings, one class each (the data folder is not needed)."""
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, n)
    label = rng.integers(0, 2, n)
    radius = 1.0 + label + rng.normal(0, noise, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return x, label


RINGS = ArrayDataset(task="classification", arrays=rings, options=("n", "noise"),
                     description="two concentric rings, 2 inputs, 2 classes (generated)")
