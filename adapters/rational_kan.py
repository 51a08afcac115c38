"""A group-rational KAN layer (GR-KAN), written here: ikan's ``GroupKAN`` cannot build a working
model as its 1.3.0 wheel ships (its ``init.json`` is missing) and no maintained PyPI package
offers one (``rational_activations`` pins torch 1.7.1).

Follows X. Yang and X. Wang, "Kolmogorov-Arnold Transformer" (arXiv 2409.10594). One layer
``in -> out``: the inputs are split into ``groups`` contiguous, nearly equal groups of channels;
every channel of group ``g`` goes through that group's rational function, a "safe" Pade
approximant of orders (5, 4),

    R_g(x) = (a_0 + a_1 x + ... + a_5 x^5) / (1 + |b_1 x + b_2 x^2 + b_3 x^3 + b_4 x^4|),

whose denominator is at least 1 (no poles), and a linear map (``nn.Linear``, with bias) mixes
the results: ``y = W R(x) + c``. So every edge ``i -> o`` computes ``W[o, i] R_g(i)(x_i)``, a
learned univariate function, with the function's shape shared within a group, as KAT does to
cut parameters. Each group has its own numerator and denominator here (KAT's kernels keep one
numerator for all groups); groups of unequal size are allowed, so any width works.

Initialisation: the rational coefficients start as a fit of the activation ``init`` (``gelu``
as KAT, ``silu``, or ``identity``, exact), the linear map as ``nn.Linear`` does. The fits are
constants (:data:`RATIONAL_FITS`): least squares on 2001 points of [-6, 6] from the linearised
solution (scipy's Levenberg-Marquardt), max error 0.0037 for gelu and 0.00021 for silu there
(tests/test_rational_kan.py refits them); beyond it the function is extrapolated.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from adapters.base import Adapter, ModelSpec, isolated_rng, named_targets
from adapters.flops import Flops, LayerWork, flops_of

NUMERATOR_ORDER, DENOMINATOR_ORDER = 5, 4

#: (a_0..a_5, b_1..b_4) of R fitted to each activation on [-6, 6] (see the module docstring)
RATIONAL_FITS: dict[str, tuple[float, ...]] = {
    "gelu": (-0.003727911455, 0.500000005, 0.4202824282, 0.1261265431, 0.01593481122,
             0.0007074583337, 1.344351285e-07, 0.2522529876, 2.378129497e-08, 0.001414914806),
    "silu": (6.83105488e-05, 0.4999999998, 0.2497784485, 0.05216863223, 0.005360989356,
             0.0002252919087, -2.143021135e-08, 0.1043372748, -1.79405088e-09, 0.0004505839276),
    "identity": (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}

#: FLOPs per input element: the numerator by Horner (5 multiply-adds), the denominator's
#: polynomial by Horner and a last multiply by x (3 multiply-adds + 1), |.|, 1 + and the divide
RATIONAL_PER_INPUT = 2 * NUMERATOR_ORDER + 2 * (DENOMINATOR_ORDER - 1) + 1 + 3


class RationalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    basis: Literal["group_rational"] = "group_rational"
    groups: int = Field(8, ge=1, le=1024, description="rational functions per layer (at most "
                        "one per input: a layer with fewer inputs has one per input)")
    init: Literal["gelu", "silu", "identity"] = "gelu"


def group_of(channels: int, groups: int) -> torch.Tensor:
    """The group of each input channel: contiguous, nearly equal groups."""
    g = min(groups, channels)
    return torch.arange(channels) * g // channels


class GroupRationalLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, o: RationalOptions) -> None:
        super().__init__()
        g = min(o.groups, in_dim)
        fit = torch.tensor(RATIONAL_FITS[o.init])
        self.numerator = nn.Parameter(fit[:NUMERATOR_ORDER + 1].repeat(g, 1))
        self.denominator = nn.Parameter(fit[NUMERATOR_ORDER + 1:].repeat(g, 1))
        self.register_buffer("group", group_of(in_dim, o.groups), persistent=False)
        self.linear = nn.Linear(in_dim, out_dim)

    def rational(self, x: torch.Tensor) -> torch.Tensor:
        a = self.numerator[self.group]  # (in, 6): each channel's coefficients
        b = self.denominator[self.group]  # (in, 4)
        p = a[:, NUMERATOR_ORDER]
        for i in range(NUMERATOR_ORDER - 1, -1, -1):
            p = p * x + a[:, i]
        q = b[:, DENOMINATOR_ORDER - 1]
        for i in range(DENOMINATOR_ORDER - 2, -1, -1):
            q = q * x + b[:, i]
        return p / (1 + torch.abs(q * x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.rational(x))


class RationalKANAdapter(Adapter):
    name = "rational_kan"
    family = "kan"
    basis = "group-rational"
    spec_fields = frozenset({"hidden", "options"})
    hyper = RationalOptions

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        o = self.hyperparameters(spec)
        widths = spec.widths(in_dim, out_dim)
        with isolated_rng(seed):
            layers = [GroupRationalLayer(a, b, o) for a, b in zip(widths[:-1], widths[1:])]
        return nn.Sequential(*layers).to(device=device, dtype=dtype)

    def param_count(self, spec, in_dim, out_dim):
        """Per layer ``a -> b``: ``min(groups, a)`` rational functions of 10 coefficients and
        the linear map ``a*b + b``."""
        o = self.hyperparameters(spec)
        widths = spec.widths(in_dim, out_dim)
        return sum(min(o.groups, a) * (NUMERATOR_ORDER + 1 + DENOMINATOR_ORDER) + a * b + b
                   for a, b in zip(widths[:-1], widths[1:]))

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """Per layer ``a -> b``: the rational function on every input, ``20a``
        (:data:`RATIONAL_PER_INPUT`), and ``addmm``, ``2ab`` plus the bias ``b``. The
        coefficients are trained, so training differentiates through the rational functions in
        the first layer too. No nominal figure (KANbeFair prices B-splines only)."""
        self.hyperparameters(spec)
        widths = spec.widths(in_dim, out_dim)
        return flops_of([LayerWork(matmul_learned_input=2 * a * b,
                                   after=RATIONAL_PER_INPUT * a + b)
                         for a, b in zip(widths[:-1], widths[1:])], nominal=None)

    def spline_coefficients(self, model):
        """Per layer the rational coefficients (numerator, denominator) and the linear map:
        together they are the edges' functions."""
        return [t for layer in model for t in (layer.numerator, layer.denominator,
                                               layer.linear.weight)]

    def init_targets(self, model):
        """Per layer the linear map (as a base weight: fans ``in``, ``out``) and its bias; the
        rational functions keep their fitted start."""
        specs = []
        for layer in model:
            specs += [("base_weight", layer.linear.weight, layer.linear.in_features,
                       layer.linear.out_features), ("bias", layer.linear.bias, None, None)]
        return named_targets(model, specs)
