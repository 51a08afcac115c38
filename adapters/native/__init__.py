"""kanbench's own B-spline KAN: efficient-kan's function and parameters, a faster kernel.

The base activation is ``ModelSpec.activation`` (any of ``adapters.mlp.ACTIVATIONS``, as in
efficient-kan), on every contraction. Options (``ModelSpec.options``): ``scale_noise`` (0.1),
``scale_base`` (1.0), ``scale_spline`` (1.0) and ``grid_eps`` (0.02) as in efficient-kan; ``contraction``
("auto", "fused", "dense", "sparse" or "reference": how the uniform-grid kernel contracts the
basis with the weights, see adapters/native/layer.py, fused.py and sparse.py; "reference" is plain
autograd). ``KANBENCH_NATIVE_COMPILE=0`` keeps the kernels eager (no torch.compile).
"""

from __future__ import annotations

import time

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
from adapters.flops import Flops, LayerWork, activation_flops, flops_of, kanbefair_kan_flops
from adapters.native import activations, fused, sparse
from adapters.native.layer import CONTRACTIONS, NativeKAN, NativeKANLayer, _fused_wins

__all__ = ["NativeAdapter", "NativeKAN", "NativeKANLayer", "compile_pays"]

#: Compiling pays when the planned steps times the largest saving measured per step exceeds the
#: cost of compiling, both conservative (towards not compiling): compiled train steps took at
#: best about half the eager ones (measured, 2 cores, median of 20: [784, 64, 10] b256 G5 9.2 ms
#: against 17.3 ms, [2, 5, 1] b1000 0.71 ms against 1.28 ms; [30, 8, 2] b512 and [1000, 1000,
#: 1] b100 were no faster compiled); compiling one layer configuration's forward and backward
#: took about 12 s with an empty cache (a [3, 4, 2] model's warm-up: 23.7 s for 2), which a
#: cached one does not cost, but the disk cache cannot be asked cheaply; kernels an earlier run
#: of this process warmed up on the same device and dtype cost nothing (``Kernels.warm``).
COMPILED_STEP_FRACTION = 0.5
COMPILE_SECONDS_PER_CONFIG = 12.0
#: eager forward + backward passes timed to estimate a step (after one untimed pass)
TIMED_PASSES = 3


def compile_pays(steps: int, eager_step_s: float, configs: int, ready: int = 0
                 ) -> tuple[bool, str]:
    """Whether compiling ``configs`` layer configurations pays over ``steps`` steps whose eager
    forward and backward take ``eager_step_s``, and the sentence that says why. ``ready``
    more configurations are compiled already in this process (by an earlier run of the same
    shapes: another seed, say) and cost nothing."""
    saving = steps * eager_step_s * (1 - COMPILED_STEP_FRACTION)
    cost = configs * COMPILE_SECONDS_PER_CONFIG
    pays = saving > cost
    plural = lambda n: f"{n} layer configuration{'s' if n != 1 else ''}"  # noqa: E731
    gain = f"at most {saving:.3g} s saved over {steps} steps of {1e3 * eager_step_s:.3g} ms eager"
    if configs == 0:
        return pays, (f"{'compiled' if pays else 'eager'}: {plural(ready)} compiled already in "
                      f"this process; {gain}")
    compiled_already = f" ({ready} more compiled already in this process)" if ready else ""
    return pays, (f"{'compiled' if pays else 'eager'}: {gain}, {'more' if pays else 'less'} "
                  f"than {cost:.3g} s to compile {plural(configs)}{compiled_already}")


def eager_step_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Median time of an eager forward and backward on ``x`` (gradients cleared after; the
    parameters, the optimiser and the RNG are untouched)."""
    was_training = model.training
    model.train()
    times = []
    for i in range(TIMED_PASSES + 1):
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        tick = time.perf_counter()
        model(x).float().square().mean().backward()
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        if i:  # the first pass allocates
            times.append(time.perf_counter() - tick)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return sorted(times)[len(times) // 2]

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
            decision = getattr(model, "compile_decision", None)
            if decision is not None:
                prov["compile_decision"] = decision
        return prov

    def warm_up(self, model: NativeKAN, x: torch.Tensor, steps: int | None = None) -> bool:
        """Compile the layers' kernels (when compiling is on) before the clock starts; the
        model records whether they ran compiled (``model.compiled_kernel``).

        Given the run's planned ``steps``, compile only where it pays
        (:func:`compile_pays`): otherwise the layers keep the eager contractions, whose
        results are the same. The model records the decision and its figures
        (``model.compile_decision``, in the run's provenance)."""
        model = self._net(model)
        if steps is not None:  # decided afresh (after a grid refinement too)
            for layer in model.layers:
                layer.compile_allowed = True
        compiling = model.compiled_warm()
        if not compiling:
            model.compiled_kernel = False
            return False
        if steps is not None:
            def count(warm: bool) -> int:
                return len({(layer._kernel_config(), layer.in_features, layer.out_features)
                            for layer, ready in compiling if ready == warm})

            for layer, _ in compiling:
                layer.compile_allowed = False
            eager_s = eager_step_seconds(model, x)
            pays, model.compile_decision = compile_pays(steps, eager_s, count(False), count(True))
            if not pays:
                model.compiled_kernel = False
                return True  # the timing ran before the clock: warm-up time
            for layer, _ in compiling:
                layer.compile_allowed = True
        compile_warm_up(model, x)
        model.compiled_kernel = model.uses_compiled_kernels()
        if model.compiled_kernel:
            model.mark_compiled_warm()
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

    @staticmethod
    def executed_contraction(spec: ModelSpec) -> str:
        """The contraction a model of ``spec`` runs: option ``contraction``, with "auto" resolved
        as the layer does on uniform knots: compiled (``KANBENCH_NATIVE_COMPILE`` on), "fused"
        while ``G + k <= 8(k + 1)``, else "sparse"; eager, "dense" there, else "sparse". (The
        eager rule also takes "sparse" where the basis matrix of a batch would pass 24 MiB,
        and a failed compilation falls back to the eager rule: neither is known here.)"""
        mode = spec.options.get("contraction", "auto")
        if mode != "auto":
            return mode
        if not _fused_wins(spec.grid, spec.k):
            return "sparse"
        return "fused" if fused.enabled() else "dense"

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """The uniform-knot kernels of :class:`NativeKANLayer` per layer ``a -> b``, ``n = G + k``
        bases, ``k + 1`` of them active per input, by :meth:`executed_contraction`. Every path
        prices the base activation ``FLOPS[act]`` per input and locates each input on the
        grid: ``t = (x - lo) / h + k`` (3), its cell ``floor(t)`` and local position ``t - cell``
        (2), plus a clamp and ``nan_to_num`` (dense, sparse, reference) and two span comparisons
        (fused, sparse, reference). A cardinal segment polynomial by Horner costs ``2(k + 1)``.

        * "fused" (fused.py; compiled or its eager twin, same arithmetic): per input 7 (locate,
          span), the ``k + 1`` segment values each zeroed outside the span, ``(k+1)(2k + 3)``,
          each of the ``n`` columns' slot ``j - cell + k`` (2) and its pick among ``k + 1``
          slots (compare and select each), ``2n(k + 2)``; one GEMM of the ``n + 1`` columns
          per input with the packed weights, ``2ab(n + 1)`` (matmul; the same multiply-adds in
          inductor's loops in small layers, at most ``fused.BATCH_INNER_MAX_IN`` inputs and
          ``fused.SMALL_LOOP_FLOATS`` packed weights: a contraction, not a matrix product,
          counted as gather, whose sums of ``a(n + 1)`` products take one add fewer each,
          ``2ab(n + 1) - b``); layers whose packed
          weight is built in input blocks add their partial products, ``(blocks - 1)b``.
        * "dense" (layer.py ``_DenseKAN``, eager): per input 7 (locate), the powers of ``u``
          (``k``) and their product with the constant ``(k+1) x (k+1)`` segment table,
          ``2(k + 1)^2`` (matmul, constant operand); the dense basis row as an ``embedding_bag``
          of ``k + 1`` weighted rows of a padded identity, ``2(k + 1)n`` (2 per multiply-add);
          the base GEMM ``2ab`` and the spline ``addmm_`` ``2abn`` (matmul), which accumulates
          into the base output, ``b`` (after).
        * "sparse" (sparse.py): per input 9 (locate with clamp, nan_to_num and span), the
          ``k + 1`` segment values zeroed outside the span and for missing bases,
          ``(k + 1)(2k + 4)``; the base GEMM ``2ab`` (matmul); the ``embedding_bag`` of the
          ``k + 1`` active table rows per input, ``2(k + 1)ab`` (gather), added into the
          output once per input block, ``blocks * b``.
        * "reference" (plain autograd): per input 9 (locate, span, nan_to_num, clamp), Horner
          by ``addcmul`` on all ``k + 1`` values, ``2k(k + 1)``, and zeroing the missing ones,
          ``k + 1``; the dense basis is scattered (free); two ``F.linear``, ``2ab(n + 1)``
          (matmul), and their sum ``b``.

        The scaled spline weights (``spline_weight * spline_scaler``) and packed tables are per
        batch. After ``update_grid`` (non-uniform knots) the layer runs the Cox-de Boor reference,
        not modelled here; a ``grid_schedule`` keeps the knots uniform (price it at each G).

        ``train`` prices autograd's backward of this forward (adapters.flops.flops_of). The
        kernels' hand-written backwards: "fused" runs exactly those products (the packed GEMM's
        weight and input gradients); "dense" fewer (its input gradient gathers the ``k + 1``
        active table rows instead of a GEMM over all ``n`` bases); "sparse" more (its weight
        gradient is a GEMM over all ``n`` bases, faster on CPUs than scattering ``k + 1``)."""
        self.check_spec(spec)
        g, k = spec.grid, spec.k
        n, k1 = g + k, k + 1
        act = activation_flops(spec.activation)
        mode = self.executed_contraction(spec)
        widths = spec.widths(in_dim, out_dim)
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            if mode == "fused":
                blocked = a > fused.BATCH_INNER_MAX_IN and fused._weight_blocks(a, b, n + 1)
                product = 2 * a * b * (n + 1)
                loops = a <= fused.BATCH_INNER_MAX_IN and a * b * (n + 1) <= fused.SMALL_LOOP_FLOATS
                layers.append(LayerWork(
                    matmul=0 if loops else product, gather=product - b if loops else 0,
                    on_input=a * (act + 7 + k1 * (2 * k1 + 1) + 2 * n * (k1 + 1)),
                    after=(len(blocked) - 1) * b if blocked else 0))
            elif mode == "dense":
                layers.append(LayerWork(
                    matmul=2 * a * b * (n + 1), matmul_const=2 * a * k1 * k1,
                    on_input=a * (act + 7 + k + 2 * k1 * n), after=b))
            elif mode == "sparse":
                layers.append(LayerWork(
                    matmul=2 * a * b, gather=2 * k1 * a * b,
                    on_input=a * (act + 9 + k1 * (2 * k1 + 2)),
                    after=len(sparse.layer_blocks(a, b, g, k)) * b))
            else:  # reference
                layers.append(LayerWork(
                    matmul=2 * a * b * (n + 1), on_input=a * (act + 9 + k1 * (2 * k + 1)), after=b))
        return flops_of(layers, nominal=kanbefair_kan_flops(widths, g, k, spec.activation))

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
