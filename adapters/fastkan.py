"""A radial-basis KAN: the FastKAN formulation, written here (no maintained package ships it).

Follows Z. Li, "Kolmogorov-Arnold Networks are Radial Basis Function Networks" (arXiv
2405.06721; github.com/ZiyaoLi/fast-kan). One layer ``in -> out``:

    y = W_s vec(phi(LN(x))) + W_b act(x) + b,   phi_j(u) = exp(-((u - c_j) / h)^2)

with ``centres`` Gaussian centres ``c_j`` evenly spaced over ``range`` and ``h`` their spacing,
``LN`` a layer norm over the layer's inputs (learned scale and shift: it keeps the inputs where
the centres are, the job a B-spline KAN's grid updates do), ``W_s`` (out, in*centres) drawn from
a truncated normal of std ``spline_init_scale`` (FastKAN's ``SplineLinear``), and the base
branch ``W_b act(x) + b`` a ``nn.Linear`` on the un-normalised input (``base_activation: null``
drops it). A Gaussian of width ``h`` stands in for the cubic B-spline on knots ``h`` apart: both
are smooth bumps with a partition of unity up to a constant, and the weights absorb the scale
(the README gives the measured difference). The coefficients a shock perturbs are ``W_s``.

Hyper-parameters (``options``): ``centres`` (8), ``range`` ([-2, 2]), ``layer_norm`` (true),
``base_activation`` (silu, or null), ``spline_init_scale`` (0.1): FastKAN's defaults.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from adapters.base import Adapter, AdapterError, ModelSpec, isolated_rng, named_targets
from adapters.flops import Flops, LayerWork, activation_flops, flops_of
from adapters.mlp import ACTIVATIONS

#: FLOPs per input of ``native_layer_norm`` with an affine transform, by the rules of
#: adapters/flops.py: mean (n - 1 adds, 1 divide), subtract (n), square (n), sum (n - 1),
#: divide, add eps and rsqrt (3), scale (n), affine multiply and add (2n): 7n + 2 per layer
LAYER_NORM_PER_INPUT = 7
LAYER_NORM_PER_LAYER = 2
#: FLOPs per basis value: subtract the centre, divide by h, square (a multiply), negate, exp
RBF_PER_BASIS = 5


class FastKANOptions(BaseModel):
    """FastKAN's hyper-parameters (its defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    basis: Literal["gaussian_rbf"] = "gaussian_rbf"
    centres: int = Field(8, ge=2, description="Gaussian centres per input (FastKAN num_grids)")
    range: tuple[float, float] = (-2.0, 2.0)
    layer_norm: bool = True
    base_activation: Literal["silu", "relu", "gelu", "tanh", "sigmoid"] | None = "silu"
    spline_init_scale: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _ordered_range(self) -> FastKANOptions:
        if not self.range[0] < self.range[1]:
            raise ValueError(f"range must be increasing, got {list(self.range)}")
        return self


class FastKANLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, o: FastKANOptions) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim) if o.layer_norm else None
        lo, hi = o.range
        self.register_buffer("centres", torch.linspace(lo, hi, o.centres))
        self.spacing = (hi - lo) / (o.centres - 1)
        self.spline_weight = nn.Parameter(torch.empty(out_dim, in_dim * o.centres))
        nn.init.trunc_normal_(self.spline_weight, std=o.spline_init_scale)
        self.base_activation = (ACTIVATIONS[o.base_activation]() if o.base_activation
                                else None)
        self.base = nn.Linear(in_dim, out_dim) if o.base_activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.norm(x) if self.norm is not None else x
        d = (u.unsqueeze(-1) - self.centres) / self.spacing
        basis = torch.exp(-(d * d))
        y = basis.flatten(-2) @ self.spline_weight.t()
        if self.base is not None:
            y = y + self.base(self.base_activation(x))
        return y


class FastKANAdapter(Adapter):
    name = "fastkan"
    family = "kan"
    basis = "gaussian-rbf"
    spec_fields = frozenset({"hidden", "options"})
    hyper = FastKANOptions

    def _options(self, spec: ModelSpec, in_dim: int) -> FastKANOptions:
        o = self.hyperparameters(spec)
        if o.layer_norm and in_dim == 1:
            raise AdapterError(f"adapter '{self.name}': a layer norm over one input maps it to 0 "
                               f"(FastKAN refuses it too); set options.layer_norm: false for a "
                               f"1-input dataset")
        return o

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        o = self._options(spec, in_dim)
        widths = spec.widths(in_dim, out_dim)
        with isolated_rng(seed):
            model = nn.Sequential(*(FastKANLayer(a, b, o) for a, b in zip(widths[:-1], widths[1:])))
        return model.to(device=device, dtype=dtype)

    def param_count(self, spec, in_dim, out_dim):
        """Per layer ``a -> b``: layer norm ``2a``, Gaussian weights ``b*a*centres``, base
        ``b*a + b``."""
        o = self._options(spec, in_dim)
        widths = spec.widths(in_dim, out_dim)
        return sum((2 * a if o.layer_norm else 0) + b * a * o.centres
                   + ((b * a + b) if o.base_activation else 0)
                   for a, b in zip(widths[:-1], widths[1:]))

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """Per layer ``a -> b`` with ``C`` centres: layer norm ``7a + 2``, the basis ``5aC``
        (subtract, divide, square, negate, exp), its product with the weights ``2abC``; the
        base branch: the activation ``FLOPS[act]*a``, ``addmm`` ``2ab`` plus the bias ``b``,
        and the add to the spline output ``b``. With the layer norm, the basis depends on its
        learned parameters, so training differentiates through it in the first layer too.
        No nominal figure: KANbeFair prices B-splines only."""
        o = self._options(spec, in_dim)
        widths = spec.widths(in_dim, out_dim)
        act = activation_flops(o.base_activation) if o.base_activation else 0
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            basis = RBF_PER_BASIS * a * o.centres
            spline = 2 * a * b * o.centres
            if o.layer_norm:  # the basis depends on the norm's learned scale and shift
                work = dict(matmul_learned_input=spline, on_input=0,
                            after=LAYER_NORM_PER_INPUT * a + LAYER_NORM_PER_LAYER + basis)
            else:
                work = dict(matmul_learned_input=0, on_input=basis, after=0)
            matmul = spline if not o.layer_norm else 0
            if o.base_activation:
                work["on_input"] += act * a
                matmul += 2 * a * b
                work["after"] += 2 * b  # the bias (addmm's added matrix), the branches' sum
            layers.append(LayerWork(matmul=matmul, **work))
        return flops_of(layers, nominal=None)

    def spline_coefficients(self, model):
        return [layer.spline_weight for layer in model]

    def init_targets(self, model):
        """Per layer the Gaussian weights as spline coefficients (fans ``in*centres`` and
        ``out*centres``: a linear map of the basis values), the base weight (``in``, ``out``)
        and its bias; the layer norm keeps its identity start."""
        specs = []
        for layer in model:
            n_out, n_basis = layer.spline_weight.shape
            centres = len(layer.centres)
            specs.append(("spline_coefficients", layer.spline_weight, n_basis,
                          n_out * centres))
            if layer.base is not None:
                specs.append(("base_weight", layer.base.weight, layer.base.in_features,
                              layer.base.out_features))
                specs.append(("bias", layer.base.bias, None, None))
        return named_targets(model, specs)

