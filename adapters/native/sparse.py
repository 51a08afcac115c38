"""The sparse contraction of the native layer: cost independent of G in the forward.

Used for large grids (see ``layer._fused_wins``), where the fused kernel's ``G + k + 1``
columns per input would cost more than they save. On uniform knots a point of input ``i`` in
cell ``c`` touches only the bases ``j = c - k .. c``: rows ``i * (G + k) + j`` of a table
``(in, G + k, out)`` of scaled spline weights. Bases that do not exist (``j`` outside
``[0, G + k)``: near the ends of the knot vector, for points outside the span and for NaN
inputs) get the value 0 and a row clamped into range, so nothing needs a mask afterwards.

Forward: one kernel builds the table and, for each block of inputs, the basis values of every
(sample, input) with their rows in the block's part of the table (contiguous
``(batch, (k + 1) * block)`` tensors, slot-major); ``embedding_bag`` sums the weighted table rows, a block
at a time so the table rows it reads stay in cache. The values and rows are kept for backward
(and the table, when x needs a gradient).

Weight gradient: ``d loss / d scaled weights = grad_out^T @ D`` with ``D`` the dense basis. It
is built one block of inputs at a time in ``(batch, block * (G + k))`` layout, the same values
scattered into a zeroed buffer at the same rows (now column indices), so each block's product
is one wide GEMM whose result is already in the parameters' ``(out, in, G + k)`` order, and is
split into the spline weight and scaler gradients while it is in cache. ``D`` is never built
whole. (An exact sparse scatter of ``(k + 1) * out`` values per sample and input was slower
than this GEMM on CPUs: scattered adds run far below BLAS speed.) Measured at [784, 64, 10],
G = 50, batch 256, 2 threads, train step against the matched MLP: 1.40x in two interleaved
runs (1.39x to 1.44x in three full benchmark runs), from 1.44x to 1.53x (four interleaved runs)
when ``D`` was built by ``embedding_bag`` of a padded identity into a fresh tensor per
block and the table was padded with zero rows instead of clamping (1.64x to 1.76x before that
with per-input batched GEMMs and eager index preparation).

The kernels (:func:`make_kernels`) are plain functions that :class:`fused.Kernels` compiles
with torch.compile per layer shape, or runs eagerly when compiling is off or fails. Block
boundaries depend only on the layer's shape, so one compiled kernel serves every batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adapters.native import activations, fused
from adapters.native.basis import _segment_tables

#: input blocks of the forward gather and the input gradient: ~1 MiB of float32 table rows
#: per block (a core's L2); larger blocks were slower
TABLE_BLOCK_FLOATS = 1 << 18
#: weight-gradient input blocks: ~4096 basis columns per block, so ``grad_out^T @ D_block``
#: is one wide GEMM (G = 50, [784, 64, 10], batch 256, 2 threads: 5.1 ms for all blocks of 66
#: inputs against 6.4 ms as one batched GEMM per input)
GRAD_BLOCK_COLUMNS = 4096


def scaled_table(spline_weight, spline_scaler) -> torch.Tensor:
    """The scaled spline weights as a table ``(in, G + k, out)``: one row per (input, basis)."""
    return (spline_weight * spline_scaler.unsqueeze(-1)).permute(1, 2, 0).contiguous()


def blocks(n_in: int, per_input: int, budget: int) -> list[tuple[int, int]]:
    """Consecutive input ranges of at most ``budget // per_input`` inputs (at least one)."""
    step = max(1, min(n_in, budget // max(per_input, 1)))
    return [(s, min(n_in, s + step)) for s in range(0, n_in, step)]


def layer_blocks(n_in: int, n_out: int, grid: int, k: int) -> list[tuple[int, int]]:
    """The input blocks of a layer: at most ~1 MiB of table rows (forward gathers stay in
    cache) and ~4096 basis columns (the weight gradient's GEMMs stay wide), but at least
    1024 columns where the table rows are long (wide layers), or the GEMMs get too narrow."""
    nb = grid + k
    per_block = min(TABLE_BLOCK_FLOATS // (nb * n_out), GRAD_BLOCK_COLUMNS // nb)
    per_block = max(per_block, -(-1024 // nb))
    return blocks(n_in, 1, per_block)


def make_kernels(lo: float, h: float, grid: int, k: int, shape: tuple[int, int],
                 activation: str = "silu") -> dict:
    """The sparse contraction's kernels of one layer configuration and shape ``(in, out)``."""
    n_in, n_out = shape
    act_derivative = activations.get(activation).derivative
    inv_h = 1.0 / h
    end = grid + 2 * k  # past the last cell: no basis exists there
    nb = grid + k
    values_rows, slope_rows = _segment_tables(k)
    input_blocks = layer_blocks(n_in, n_out, grid, k)

    def locate(x):
        """Cell (int64, the index type the backward's scatter_add_ takes, so its rows need no
        conversion per step; clamped to ``[0, end]``, NaN -> ``end``), local position and
        whether x lies inside the knot span."""
        t = (x - lo) * inv_h + k
        inside = (t >= 0) & (t < end)
        t = t.clamp(0.0, end).nan_to_num(nan=end)
        c = torch.floor(t)
        return c.long(), t - c, inside

    def active(x, dim):
        """Per (sample, input): the local position, the knot-span mask, and the index
        ``cell - k + r`` of each of the k + 1 bases its cell touches (stacked along ``dim``,
        int64), clamped into ``[0, G + k)``, with whether that basis exists (module docstring)."""
        cell, u, inside = locate(x)
        r = torch.arange(k + 1, dtype=cell.dtype, device=x.device)
        j = cell.unsqueeze(dim) - k + (r.view(-1, 1) if dim == 1 else r)  # dim is 1 or -1
        exists = (j >= 0) & (j < nb)
        return u, inside, j.clamp(0, nb - 1), exists

    def forward_inputs(x, spline_weight, spline_scaler):
        """The table ``(in, G + k, out)`` and, per input block, the basis values of every
        (sample, input) (zero for bases that do not exist) and their rows ``i' * (G + k) + j``
        (``i'`` counted from the block's first input): rows of the block's part of the table
        viewed ``(block * (G + k), out)`` in the forward, columns of the block's dense basis in
        the weight gradient. ``(batch, (k + 1) * block)`` each, slot-major."""
        table = scaled_table(spline_weight, spline_scaler)
        # (batch, k + 1, in): a bag's order is free (embedding_bag sums it, scatter_add_
        # adds it), and slot-major bags keep the inputs innermost, where the kernel vectorises
        u, inside, j, exists = active(x, 1)
        values = torch.where(exists, fused._segments(u, inside, values_rows, k, 1), 0.0)
        batch = x.shape[0]
        rows, vals = [], []
        for s, e in input_blocks:  # each block contiguous (inductor would return strided views)
            offset = torch.arange(e - s, dtype=j.dtype, device=x.device) * nb
            rows.append((j[:, :, s:e] + offset).reshape(batch, -1))
            vals.append(values[:, :, s:e].reshape(batch, -1))
        return table, vals, rows

    def input_grad_basis(x):
        """Rows into the flattened table ``(batch, in, k + 1)``, the basis slopes d/dx there
        (zero for bases that do not exist and outside the knot span, where the clamp is flat)
        and the base activation's derivative act'(x)."""
        u, inside, j, exists = active(x, -1)
        slopes = torch.where(exists, fused._segments(u, inside, slope_rows, k, -1), 0.0) * inv_h
        offset = torch.arange(n_in, dtype=j.dtype, device=x.device).unsqueeze(-1) * nb
        return j + offset, slopes, act_derivative(x)

    return dict(
        forward_inputs=forward_inputs,
        input_grad_basis=input_grad_basis,
        options=dict(blocks=input_blocks),
    )


def kernels(lo: float, h: float, grid: int, k: int, shape: tuple[int, int],
            activation: str = "silu", create: bool = True) -> fused.Kernels | None:
    """The sparse kernels of a configuration and shape (cached; compiled where that works;
    ``create`` as in :func:`fused.kernels`)."""
    return fused.kernels(lo, h, grid, k, shape, make=make_kernels, activation=activation,
                         create=create)


class SparseKAN(torch.autograd.Function):
    """``y = act(x) @ base_weight.T + spline(x)`` by the sparse contraction (module docstring),
    with a hand-written backward. Saved for backward: x, the parameters, each block's values
    and rows (the table too when x needs a gradient)."""

    @staticmethod
    def forward(ctx, x, spline_weight, spline_scaler, base_weight, kernels):
        table, values, rows = kernels.forward_inputs(x, spline_weight, spline_scaler)
        y = kernels.activation.forward(x) @ base_weight.t()
        n_out = base_weight.shape[0]
        for (start, end), r, v in zip(kernels.options["blocks"], rows, values):
            y += F.embedding_bag(r, table[start:end].view(-1, n_out), per_sample_weights=v, mode="sum")
        ctx.kernels = kernels
        need_x = ctx.needs_input_grad[0]
        ctx.save_for_backward(x, spline_weight, spline_scaler, base_weight, table if need_x else None, *values, *rows)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, spline_weight, spline_scaler, base_weight, table, *per_block = ctx.saved_tensors
        need_x, need_w, need_s, need_b = ctx.needs_input_grad[:4]
        grad_out = grad_out.contiguous()
        batch = x.shape[0]
        gx = gw = gs = gb = None
        if need_b:
            gb = grad_out.t() @ ctx.kernels.activation.forward(x)
        if need_w or need_s:
            n_out, _, nb = spline_weight.shape
            blocks = ctx.kernels.options["blocks"]
            grad_t = grad_out.t()
            # one buffer for every block's dense basis: a fresh one per block costs page faults
            largest = max(end - start for start, end in blocks)
            buffer = grad_out.new_empty(batch * largest * nb)
            gw = torch.empty_like(spline_weight, memory_format=torch.contiguous_format)
            gs = torch.empty_like(spline_scaler, memory_format=torch.contiguous_format)
            n_blocks = len(blocks)
            for (start, end), values, rows in zip(blocks, per_block[:n_blocks], per_block[n_blocks:]):
                # the block's dense basis: the k + 1 values of every (sample, input) scattered
                # into their columns (bases that do not exist add a zero to a real column)
                d = buffer[: batch * (end - start) * nb].view(batch, -1).zero_().scatter_add_(1, rows, values)
                # d loss / d scaled weights of the block, already in (out, block, G + k) order;
                # split while it is in cache: d/d weight = it * scaler, d/d scaler = <it, weight>
                gscaled = (grad_t @ d).view(n_out, end - start, nb)
                fused.split_scaled(gscaled, spline_weight[:, start:end], spline_scaler[:, start:end],
                                   out=(gw[:, start:end], gs[:, start:end]))
        if need_x:
            gx = _input_grad(ctx.kernels, grad_out, x, table, base_weight)
        return gx, gw, gs, gb, None


def _input_grad(kernels, grad_out, x, table, base_weight):
    """``d y / d x`` of the sparse contraction, dotted with ``grad_out`` (see
    :func:`spline_input_grad`), plus the base branch's ``act'(x_i) base_weight[:, i]``."""
    rows, slopes, dact = kernels.input_grad_basis(x)
    return spline_input_grad(grad_out, table, rows, slopes) + (grad_out @ base_weight) * dact


def spline_input_grad(grad_out, table, rows, slopes):
    """``sum_r slopes[b, i, r] <table row rows[b, i, r], grad_out[b]>`` for every (b, i): the
    spline branch's input gradient from the k + 1 table rows each input touches (``rows`` into
    the table viewed ``(in * P, out)``, ``(batch, in, k + 1)`` like ``slopes``), gathered a
    block of inputs at a time so the rows stay in cache. Shared by the sparse and dense
    contractions."""
    batch, n_in, k1 = rows.shape
    n_out = grad_out.shape[1]
    flat = table.view(-1, n_out)
    gx = grad_out.new_empty(batch, n_in)
    for s, e in blocks(n_in, batch * k1 * n_out, TABLE_BLOCK_FLOATS):
        picked = F.embedding(rows[:, s:e].reshape(batch, -1), flat)  # (B, block * (k+1), out)
        dots = torch.bmm(picked, grad_out.unsqueeze(-1)).view(batch, e - s, k1)
        gx[:, s:e] = (dots * slopes[:, s:e]).sum(-1)
    return gx
