"""Multilayer perceptron baseline: Linear layers with one activation, none on the output."""

from __future__ import annotations

import torch
from torch import nn

from adapters.base import Adapter, ModelSpec, isolated_rng, named_targets
from adapters.flops import Flops, LayerWork, activation_flops, flops_of, kanbefair_mlp_flops

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


class MLPAdapter(Adapter):
    name = "mlp"
    family = "mlp"
    spec_fields = frozenset({"hidden", "activation", "options"})

    def check_spec(self, spec: ModelSpec) -> None:
        self.check_options(spec)
        self.check_choice("activation", spec.activation, ACTIVATIONS)

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        self.check_spec(spec)
        act = ACTIVATIONS[spec.activation]
        widths = spec.widths(in_dim, out_dim)
        layers: list[nn.Module] = []
        with isolated_rng(seed):
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                layers.append(nn.Linear(a, b))
                if i < len(widths) - 2:
                    layers.append(act())
            model = nn.Sequential(*layers)
        return model.to(device=device, dtype=dtype)

    def param_count(self, spec, in_dim, out_dim):
        self.check_spec(spec)
        widths = spec.widths(in_dim, out_dim)
        return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """Per layer ``a -> b``: the ``addmm`` of ``nn.Linear``, ``2ab`` (matmul) plus the bias
        add ``b``, and on hidden layers the activation, ``FLOPS[act]*b``; no activation on the
        output layer. Nominal: KANbeFair's, which prices the activation on the output layer
        too and no bias add."""
        self.check_spec(spec)
        widths = spec.widths(in_dim, out_dim)
        act = activation_flops(spec.activation)
        last = len(widths) - 2
        layers = [LayerWork(matmul=2 * a * b, after=b + (act * b if i < last else 0))
                  for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
        return flops_of(layers, nominal=kanbefair_mlp_flops(widths, spec.activation))

    def spline_coefficients(self, model):
        return [m.weight for m in model.modules() if isinstance(m, nn.Linear)]

    def init_targets(self, model):
        """Each Linear's weight (fan_in = in, fan_out = out, as torch.nn.init) and bias."""
        specs = []
        for m in model.modules():
            if isinstance(m, nn.Linear):
                specs.append(("weight", m.weight, m.in_features, m.out_features))
                if m.bias is not None:
                    specs.append(("bias", m.bias, None, None))
        return named_targets(model, specs)
