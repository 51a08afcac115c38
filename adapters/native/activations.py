"""The base activations of the native layer, each with the derivative its hand-written backwards use.

The names and functions are those of ``adapters.mlp.ACTIVATIONS`` with torch's defaults (GELU
exact, LeakyReLU slope 0.01, ELU alpha 1), as efficient-kan builds them. Each derivative takes
torch autograd's value at a kink (ReLU: 0 at 0; LeakyReLU: the slope at 0), so the gradients
equal those of efficient-kan's autograd. Plain functions of one tensor: torch.compile inlines
them into the compiled kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_RELU_SLOPE = 0.01
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]


def _dsilu(x):
    sig = torch.sigmoid(x)
    return sig * (1 + x * (1 - sig))


def _drelu(x):
    return (x > 0).to(x.dtype)


def _dgelu(x):
    return 0.5 * (1 + torch.erf(x * _INV_SQRT2)) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI


def _dtanh(x):
    return 1 - torch.tanh(x).square()


def _dsigmoid(x):
    sig = torch.sigmoid(x)
    return sig * (1 - sig)


def _leaky_relu(x):
    return F.leaky_relu(x, LEAKY_RELU_SLOPE)


def _dleaky_relu(x):
    return torch.where(x > 0, 1.0, torch.full_like(x, LEAKY_RELU_SLOPE))


def _delu(x):
    return torch.where(x > 0, 1.0, torch.exp(x))


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("silu", F.silu, _dsilu),
        Activation("relu", F.relu, _drelu),
        Activation("gelu", F.gelu, _dgelu),
        Activation("tanh", torch.tanh, _dtanh),
        Activation("sigmoid", torch.sigmoid, _dsigmoid),
        Activation("leaky_relu", _leaky_relu, _dleaky_relu),
        Activation("elu", F.elu, _delu),
    )
}

_MODULES: dict[type[nn.Module], str] = {
    nn.SiLU: "silu",
    nn.ReLU: "relu",
    nn.GELU: "gelu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.LeakyReLU: "leaky_relu",
    nn.ELU: "elu",
}


def get(activation: str | type[nn.Module]) -> Activation:
    """The activation named ``activation``, or of one of torch's module classes above (as
    efficient-kan's ``base_activation`` takes it); ValueError listing the supported ones."""
    name = _MODULES.get(activation, activation) if isinstance(activation, type) else activation
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown base activation {activation!r}; expected one of {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name]
