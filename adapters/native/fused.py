"""The fused kernel of the native layer: base and spline branches as ONE matrix product.

Per input ``i`` the layer's output is ``act(x_i) w_base + sum_j B_j(x_i) w_spline_j`` (``act``
the base activation): a dot product of the ``G + k + 1`` *columns*
``[B_0(x_i) .. B_{G+k-1}(x_i), act(x_i)]`` with a packed weight. So a whole layer is
``y = C @ W.T`` with ``C`` ``(batch, in * (G + k + 1))`` and ``W``
``(out, in * (G + k + 1))`` rebuilt from the parameters every call (``in * out * (G + k + 1)``
multiplies: cheap next to the product; layers with a large ``W`` build it, use it and take its
gradient a block of inputs at a time, see :func:`_weight_blocks`). The backward is two products with the same matrices,
``dW = dy.T @ C`` (split back into base weight, spline weight and scaler) and, only when ``x``
needs a gradient, ``dC = dy @ W`` reduced against the column slopes ``dC/dx``.

Building ``C`` is one elementwise pass from ``x``: for each ``(b, i)`` the cell ``c`` and local
position ``u`` (see basis.py), then per column ``j`` the value of the one cardinal segment
``r = j - c + k`` (zero unless ``0 <= r <= k``). In eager PyTorch that is a dozen
``(batch, in, G + k)`` temporaries; compiled by inductor it is two loops, one that evaluates
the ``k + 1`` segment polynomials once per input and one that writes each row of ``C`` once,
each column picking its slot's value - the reason this path exists. :func:`kernels` compiles
kernels per layer configuration (grid, order, base activation) and shape; each falls back to
its eager twin when ``torch.compile`` is unavailable or fails (:class:`Kernels`).

NaN inputs never index anything here (all arithmetic stays in floating point): their basis
columns are zero and the activation's column carries the NaN into the output.
"""

from __future__ import annotations

import logging
import os
import types
from typing import Callable

import torch

from adapters.native import activations, direct
from adapters.native.basis import _segment_tables

log = logging.getLogger(__name__)

#: set KANBENCH_NATIVE_COMPILE=0 to never compile (the eager contractions are used)
_ENV_SWITCH = "KANBENCH_NATIVE_COMPILE"


def _segment_value(u: torch.Tensor, rows: tuple[tuple[float, ...], ...], r: int) -> torch.Tensor:
    """``sum_p u^p rows[p][r]`` by Horner's rule (Python-float coefficients: inlined constants)."""
    out = u * 0 + rows[-1][r]
    for p in range(len(rows) - 2, -1, -1):
        out = out * u + rows[p][r]
    return out


def _segments(u, inside, rows, k, axis):
    """The ``k + 1`` segment polynomials of ``rows`` at every input's ``u`` (zero outside the
    knot span), stacked along ``axis``: evaluated once per input, then read by each of its
    ``G + k`` columns (:func:`_pick_segment`). Per column evaluation of all ``k + 1``
    polynomials cost 1.4-1.8x as much (compiled column kernel, [784, 64, 10], batch 256,
    2 threads: G = 5 0.61 against 0.44 ms, G = 20 1.50 against 0.82 ms)."""
    return torch.stack([torch.where(inside, _segment_value(u, rows, r), 0.0) for r in range(k + 1)], axis)


def _pick_segment(segments, slot, k, axis):
    """Per column, the segment value of its slot ``r = j - c + k``; zero for other slots."""
    out = torch.zeros((), dtype=segments.dtype, device=segments.device)
    for r in range(k + 1):
        out = torch.where(slot == r, segments.narrow(axis, r, 1), out)
    return out


#: layers with at most this many inputs build their columns batch-inner (see _make_kernels)
BATCH_INNER_MAX_IN = 16
#: batch-inner layers whose packed weight has at most this many floats run their three products
#: (forward, weight and input gradients) as loops that inductor generates instead of BLAS
#: calls, whose fixed cost (tens of microseconds with 2 threads) exceeds the work there
#: (interleaved [2, 5, 1] b1000 train steps against the matched MLP, whole-model stack: 1.26x
#: against 1.43x with BLAS)
SMALL_LOOP_FLOATS = 4096
#: packed weights of more floats than this are packed and used a block of inputs at a time
BLOCKED_MIN_FLOATS = 1 << 21
#: ... in blocks of about this many floats (4 MiB), with at least this many columns per block
WEIGHT_BLOCK_FLOATS = 1 << 20
MIN_BLOCK_COLUMNS = 256


def _weight_blocks(n_in: int, n_out: int, per_input: int) -> list[tuple[int, int]]:
    """Input blocks of a layer whose packed weight ``W`` is too large to build whole, else [].

    A whole ``W`` (``out x in (G + k + 1)``) is written and read back once per step and again
    for its gradient; beyond the caches (and beyond glibc's mmap threshold, where each fresh
    allocation page-faults) that costs as much as the GEMM. [1000, 1000, 1], batch 100, G = 5,
    2 threads: forward kernel 19.0 ms whole, 10.9 ms in blocks of 116 inputs; weight gradient
    21.3 ms whole, 12.3 ms in blocks."""
    if n_out * n_in * per_input <= BLOCKED_MIN_FLOATS:
        return []
    step = max(WEIGHT_BLOCK_FLOATS // (n_out * per_input), -(-MIN_BLOCK_COLUMNS // per_input), 1)
    return [(s, min(n_in, s + step)) for s in range(0, n_in, step)]


def _make_kernels(lo: float, h: float, grid: int, k: int, shape: tuple[int, int] | None = None,
                  activation: str = "silu"):
    """The kernels of one layer configuration by name, as plain functions (:class:`Kernels`
    compiles them): the forward / backward composites of the fused contraction.

    Column order: basis-major, ``C`` viewed ``(B, G + k + 1, in)`` (column ``j * in + i``), so
    the inner loop of the kernel that builds ``C`` runs over the inputs, contiguous in ``x``
    and in ``C``: 1.4 ms at [784, 64, 10], batch 256, G = 5, against 3.5 ms input-major
    (``(B, in, G + k + 1)``, whose short rows of 9 make inductor evaluate each input
    scalar). Input-major would make packing ``W`` a plain copy instead of a transpose, but at
    [1000, 1000, 1], batch 100, where ``W`` is 90 times ``C``, the two orders were close (in
    weight blocks: forward 10.5 to 10.9 ms either way, weight gradient 11.5 ms input-major
    against 12.3 ms basis-major), not worth a second layout.

    Layers with few inputs (``in <= BATCH_INNER_MAX_IN``) take ``x.T`` and build ``C.T``
    ``(G + k + 1, in, B)`` instead (same column order): their basis-major rows are too short
    to vectorise, while the batch is long. Compiled column kernel, 2 threads, G = 5: batch
    1000 x 2 inputs 28 us against 75 to 100 us basis-major, 1000 x 5 44 against 80 to 112 us;
    at 30 inputs the two are even once x is transposed, at 784 basis-major wins."""
    inv_h = 1.0 / h
    n_cells = grid + 2 * k
    nb = grid + k
    values_rows, slope_rows = _segment_tables(k)
    act = activations.get(activation)
    act_forward, act_derivative = act.forward, act.derivative
    batch_inner = shape is not None and shape[0] <= BATCH_INNER_MAX_IN
    input_blocks = [] if batch_inner or shape is None else _weight_blocks(*shape, nb + 1)
    # basis-major: x (B, in), C (B, nb + 1, in); batch-inner: x.T (in, B), C.T (nb + 1, in, B)
    axis = 0 if batch_inner else 1

    def locate(x, rows):
        """The segment values of ``rows`` per input (zero outside the knot span, where the
        basis is identically zero) and the segment ``slot`` of every basis column, shaped to
        broadcast against the basis columns."""
        t = (x - lo) * inv_h + k  # position in units of h from the first knot
        c = torch.floor(t)
        inside = (t >= 0) & (t < n_cells)
        j = torch.arange(nb, dtype=x.dtype, device=x.device).view(-1, *([1] * (2 - axis)))
        return _segments(t - c, inside, rows, k, axis), j - c.unsqueeze(axis) + k

    def columns(x):
        segments, slot = locate(x, values_rows)
        cols = torch.cat([_pick_segment(segments, slot, k, axis), act_forward(x).unsqueeze(axis)], axis)
        return cols.view(-1, x.shape[1]) if batch_inner else cols.view(x.shape[0], -1)

    def input_grad(dcols, x):
        segments, slot = locate(x, slope_rows)
        slope = _pick_segment(segments, slot, k, axis) * inv_h
        dact = act_derivative(x)
        if batch_inner:
            dcols = dcols.view(nb + 1, *x.shape)
            return (dcols[:nb] * slope).sum(0) + dcols[nb] * dact
        dcols = dcols.view(x.shape[0], nb + 1, x.shape[1])
        return (dcols[:, :nb] * slope).sum(1) + dcols[:, nb] * dact

    def pack(spline_weight, spline_scaler, base_weight):
        """``W`` ``(out, (G + k + 1) * in)`` in the column order of ``C``."""
        scaled = (spline_weight * spline_scaler.unsqueeze(-1)).transpose(1, 2)  # (out, nb, in)
        return torch.cat([scaled, base_weight.unsqueeze(1)], 1).reshape(spline_weight.shape[0], -1)

    def unpack(gpacked, spline_weight, spline_scaler):
        """Split ``dW`` into the gradients of spline weight, spline scaler and base weight.

        Each is returned contiguous, in its parameter's layout: a transposed gradient would be
        stored as is and make every optimiser pass over it strided (and a view of ``dW`` would
        keep all of ``dW`` alive until the optimiser step)."""
        n_out, n_in, _ = spline_weight.shape
        gpacked = gpacked.view(n_out, nb + 1, n_in)
        gw, gs = split_scaled(gpacked[:, :nb].transpose(1, 2), spline_weight, spline_scaler)
        return gw, gs, gpacked[:, nb].contiguous()

    # the layer calls these composites: one compiled call per layer and direction (each call
    # of a compiled function costs a guard check, ~10-30 us: it shows on small layers).
    # ``cols`` is a list: one matrix, or one per input block when the layer is blocked.
    # small batch-inner layers contract in inductor's own loops, not BLAS calls (see SMALL_LOOP_FLOATS).
    # Their backward takes ``grad_out`` batch-contiguous ((B, out) with strides (1, B): see
    # the autograd Functions' backward), so that the weight gradient's reduction over the batch
    # reads it contiguously: inductor leaves a strided reduction scalar ([30, 8, 2], b512:
    # 21.9 against 5.2 us for the kernel holding it)
    loops = batch_inner and shape is not None and shape[0] * (nb + 1) * shape[1] <= SMALL_LOOP_FLOATS

    def product(cols, w, out_t=False):
        """``y`` ``(B, out)``, or with ``out_t`` ``y.T`` ``(out, B)``: the layout a
        batch-inner next layer takes, so that it need not transpose ``y`` (in a stack)."""
        if loops:  # C.T (F, B) and W (out, F) -> (out, B)
            y_t = (cols.unsqueeze(0) * w.unsqueeze(-1)).sum(1)
            return y_t if out_t else y_t.t().contiguous()
        if out_t:
            return w @ (cols if batch_inner else cols.t())
        return (cols.t() if batch_inner else cols) @ w.t()

    def weight_grads(grad_out, cols, spline_weight, spline_scaler):
        if loops:
            return unpack((grad_out.t().unsqueeze(1) * cols.unsqueeze(0)).sum(-1), spline_weight, spline_scaler)
        return unpack(grad_out.t() @ (cols.t() if batch_inner else cols), spline_weight, spline_scaler)

    def input_grads(grad_out, w, x):
        if loops:
            return input_grad((w.t().unsqueeze(-1) * grad_out.t().unsqueeze(0)).sum(1), x).t()
        if batch_inner:  # x is x.T here, and so is its gradient
            return input_grad(w.t() @ grad_out.t(), x).t()
        return input_grad(grad_out @ w, x)

    if not input_blocks:
        def forward(x, spline_weight, spline_scaler, base_weight, out_t=False):
            w = pack(spline_weight, spline_scaler, base_weight)
            cols = columns(x)
            return product(cols, w, out_t), [cols], w

        def backward_weights(grad_out, cols, spline_weight, spline_scaler):
            return weight_grads(grad_out, cols[0], spline_weight, spline_scaler)

        def backward_all(grad_out, cols, w, x, spline_weight, spline_scaler, base_weight):
            return input_grads(grad_out, w, x), *backward_weights(grad_out, cols, spline_weight, spline_scaler)

    else:
        # blocked: W is packed a block of inputs at a time, used by its block's GEMM and
        # dropped (never whole: no W-sized allocation, its blocks stay in cache); the
        # gradients are assembled from per-block pieces the same way
        def forward(x, spline_weight, spline_scaler, base_weight):
            y, cols = None, []
            for s, e in input_blocks:
                block = columns(x[:, s:e])
                part = product(block, pack(spline_weight[:, s:e], spline_scaler[:, s:e], base_weight[:, s:e]))
                y = part if y is None else y + part
                cols.append(block)
            return y, cols, None

        def backward_weights(grad_out, cols, spline_weight, spline_scaler):
            pieces = [
                weight_grads(grad_out, block, spline_weight[:, s:e], spline_scaler[:, s:e])
                for (s, e), block in zip(input_blocks, cols)
            ]
            return tuple(torch.cat(grads, 1) for grads in zip(*pieces))

        def backward_all(grad_out, cols, w, x, spline_weight, spline_scaler, base_weight):
            gx = torch.cat([
                input_grads(grad_out, pack(spline_weight[:, s:e], spline_scaler[:, s:e], base_weight[:, s:e]), x[:, s:e])
                for s, e in input_blocks
            ], 1)
            return gx, *backward_weights(grad_out, cols, spline_weight, spline_scaler)

    return dict(
        forward=forward,
        backward_weights=backward_weights,
        backward_all=backward_all,
        options=dict(batch_inner=batch_inner, loops=loops, blocks=len(input_blocks),
                     grad_out_batch_inner=loops),
    )


def stack_fits(widths: tuple[int, ...], grid: int, k: int) -> bool:
    """Whether a model of ``widths`` can run as one stack (:func:`_make_stack_kernels`): no
    layer builds its packed weight in input blocks."""
    return not any(a > BATCH_INNER_MAX_IN and _weight_blocks(a, b, grid + k + 1)
                   for a, b in zip(widths[:-1], widths[1:]))


def _make_stack_kernels(lo: float, h: float, grid: int, k: int, widths: tuple[int, ...],
                        activation: str = "silu"):
    """The kernels of a whole model of ``widths`` (every layer fused, none blocked: see
    :func:`stack_fits`): one forward and one backward for all layers instead of one per layer
    and direction.

    Each compiled call costs a guard check and a wrapper, and each autograd Function call its
    own bookkeeping, tens of microseconds together: on small models (the suites' tabular
    [d, 8, c] at batch 32, the [2, 5, 1] and [30, 8, 2] benchmarks) that is a large part of a
    step. The layers' arithmetic is :func:`_make_kernels`' own. Tensors are passed flat:
    per layer ``spline_weight, spline_scaler, base_weight``; the forward returns the output
    and, per layer, what its backward needs (its input, as the layer kernel takes it, its
    columns and its packed weight)."""
    layers = [_make_kernels(lo, h, grid, k, (a, b), activation) for a, b in zip(widths[:-1], widths[1:])]
    inner = [layer["options"]["batch_inner"] for layer in layers]
    n = len(layers)

    def forward(x, *params):
        saved, out_t = [], False
        for i, layer in enumerate(layers):
            # a layer before a batch-inner one hands it y.T (out_t), the input layout it takes
            xin = x.t().contiguous() if inner[i] and not out_t else x
            out_t = i + 1 < n and inner[i + 1]
            x, cols, w = layer["forward"](xin, *params[3 * i:3 * i + 3], out_t=out_t)
            saved += [xin, cols[0], w]
        # the first layer's input, where it is the stack's own input, is saved by the caller
        # (FusedKANStack): a compiled graph that returns an input unchanged cannot be called
        # directly (see direct.py)
        return x, *(saved[1:] if not inner[0] else saved)

    def backward(input_grad: bool, grad_out, *args):
        saved, params = args[:3 * n], args[3 * n:]
        grads = []
        for i in reversed(range(n)):
            xin, cols, w = saved[3 * i:3 * i + 3]
            weights = params[3 * i:3 * i + 3]
            if i or input_grad:  # the gradient comes back in the layout of the layer's input
                grad_out, *layer_grads = layers[i]["backward_all"](grad_out, [cols], w, xin, *weights)
            else:
                layer_grads = layers[i]["backward_weights"](grad_out, [cols], *weights[:2])
            grads = [*layer_grads, *grads]
        return (grad_out, *grads) if input_grad else tuple(grads)

    def backward_all(grad_out, *args):
        return backward(True, grad_out, *args)

    def backward_weights(grad_out, *args):
        return backward(False, grad_out, *args)

    return dict(
        forward=forward,
        backward_all=backward_all,
        backward_weights=backward_weights,
        options=dict(layers=n, grad_out_batch_inner=layers[-1]["options"]["loops"],
                     caller_saves_input=not inner[0]),
    )


def split_scaled(gscaled, spline_weight, spline_scaler, out=None):
    """Gradients of spline weight and scaler from that of the scaled weights ``(out, in, nb)``:
    ``gscaled * scaler`` and ``<gscaled, weight>`` over the bases. Returned contiguous in each
    parameter's layout (``gscaled`` may be a strided view), or written into ``out`` (a pair of
    slices of the whole gradients, for callers that split a block at a time)."""
    if out is None:
        return (gscaled * spline_scaler.unsqueeze(-1)).contiguous(), (gscaled * spline_weight).sum(-1).contiguous()
    gw, gs = out
    torch.mul(gscaled, spline_scaler.unsqueeze(-1), out=gw)
    torch.linalg.vecdot(gscaled, spline_weight, out=gs)
    return gw, gs


def _own_code(fn: Callable, tag: str) -> Callable:
    """A copy of ``fn`` with its own code object. Dynamo keeps its compile cache - and its limit
    of 8 variants - per code object; the kernels of all configurations are closures over the
    same code, so without a copy each would evict or exceed the others'."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


class Kernels:
    """The kernels of one configuration, called by name (``kernels.forward(...)``): compiled,
    each falling back to its eager twin for good if a call fails to compile (compilation
    happens at the first call of each shape and dtype). ``make(lo, h, grid, k, shape,
    activation)`` returns the plain functions (this module's fused kernels by default; sparse.py
    has the sparse contraction's)."""

    _made = 0  # kernels built so far: tags their code objects apart

    def __init__(self, lo: float, h: float, grid: int, k: int, compile: bool = True,
                 shape: tuple[int, int] | None = None, make: Callable = _make_kernels,
                 activation: str = "silu", direct_calls: bool = False):
        self.key = (grid, k, activation)
        #: the base activation the kernels are built for
        self.activation = activations.get(activation)
        self._eager = make(lo, h, grid, k, shape, activation)
        #: settings of the kernels that callers need to know (not compiled)
        self.options: dict = self._eager.pop("options", {})
        self._compiled = None
        #: (device, dtype) pairs a warm-up ran the compiled kernels on, at two batch sizes:
        #: running them there again compiles nothing (the compile decision counts them free)
        self.warm: set[tuple[torch.device, torch.dtype]] = set()
        if compile:
            Kernels._made += 1
            tag = f"k{k}_g{grid}_{activation}_{Kernels._made}"
            self._compiled = {name: _compiled(_own_code(fn, tag), direct_calls)
                              for name, fn in self._eager.items()}

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self._eager:
            raise AttributeError(name)
        return lambda *args: self._call(name, *args)

    def _call(self, name: str, *args):
        if self._compiled is not None:
            try:
                return self._compiled[name](*args)
            except Exception as exc:  # torch.compile failures come in many types
                log.warning("native: torch.compile of a kernel failed for G=%d k=%d %s (%s: %s); "
                            "using the eager kernels (same results, slower; KANBENCH_NATIVE_COMPILE=0 "
                            "skips the attempt)", *self.key, type(exc).__name__, str(exc)[:200])
                self._compiled = None
        return self._eager[name](*args)


#: inductor parallelises a loop from 512 elements per thread; waking the second OpenMP thread
#: then costs more than the loop (and much more while other processes hold the cores), so
#: parallelise only from ATen's own grain size, 32768 elements per thread
_INDUCTOR_OPTIONS = {"cpp.min_chunk_size": 32768}


def _compiled(fn: Callable, direct_calls: bool = False) -> Callable:
    """``fn`` compiled by inductor; with ``direct_calls``, called around dynamo's per-call
    work where that is safe (:mod:`adapters.native.direct`, which may be switched off)."""
    options = _compile_options()
    if not (direct_calls and direct.available()):
        return torch.compile(fn, fullgraph=True, options=options)
    guard_filter = options.pop("guard_filter_fn", None)
    return direct.DirectCall(fn, options, guard_filter)


def _compile_options() -> dict:
    """Inductor options, plus a guard filter where torch has one: the kernels are pure
    functions of their tensor arguments (the configuration is baked into each kernel's own
    code object and closure), so only tensor metadata and global autograd/autocast state need
    checking on each call; dynamo's other guards cost tens of microseconds per call, which
    shows on small layers."""
    keep = getattr(torch.compiler, "keep_portable_guards_unsafe", None)
    return {**_INDUCTOR_OPTIONS, **({"guard_filter_fn": keep} if keep is not None else {})}

_cache: dict = {}


def enabled() -> bool:
    """Whether the fused path may be compiled (``KANBENCH_NATIVE_COMPILE=0`` switches it off)."""
    return os.environ.get(_ENV_SWITCH, "1") not in ("0", "false", "no") and hasattr(torch, "compile")


def kernels(lo: float, h: float, grid: int, k: int, shape: tuple[int, int] | None = None,
            make: Callable = _make_kernels, activation: str = "silu", create: bool = True
            ) -> Kernels | None:
    """The kernels ``make`` builds for a configuration (grid, order, base activation) and layer
    shape, cached: compiled when compiling is on (each falls back to its eager twin if
    compiling fails), else eager. ``create=False`` only looks in the cache (None when they were
    never built): building the first compiled kernels imports inductor, about 0.6 s.

    Layers pass their ``(in, out)`` shape so that each shape gets kernels of its own: shared
    kernels would be recompiled for every layer shape they meet, generic in the sizes (slower
    than kernels specialised to one layer) and, past dynamo's limit of 8 variants, not at all
    (measured: [784, 64, 10] G5 train step 1.34x the MLP alone, 2.5x after other
    configurations had shared its kernels). Only the batch size then varies."""
    compile = enabled()
    # a whole model's stack (small models: per-call costs matter) is called around dynamo
    direct_calls = compile and make is _make_stack_kernels and direct.enabled()
    key = (make, lo, h, grid, k, shape, compile, activation, direct_calls)
    if key not in _cache:
        if not create:
            return None
        _cache[key] = Kernels(lo, h, grid, k, compile=compile, shape=shape, make=make,
                              activation=activation, direct_calls=direct_calls)
    return _cache[key]


class FusedKAN(torch.autograd.Function):
    """``y = C(x) @ W.T`` with the hand-written backward described in the module docstring."""

    @staticmethod
    def forward(ctx, x, spline_weight, spline_scaler, base_weight, kernels: Kernels):
        if kernels.options.get("batch_inner"):
            x = x.t().contiguous()
        y, cols, w = kernels.forward(x, spline_weight, spline_scaler, base_weight)
        ctx.kernels = kernels
        need_x = ctx.needs_input_grad[0]
        ctx.save_for_backward(x, spline_weight, spline_scaler, base_weight, w if need_x else None, *cols)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, spline_weight, spline_scaler, base_weight, w, *cols = ctx.saved_tensors
        grad_out = _grad_layout(grad_out, ctx.kernels)
        gx = None
        if ctx.needs_input_grad[0]:
            gx, gw, gs, gb = ctx.kernels.backward_all(grad_out, cols, w, x, spline_weight, spline_scaler, base_weight)
        else:
            gw, gs, gb = ctx.kernels.backward_weights(grad_out, cols, spline_weight, spline_scaler)
        return gx, gw, gs, _own_storage(gb), None


def _grad_layout(grad_out: torch.Tensor, kernels: Kernels) -> torch.Tensor:
    """``grad_out`` (B, out) in the layout the backward kernels were built for: batch-inner
    (strides (1, B)) where the last layer contracts in loops (see ``_make_kernels``), else
    row-major."""
    if kernels.options.get("grad_out_batch_inner"):
        return grad_out.t().contiguous().t()
    return grad_out.contiguous()


def _own_storage(grad: torch.Tensor) -> torch.Tensor:
    """``grad``, copied when it is a view into a larger buffer: with one output row inductor
    returns that row of ``dW`` as a view (it counts as contiguous), and as a parameter's
    gradient the view would keep all of ``dW`` alive."""
    if grad.untyped_storage().nbytes() > grad.numel() * grad.element_size():
        return grad.clone()
    return grad


class FusedKANStack(torch.autograd.Function):
    """A whole model as one forward and one backward call (:func:`_make_stack_kernels`);
    ``params`` flat, three per layer."""

    @staticmethod
    def forward(ctx, kernels: Kernels, x, *params):
        y, *saved = kernels.forward(x, *params)
        if kernels.options.get("caller_saves_input"):
            saved.insert(0, x)
        ctx.kernels = kernels
        ctx.save_for_backward(*saved, *params)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        tensors = ctx.saved_tensors
        grad_out = _grad_layout(grad_out, ctx.kernels)
        if ctx.needs_input_grad[1]:
            gx, *grads = ctx.kernels.backward_all(grad_out, *tensors)
        else:
            gx, grads = None, ctx.kernels.backward_weights(grad_out, *tensors)
        return None, gx, *(_own_storage(g) for g in grads)
