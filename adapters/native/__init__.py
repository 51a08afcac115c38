"""kanbench's own B-spline KAN: efficient-kan's function and parameters, a faster kernel.

Options (``ModelSpec.options``): ``scale_noise`` (0.1), ``scale_base`` (1.0),
``scale_spline`` (1.0) and ``grid_eps`` (0.02) as in efficient-kan; ``contraction``
("auto", "fused", "dense", "sparse" or "reference": how the uniform-grid kernel contracts the
basis with the weights, see adapters/native/layer.py, fused.py and sparse.py; "reference" is plain
autograd). ``KANBENCH_NATIVE_COMPILE=0`` keeps the kernels eager (no torch.compile).
"""

from __future__ import annotations

import torch

from adapters.base import Adapter, ModelSpec, compile_warm_up, isolated_rng, package_version
from adapters.native.layer import NativeKAN, NativeKANLayer

__all__ = ["NativeAdapter", "NativeKAN", "NativeKANLayer"]

#: bumped whenever the kernel's numerics or parameterisation change
KERNEL_VERSION = "2"

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

    def provenance(self) -> dict[str, str]:
        version = package_version("kanbench") or "unknown"
        # of the model built last: "true" when its warm-up ran torch.compile'd kernels, "false"
        # when it runs eager only (compiling off, unavailable or failed; contraction forced to
        # dense, sparse or reference; non-uniform grids), "unknown" before its warm-up
        compiled = self._compiled_kernel
        return {
            "provider": "kanbench-native",
            "version": f"{version}+kernel{KERNEL_VERSION}",
            "compiled_kernel": compiled,
        }

    _compiled_kernel = "unknown"

    def warm_up(self, model: NativeKAN, x: torch.Tensor) -> bool:
        """Compile the layers' kernels (when compiling is on) before the clock starts."""
        compiling = [layer for layer in model.layers if layer.compiles()]
        if not compiling:
            self._compiled_kernel = "false"
            return False
        compile_warm_up(model, x)
        ran = any(layer.uses_compiled_kernels() for layer in compiling)
        self._compiled_kernel = "true" if ran else "false"
        return True

    def build(
        self,
        spec: ModelSpec,
        in_dim: int,
        out_dim: int,
        seed: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> NativeKAN:
        self.check_options(spec)
        opts = {**_DEFAULTS, **spec.options}
        with isolated_rng(seed):
            model = NativeKAN(
                spec.widths(in_dim, out_dim),
                grid=spec.grid,
                k=spec.k,
                grid_range=tuple(spec.grid_range),
                **opts,
            )
        self._compiled_kernel = "unknown" if any(layer.compiles() for layer in model.layers) else "false"
        return model.to(device=device, dtype=dtype)

    def param_count(self, spec: ModelSpec, in_dim: int, out_dim: int) -> int:
        # per edge: one base weight, one spline scaler, G + k spline weights
        widths = spec.widths(in_dim, out_dim)
        per_edge = spec.grid + spec.k + 2
        return sum(a * b * per_edge for a, b in zip(widths[:-1], widths[1:]))

    def flops_per_sample(self, spec: ModelSpec, in_dim: int, out_dim: int) -> int:
        # per edge: base and spline multiply-adds (k + 1 active bases, 2 FLOPs each, plus the
        # base term); per input: SiLU (~4) and the basis (~(k + 1)^2 Horner steps)
        widths = spec.widths(in_dim, out_dim)
        k = spec.k
        edges = sum(a * b * (2 * (k + 1) + 2) for a, b in zip(widths[:-1], widths[1:]))
        inputs = sum(a * (4 + 2 * (k + 1) ** 2) for a in widths[:-1])
        return edges + inputs

    def spline_coefficients(self, model: NativeKAN) -> list[torch.Tensor]:
        return [layer.spline_weight for layer in model.layers]

    def regularization(self, model: NativeKAN) -> torch.Tensor:
        return model.regularization_loss()

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
