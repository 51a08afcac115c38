"""kanbench's own B-spline KAN: efficient-kan's function and parameters, a faster kernel.

The base activation is ``ModelSpec.activation`` (any of ``adapters.mlp.ACTIVATIONS``, as in
efficient-kan), on every contraction. Options (``ModelSpec.options``): ``scale_noise`` (0.1),
``scale_base`` (1.0), ``scale_spline`` (1.0) and ``grid_eps`` (0.02) as in efficient-kan; ``contraction``
("auto", "fused", "dense", "sparse" or "reference": how the uniform-grid kernel contracts the
basis with the weights, see adapters/native/layer.py, fused.py and sparse.py; "reference" is plain
autograd). ``KANBENCH_NATIVE_COMPILE=0`` keeps the kernels eager (no torch.compile).
"""

from __future__ import annotations

import torch

from adapters.base import (
    Adapter,
    AdapterError,
    ModelSpec,
    bspline_edge_targets,
    compile_warm_up,
    isolated_rng,
    named_targets,
    package_version,
)
from adapters.native import activations
from adapters.native.layer import CONTRACTIONS, NativeKAN, NativeKANLayer

__all__ = ["NativeAdapter", "NativeKAN", "NativeKANLayer"]

#: bumped whenever the kernel's numerics or parameterisation change
KERNEL_VERSION = "3"

_DEFAULTS = {
    "scale_noise": 0.1,
    "scale_base": 1.0,
    "scale_spline": 1.0,
    "grid_eps": 0.02,
    "contraction": "auto",
}


class NativeAdapter(Adapter):
    name = "native"
    family = "kan"
    option_keys = frozenset(_DEFAULTS)
    spec_fields = frozenset(ModelSpec.model_fields)  # grid_schedule included: extend_grid

    def provenance(self, model: torch.nn.Module | None = None) -> dict[str, str]:
        """The kernel's version; of a model also ``compiled_kernel``: "true" when its warm-up
        ran torch.compile'd kernels, "false" when it runs eager only (compiling off,
        unavailable or failed; contraction "dense" or "reference"), "unknown" before its
        warm-up."""
        version = package_version("kanbench") or "unknown"
        prov = {"provider": "kanbench-native", "version": f"{version}+kernel{KERNEL_VERSION}"}
        if model is not None:
            compiled = self._net(model).compiled_kernel
            prov["compiled_kernel"] = {None: "unknown", True: "true", False: "false"}[compiled]
        return prov

    def warm_up(self, model: NativeKAN, x: torch.Tensor) -> bool:
        """Compile the layers' kernels (when compiling is on) before the clock starts; the
        model records whether they ran compiled (``model.compiled_kernel``)."""
        model = self._net(model)
        compiling = [layer for layer in model.layers if layer.compiles()]
        if not compiling:
            model.compiled_kernel = False
            return False
        compile_warm_up(model, x)
        model.compiled_kernel = any(layer.uses_compiled_kernels() for layer in compiling)
        return True

    @staticmethod
    def _net(model: torch.nn.Module) -> NativeKAN:
        if not isinstance(model, NativeKAN):
            raise AdapterError(f"native: expected a NativeKAN, got {type(model)}")
        return model

    def check_spec(self, spec: ModelSpec) -> None:
        self.check_options(spec)
        self.check_choice("activation", spec.activation, activations.ACTIVATIONS)
        if "contraction" in spec.options:
            self.check_choice("option contraction", spec.options["contraction"], CONTRACTIONS)
        for key in ("scale_noise", "scale_base", "scale_spline", "grid_eps"):
            value = spec.options.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise AdapterError(f"adapter 'native': option {key} must be a number, got {value!r}")

    def build(
        self,
        spec: ModelSpec,
        in_dim: int,
        out_dim: int,
        seed: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> NativeKAN:
        self.check_spec(spec)
        opts = {**_DEFAULTS, **spec.options}
        with isolated_rng(seed):
            model = NativeKAN(
                spec.widths(in_dim, out_dim),
                grid=spec.grid,
                k=spec.k,
                grid_range=tuple(spec.grid_range),
                base_activation=spec.activation,
                **opts,
            )
        return model.to(device=device, dtype=dtype)

    def param_count(self, spec: ModelSpec, in_dim: int, out_dim: int) -> int:
        # per edge: one base weight, one spline scaler, G + k spline weights
        self.check_spec(spec)
        widths = spec.widths(in_dim, out_dim)
        per_edge = spec.grid + spec.k + 2
        return sum(a * b * per_edge for a, b in zip(widths[:-1], widths[1:]))

    def flops_per_sample(self, spec: ModelSpec, in_dim: int, out_dim: int) -> int:
        # per edge: base and spline multiply-adds (k + 1 active bases, 2 FLOPs each, plus the
        # base term); per input: the activation (~4) and the basis (~(k + 1)^2 Horner steps)
        widths = spec.widths(in_dim, out_dim)
        k = spec.k
        edges = sum(a * b * (2 * (k + 1) + 2) for a, b in zip(widths[:-1], widths[1:]))
        inputs = sum(a * (4 + 2 * (k + 1) ** 2) for a in widths[:-1])
        return edges + inputs

    def spline_coefficients(self, model: NativeKAN) -> list[torch.Tensor]:
        return [layer.spline_weight for layer in model.layers]

    def init_targets(self, model: NativeKAN):
        """Per layer, as efficient-kan: ``base_weight`` (out, in), ``spline_weight``
        (out, in, G+k) and ``spline_scaler`` (out, in); see :func:`bspline_edge_targets`."""
        specs = []
        for layer in self._net(model).layers:
            specs += bspline_edge_targets(layer.base_weight, layer.spline_weight, layer.spline_scaler)
        return named_targets(model, specs)

    regularization_terms = frozenset({"l1", "entropy"})

    def regularization(self, model: NativeKAN, l1: float = 1.0,
                       entropy: float = 1.0) -> torch.Tensor:
        """efficient-kan's regulariser (see EfficientKANAdapter.regularization)."""
        return model.regularization_loss(l1, entropy)

    def update_grid(self, model: NativeKAN, x: torch.Tensor) -> bool:
        model.update_grid(x)
        return True

    def extend_grid(self, model: NativeKAN, new_grid: int, x: torch.Tensor | None = None) -> float:
        """Refine every layer to ``new_grid`` intervals preserving the function (see
        :meth:`NativeKANLayer.extend_grid`); returns the largest per-edge deviation.
        Parameters are replaced: rebuild the optimiser afterwards."""
        worst = 0.0
        with torch.no_grad():
            for layer in model.layers:
                worst = max(worst, layer.extend_grid(new_grid, x))
                if x is not None:
                    x = layer(x)
        return worst
