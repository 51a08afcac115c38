"""Chebyshev, Fourier, Jacobi, Taylor and wavelet KANs: the layers of the PyPI package ``ikan``.

Every one computes ``y = W_base act(x) + sum_i sum_k c[o, i, k] phi_k(x_i) (+ bias)``, one layer
per consecutive width pair and nothing between layers (ikan's ``XKAN`` networks), with the basis
``phi`` of its family. They are ikan's code, run as ikan ships it, contained:

* ``import ikan`` changes the working directory and prints (its ``GroupKAN`` module) and pulls in
  triton and timm; each family's file needs only torch and torchinfo, so it is loaded from the
  installed file on its own (:func:`load_ikan_file`), never through the package.
* Layers initialise from the global torch RNG: built inside :func:`isolated_rng`.
* The defaults are those of ikan's network classes (``ChebyKAN(...)`` etc.), which differ from
  its layer classes'; every value is passed explicitly and stored with the run.

What ikan's code does that its names do not say (the README lists these too): Chebyshev maps
inputs through ``tanh(clamp(x, -1, 1))`` before ``T_k(u) = cos(k acos u)``, so the basis sees
``[-0.76, 0.76]`` and has no gradient beyond ``|x| > 1``; Jacobi evaluates its own three-term
recurrence on ``tanh(x)``, not the Jacobi polynomials' (each term still has degree ``n``: the
same function space, another basis), and divides by ``(a+b)(a+b+1)(a+b+2)``; Taylor's ``order``
counts terms (``order: 3`` is ``1, x, x^2``); Fourier's ``smooth_initialization`` multiplies the
k-th coefficients by ``k^2`` (it grows them); the wavelet layer has one wavelet per edge with a
learned scale and translation, and its ``shannon`` window runs over the input index.

ikan's group-rational KAN (``GroupKAN``) is not here: the 1.3.0 wheel lacks the ``init.json``
its rational functions start from, so it cannot build a working model.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from adapters.base import Adapter, AdapterError, ModelSpec, isolated_rng, named_targets, package_version
from adapters.flops import Flops, LayerWork, activation_flops, flops_of
from adapters.mlp import ACTIVATIONS

INSTALL_HINT = "pip install ikan"

BaseActivation = Literal["silu", "relu", "gelu", "tanh", "sigmoid", "leaky_relu", "elu"]


def load_ikan_file(stem: str) -> ModuleType:
    """ikan's ``<stem>.py`` module, without executing the ``ikan`` package ``__init__`` (which
    changes the working directory and prints; see the module docstring), loaded once under a
    private name; reused as ``ikan.<stem>`` if something imported the package already."""
    if f"ikan.{stem}" in sys.modules:
        return sys.modules[f"ikan.{stem}"]
    private = f"_kanbench_ikan_{stem}"
    if private in sys.modules:
        return sys.modules[private]
    spec = importlib.util.find_spec("ikan")  # a top-level spec: the package is not executed
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'ikan'")
    path = Path(next(iter(spec.submodule_search_locations))) / f"{stem}.py"
    file_spec = importlib.util.spec_from_file_location(private, path)
    if file_spec is None or file_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[private] = module  # classes pickle within this process
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[private]
        raise
    return module


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_activation: BaseActivation = "silu"


class ChebyshevOptions(_Options):
    basis: Literal["chebyshev"] = "chebyshev"
    degree: int = Field(7, ge=1, le=50, description="highest order D: T_0..T_D")
    scale_base: float = Field(0.5, gt=0)
    scale_cheby: float = Field(0.3, gt=0)
    use_bias: bool = False


class FourierOptions(_Options):
    basis: Literal["fourier"] = "fourier"
    num_frequencies: int = Field(5, ge=1, le=100, description="F: cos(kx), sin(kx), k = 1..F")
    scale_base: float = Field(0.1, gt=0)
    scale_fourier: float = Field(0.05, gt=0)
    use_bias: bool = True
    smooth_initialization: bool = False


class JacobiOptions(_Options):
    basis: Literal["jacobi"] = "jacobi"
    degree: int = Field(5, ge=1, le=50, description="highest degree D: P_0..P_D")
    a: float = Field(1.0, gt=-1, description="alpha")
    b: float = Field(1.0, gt=-1, description="beta")
    scale_base: float = Field(1.0, gt=0)
    scale_jacobi: float = Field(1.0, gt=0)
    use_bias: bool = True

    @model_validator(mode="after")
    def _recurrence_defined(self) -> JacobiOptions:
        if self.degree >= 2 and any(math.isclose(self.a + self.b, v, abs_tol=1e-12)
                                    for v in (0.0, -1.0)):
            raise ValueError("ikan's recurrence divides by (a+b)(a+b+1)(a+b+2) from degree 2 "
                             f"on: a + b = {self.a + self.b:g} is not allowed (so Legendre, "
                             "a = b = 0, and Chebyshev, a = b = -0.5, are out)")
        return self


class TaylorOptions(_Options):
    basis: Literal["taylor"] = "taylor"
    order: int = Field(3, ge=1, le=50, description="number of terms: 1, x, .., x^(order-1)")
    scale_base: float = Field(0.5, gt=0)
    scale_taylor: float = Field(0.3, gt=0)
    use_bias: bool = True


class WaveletOptions(_Options):
    basis: Literal["wavelet"] = "wavelet"
    wavelet_type: Literal["mexican_hat", "morlet", "dog", "meyer", "shannon"] = "mexican_hat"
    scale_base: float = Field(0.5, gt=0)
    scale_wavelet: float = Field(0.3, gt=0)
    use_bias: bool = True


class IkanNet(nn.Module):
    """ikan's ``XKAN``: one layer per consecutive width pair, nothing between them."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x.contiguous())  # the layers reshape with .view
        return x


class IkanFamilyAdapter(Adapter):
    """One ikan family; subclasses name the file, the layer class, the hyper-parameters and the
    per-layer counts (see the module docstring)."""

    family = "kan"
    spec_fields = frozenset({"hidden", "options"})
    stem: ClassVar[str]  # ikan/<stem>.py
    layer_class: ClassVar[str]
    #: the layer's coefficient parameters (what probes summarise and a shock perturbs)
    coefficients: ClassVar[tuple[str, ...]]

    def unavailable_reason(self) -> str | None:
        try:
            load_ikan_file(self.stem)
        except Exception as exc:  # missing, or a version without this file
            return f"ikan's {self.stem}.py cannot be loaded ({exc}); {INSTALL_HINT}"
        return None

    def provenance(self, model: nn.Module | None = None) -> dict[str, str]:
        return {"provider": "ikan", "version": package_version("ikan") or "unknown"}

    def layer_kwargs(self, o: Any) -> dict[str, Any]:
        """The layer's keyword arguments: every hyper-parameter but the basis label."""
        kwargs = o.model_dump(exclude={"basis"})
        kwargs["base_activation"] = ACTIVATIONS[o.base_activation]
        return kwargs

    def bases(self, o: Any) -> int:
        """Coefficients per edge (input x output pair)."""
        raise NotImplementedError

    #: whether the layer computes every edge's terms as a tensor of their own
    #: (batch x out x in x terms) instead of a contraction
    materialises_edges: ClassVar[bool] = False

    def materialised_terms(self, spec: ModelSpec) -> int | None:
        """Terms per edge of the (batch, out, in, terms) tensor the layer holds, or None when
        it contracts instead (the speed benchmarks skip sizes that would take gigabytes)."""
        return self.bases(self.hyperparameters(spec)) if self.materialises_edges else None

    def edge_params(self, o: Any) -> int:
        """Trainable parameters per edge: the coefficients and the base weight."""
        return self.bases(o) + 1

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        o = self.hyperparameters(spec)
        self.require_available()
        cls = getattr(load_ikan_file(self.stem), self.layer_class)
        widths = spec.widths(in_dim, out_dim)
        with isolated_rng(seed):
            layers = [cls(a, b, **self.layer_kwargs(o)) for a, b in zip(widths[:-1], widths[1:])]
        return IkanNet(layers).to(device=device, dtype=dtype)

    def param_count(self, spec, in_dim, out_dim):
        o = self.hyperparameters(spec)
        widths = spec.widths(in_dim, out_dim)
        return sum(a * b * self.edge_params(o) + (b if o.use_bias else 0)
                   for a, b in zip(widths[:-1], widths[1:]))

    def spline_coefficients(self, model):
        return [getattr(layer, name) for layer in model.layers for name in self.coefficients]

    def init_targets(self, model):
        """Per layer the base weight (fans ``in``, ``out``), the coefficients (fans ``in*K``
        and ``out*K`` with K coefficients per edge, as for B-spline coefficients) and the bias."""
        specs = []
        for layer in model.layers:
            n_out, n_in = layer.base_weight.shape
            specs.append(("base_weight", layer.base_weight, n_in, n_out))
            for name in self.coefficients:
                k = getattr(layer, name).numel() // (n_in * n_out)
                specs.append(("spline_coefficients", getattr(layer, name), n_in * k, n_out * k))
            if getattr(layer, "use_bias", False):
                specs.append(("bias", layer.bias, None, None))
        return named_targets(model, specs)

    # -- FLOPs ---------------------------------------------------------------------------------
    def basis_flops(self, o: Any, a: int, b: int) -> tuple[int, int, int]:
        """(per-input basis work, contraction matmul, elementwise work after) of one layer."""
        raise NotImplementedError

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """Per layer ``a -> b``: the base branch (activation ``FLOPS[act]*a``, matmul ``2ab``),
        the family's basis and contraction (:meth:`basis_flops`, documented per family), the
        sum of the branches ``b`` and the bias ``b``. No nominal figure (KANbeFair prices
        B-splines only)."""
        o = self.hyperparameters(spec)
        widths = spec.widths(in_dim, out_dim)
        act = activation_flops(o.base_activation)
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            on_input, matmul, after = self.basis_flops(o, a, b)
            layers.append(LayerWork(matmul=2 * a * b + matmul, on_input=act * a + on_input,
                                    after=after + b + (b if o.use_bias else 0)))
        return flops_of(layers, nominal=None)


class ChebyshevKANAdapter(IkanFamilyAdapter):
    name = "chebyshev_kan"
    basis = "chebyshev"
    hyper = ChebyshevOptions
    stem, layer_class, coefficients = "ChebyKAN", "ChebyKANLinear", ("cheby_coeffs",)

    def bases(self, o):
        return o.degree + 1

    def basis_flops(self, o, a, b):
        """``clamp`` (1), ``tanh`` (6), ``acos`` (1) per input; per basis value ``k theta``
        and ``cos`` (2); the einsum ``2ab(D+1)``."""
        k = o.degree + 1
        return 8 * a + 2 * a * k, 2 * a * b * k, 0


class FourierKANAdapter(IkanFamilyAdapter):
    name = "fourier_kan"
    basis = "fourier"
    hyper = FourierOptions
    stem, layer_class, coefficients = "FourierKAN", "FourierKANLinear", ("fourier_coeffs",)

    def bases(self, o):
        return 2 * o.num_frequencies

    def basis_flops(self, o, a, b):
        """Per input and frequency ``kx``, ``cos``, ``sin`` (3); two einsums ``2abF`` each, and
        their sum ``b``."""
        f = o.num_frequencies
        return 3 * a * f, 4 * a * b * f, b


class JacobiKANAdapter(IkanFamilyAdapter):
    name = "jacobi_kan"
    basis = "jacobi"
    hyper = JacobiOptions
    stem, layer_class, coefficients = "JacobiKAN", "JacobiKANLinear", ("jacobi_coeffs",)

    def bases(self, o):
        return o.degree + 1

    def basis_flops(self, o, a, b):
        """``tanh`` (6) per input; ``P_1 = 0.5 (2(a+1) u + (a-b))`` (3); each further degree
        ``A = (beta + alpha u) / gamma`` (3) and ``A P_{n-1} - B P_{n-2}`` (3); the einsum
        ``2ab(D+1)``."""
        return 9 * a + 6 * a * (o.degree - 1), 2 * a * b * (o.degree + 1), 0


class TaylorKANAdapter(IkanFamilyAdapter):
    name = "taylor_kan"
    basis = "taylor"
    hyper = TaylorOptions
    stem, layer_class, coefficients = "TaylorKAN", "TaylorKANLinear", ("taylor_coeffs",)
    materialises_edges = True

    def bases(self, o):
        return o.order

    def basis_flops(self, o, a, b):
        """``x ** k`` per input and term (1); the coefficient products ``ab*order`` and their
        sums over terms and inputs ``ab*order - b``: elementwise (no matrix product)."""
        n = o.order
        return a * n, 0, a * b * n + (a * b * n - b)


class WaveletKANAdapter(IkanFamilyAdapter):
    name = "wavelet_kan"
    basis = "wavelet"
    hyper = WaveletOptions
    stem, layer_class, coefficients = "WaveletKAN", "WaveletKANLinear", ("wavelet_weights",)
    materialises_edges = True

    #: FLOPs per edge of each mother wavelet on z = (x - t)/s, as ikan computes it
    WAVELET_FLOPS: ClassVar[dict[str, int]] = {
        "mexican_hat": 6,  # z**2 twice, -1, *-0.5, exp, the product
        "morlet": 6,       # 5z, cos, z**2, *-0.5, exp, the product
        "dog": 5,          # -z, z**2, *-0.5, exp, the product
        # |z|, pi|z|, sin, three comparisons, the product (7), and where 1/2 < |z| < 1 the
        # polynomial nu(2|z| - 1) and cos(pi/2 nu) (15): priced as if every |z| were there,
        # an upper bound (the work depends on the data)
        "meyer": 22,
        "shannon": 3,      # z/pi, sinc, times the window
    }

    def bases(self, o):
        return 1

    def edge_params(self, o):
        """Per edge: the wavelet weight, its scale and translation, and the base weight."""
        return 4

    def basis_flops(self, o, a, b):
        """Per edge ``(x - t)/s`` (2), the wavelet, its weight (1); the sum over inputs
        ``ab - b``: elementwise, on (batch, out, in)."""
        return 0, 0, a * b * (3 + self.WAVELET_FLOPS[o.wavelet_type]) + (a * b - b)

    def init_targets(self, model):
        """Per layer the base weight, the wavelet weights as coefficients (fans ``in``,
        ``out``), the scales (set to 1, as spline scalers) and translations and bias (set to
        0, as biases)."""
        specs = []
        for layer in model.layers:
            n_out, n_in = layer.base_weight.shape
            specs += [("base_weight", layer.base_weight, n_in, n_out),
                      ("spline_coefficients", layer.wavelet_weights, n_in, n_out),
                      ("spline_scaler", layer.scale, None, None),
                      ("bias", layer.translation, None, None)]
            if layer.use_bias:
                specs.append(("bias", layer.bias, None, None))
        return named_targets(model, specs)

