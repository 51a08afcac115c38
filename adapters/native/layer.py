"""The native KAN layer: efficient-kan's function and parameterisation.

``y = act(x) @ base_weight.T + sum_i sum_j B_j(x_i) * spline_weight[:, i, j] * spline_scaler[:, i]``
with ``G + k`` B-splines of degree ``k`` per input on ``G + 2k + 1`` knots (``G`` uniform
intervals on ``grid_range`` extended by ``k`` on each side), zero outside the knot span, and
``act`` the base activation (SiLU by default; any of :mod:`adapters.native.activations`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adapters.native import activations, fused, sparse
from adapters.native.basis import cox_de_boor, segment_table, uniform_basis, uniform_knots

# ============================================================================================
# The dense uniform-grid kernel (eager)
#
# On uniform knots a point x of input i sits in cell ``c = floor(t)``, ``t = (x - t_0) / h``,
# at local position ``u = t - c``; it touches only the bases ``c - k .. c`` and their values are
# the fixed polynomials ``V[r] = sum_p u^p M[p, r]`` (see basis.py). Everything below is built
# from ``(c, u)``; nothing of size ``G`` is evaluated per input.
#
# This kernel looks spline rows up in a *padded* table ``(in, P, out)``, ``P = G + 3k + 1``
# (the sparse contraction clamps its rows and zeroes the values instead: sparse.py): k zero rows
# before the ``G + k`` real rows and k + 1 after. Row ``c + r`` is basis ``c - k + r``, so the
# bases that do not exist near the ends of the knot vector land on zero rows, and clamping t to
# ``[0, G + 2k]`` sends points left of the span to ``u = 0`` of cell 0 (whose only real basis is
# 0 there) and points right of it to cell ``G + 2k`` (all padding): no masks in the forward.
#
# Contractions ("auto" picks by the rules in :func:`_fused_wins` and :func:`_choose`):
#   fused:  fused.py - torch.compile'd; base and spline branches as one GEMM.
#   dense:  below - build the basis matrix D ``(batch, in*(G+k))`` once (``embedding_bag`` of
#           k + 1 weighted rows of a padded identity: no zero fill, no scatter), keep it, and
#           run the forward and the weight gradient as two GEMMs. Best while G + k is small:
#           the GEMM does G + k multiply-adds per edge, but at full BLAS speed. Eager only.
#   sparse: sparse.py - gathers the k + 1 active table rows per input (cost independent of G);
#           compiled helpers where torch.compile works.
# The base branch is one more GEMM, act(x) @ base_weight.T (act: the layer's base activation).
# The input gradient (only when x requires grad) gathers the same k + 1 rows, dots them with the
# output gradient and weights them with the basis derivative, plus act'(x) for the base branch.
# ============================================================================================


@dataclass(frozen=True)
class _Uniform:
    lo: float  # first interior knot (grid_range[0])
    h: float
    grid: int
    k: int
    activation: str = "silu"

    @property
    def n_bases(self) -> int:
        return self.grid + self.k

    @property
    def padded(self) -> int:
        return self.grid + 3 * self.k + 1


_tables: dict = {}


def _segment(k: int, dtype: torch.dtype, device: torch.device, derivative: bool) -> torch.Tensor:
    key = (k, dtype, device, derivative)
    if key not in _tables:
        _tables[key] = segment_table(k, derivative=derivative, dtype=dtype, device=device)
    return _tables[key]


def _locate(x: torch.Tensor, cfg: _Uniform) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamped cell index (int64) and local position u of every input.

    NaN inputs go to the last (all-padding) cell instead of becoming an invalid index (a NaN
    cast to int64 is -2^63): their spline term is 0 and the base term ``act(NaN)`` carries
    the NaN into the output, so a diverging model yields a NaN loss rather than a crash."""
    end = cfg.grid + 2 * cfg.k
    t = ((x - cfg.lo) * (1.0 / cfg.h) + cfg.k).clamp_(0.0, end).nan_to_num_(nan=end)
    cell = t.floor()
    return cell.long(), t.sub_(cell)


def _powers(u: torch.Tensor, n: int) -> torch.Tensor:
    """``[1, u, ..., u^(n-1)]`` stacked last: ``(..., n)``."""
    cols = [torch.ones_like(u)]
    for _ in range(n - 1):
        cols.append(cols[-1] * u)
    return torch.stack(cols, -1)


def _values(u: torch.Tensor, k: int) -> torch.Tensor:
    """The k + 1 active basis values ``(..., k + 1)``: one small matmul with the segment table."""
    return _powers(u, k + 1) @ _segment(k, u.dtype, u.device, False)


def _derivatives(u: torch.Tensor, k: int, h: float) -> torch.Tensor:
    """d/dx of :func:`_values`."""
    return (_powers(u, k) @ _segment(k, u.dtype, u.device, True)) * (1.0 / h)


_eyes: dict = {}


def _padded_eye(cfg: _Uniform, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The padded identity ``(P, G + k)``: row ``k + j`` is e_j, the padding rows are zero."""
    key = (cfg.grid, cfg.k, dtype, device)
    if key not in _eyes:
        eye = torch.zeros(cfg.padded, cfg.n_bases, dtype=dtype, device=device)
        eye[cfg.k : cfg.k + cfg.n_bases] = torch.eye(cfg.n_bases, dtype=dtype, device=device)
        _eyes[key] = eye
    return _eyes[key]


def _padded_table(spline_weight: torch.Tensor, spline_scaler: torch.Tensor, k: int) -> torch.Tensor:
    """The table of scaled spline weights ``(in, P, out)``, with k zero rows before and
    k + 1 after the G + k real ones (see above)."""
    scaled = (spline_weight * spline_scaler.unsqueeze(-1)).permute(1, 2, 0)
    return F.pad(scaled, (0, 0, k, k + 1))


def _dense_basis(rows: torch.Tensor, values: torch.Tensor, cfg: _Uniform) -> torch.Tensor:
    """The dense basis ``(B, c * (G + k))`` of a block of inputs.

    Each (sample, input) row of D is ``sum_r V_r e_{cell - k + r}``: a weighted bag of k + 1
    rows of the (padded) identity, which ``embedding_bag`` writes densely in one pass - no
    zero fill, no scatter, no masks (rows of missing bases are zero rows of the padding).
    """
    batch, c = rows.shape[:2]
    d = F.embedding_bag(rows.reshape(-1, cfg.k + 1), _padded_eye(cfg, values.dtype, values.device), per_sample_weights=values.reshape(-1, cfg.k + 1), mode="sum")
    return d.view(batch, c * cfg.n_bases)


_ramps: dict = {}


def _active_rows(cell: torch.Tensor, k: int, stride: int, n_cells: int) -> torch.Tensor:
    """Rows ``cell + r`` (r = 0..k) of every input, offset by ``i * stride`` for input i:
    ``(B, in, k + 1)``. A row lookup in a cached ``[q, q+1, ..., q+k]`` ramp is cheaper than
    broadcasting an add over a last dimension of size k + 1. ``n_cells`` bounds the cell
    index (known from the grid: no device-to-host read of ``cell.max()``)."""
    n_in = cell.shape[1]
    n = n_in * stride if stride else n_cells
    key = (k, cell.device)
    ramp = _ramps.get(key)
    if ramp is None or ramp.shape[0] < n:
        ramp = torch.arange(max(n, 1024), device=cell.device).unsqueeze(1) + torch.arange(k + 1, device=cell.device)
        _ramps[key] = ramp
    if stride:
        cell = cell + torch.arange(0, n_in * stride, stride, device=cell.device)
    return ramp.index_select(0, cell.reshape(-1)).view(*cell.shape, k + 1)


class _DenseKAN(torch.autograd.Function):
    """y = act(x) @ base_weight.T + D(x) @ scaled.T on uniform knots, with a hand-written
    backward. Saved for backward: x, the cells and D; the local position only if x needs a
    gradient."""

    @staticmethod
    def forward(ctx, x, spline_weight, spline_scaler, base_weight, cfg: _Uniform):
        n_out, k = base_weight.shape[0], cfg.k
        cell, u = _locate(x, cfg)
        values = _values(u, k)
        y = activations.get(cfg.activation).forward(x) @ base_weight.t()
        rows = _active_rows(cell, k, 0, cfg.grid + 2 * k + 1)  # rows of the padded identity
        dense = _dense_basis(rows, values, cfg)
        scaled = spline_weight * spline_scaler.unsqueeze(-1)
        y.addmm_(dense, scaled.view(n_out, -1).t())
        ctx.cfg = cfg
        need_x = ctx.needs_input_grad[0]
        ctx.save_for_backward(x, spline_weight, spline_scaler, base_weight, dense, cell, u if need_x else None)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, spline_weight, spline_scaler, base_weight, dense, cell, u = ctx.saved_tensors
        cfg = ctx.cfg
        n_in = x.shape[1]
        n_out, nb, k, P = grad_out.shape[1], cfg.n_bases, cfg.k, cfg.padded
        need_x, need_w, need_s, need_b = ctx.needs_input_grad[:4]
        grad_out = grad_out.contiguous()
        act = activations.get(cfg.activation)
        gx = gw = gs = gb = None
        if need_b:
            gb = grad_out.t() @ act.forward(x)
        if need_w or need_s:
            # d loss / d scaled spline weights = grad_out^T @ D
            gscaled = (grad_out.t() @ dense).view(n_out, n_in, nb)
            gw, gs = fused.split_scaled(gscaled, spline_weight, spline_scaler)
        if need_x:
            # d y / d x_i = sum_r dV_r(x_i) table[i, cell + r] + act'(x_i) base_weight[:, i]:
            # gather the k + 1 rows, dot them with grad_out
            rows = _active_rows(cell, k, P, cfg.grid + 2 * k + 1)  # rows of the flattened table
            table = _padded_table(spline_weight, spline_scaler, k)
            gx = sparse.spline_input_grad(grad_out, table, rows, _derivatives(u, k, cfg.h))
            # outside the knot span the clamp is flat: no spline gradient there
            t = (x - cfg.lo) * (1.0 / cfg.h) + k
            gx.mul_((t >= 0) & (t < cfg.grid + 2 * k))
            gx += (grad_out @ base_weight) * act.derivative(x)
        return gx, gw, gs, gb, None


def _fused_wins(grid: int, k: int) -> bool:
    """Whether "auto" takes the compiled fused kernel over the compiled sparse one. The fused
    column matrix is ``G + k + 1`` wide per input and each column costs a multiply-add in both
    products, while the sparse forward touches k + 1 rows whatever G is (its weight gradient
    is a GEMM as wide as the fused one): fused while ``G + k <= 8 (k + 1)``. Interleaved train
    steps, [784, 64, 10], batch 256, k = 3, 2 threads, ratio to the matched MLP, fused /
    sparse: G = 10 1.41 / 2.02, G = 20 1.46 / 1.70, G = 25 1.59 / 1.68, G = 30 1.59 / 1.58,
    G = 40 1.56 / 1.55, G = 50 sparse 1.39 to 1.47 (fused 5.8 when last measured, before this
    rule; its column matrix is 43 MB there)."""
    return grid + k <= 8 * (k + 1)


def _choose(grid: int, k: int, batch: int, n_in: int) -> str:
    """The "auto" rule where nothing is compiled, from interleaved train-step timings on a 2-core CPU ([784, 64, 10],
    batch 256): dense won at G = 5 and 20, sparse at G = 50. Dense while the basis row is
    short, G + k <= 8 (k + 1), and the whole basis matrix D (kept for backward) stays under
    24 MiB - a fresh allocation beyond glibc's 32 MiB mmap threshold costs a page fault per 4 KiB
    on every step; sparse (cost independent of G) otherwise."""
    nb = grid + k
    if nb <= 8 * (k + 1) and batch * n_in * nb * 4 <= 24 << 20:
        return "dense"
    return "sparse"


CONTRACTIONS = ("auto", "fused", "dense", "sparse", "reference")


class NativeKANLayer(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid: int = 5,
        k: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        grid_eps: float = 0.02,
        contraction: str = "auto",
        base_activation: str | type[nn.Module] = "silu",
    ):
        super().__init__()
        if contraction not in CONTRACTIONS:
            raise ValueError(f"contraction must be one of {', '.join(CONTRACTIONS)}, got {contraction!r}")
        self.contraction = contraction
        #: False when the adapter's warm-up decided compiling would not pay for this run
        #: (``NativeAdapter.warm_up``): the eager contractions run instead
        self.compile_allowed = True
        #: the base branch's activation and its derivative (a name or torch module class, as
        #: efficient-kan's ``base_activation``)
        self.activation = activations.get(base_activation)
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid
        self.k = k
        self.grid_eps = grid_eps
        lo, hi = float(grid_range[0]), float(grid_range[1])
        # while the knots are the initial uniform ones the fast local basis applies
        self.uniform: tuple[float, float] | None = (lo, (hi - lo) / grid)
        knots = uniform_knots(grid, k, (lo, hi), dtype=torch.get_default_dtype())
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid + k))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters(scale_noise, scale_base, scale_spline)

    @property
    def n_bases(self) -> int:
        return self.grid_size + self.k

    # -- initialisation ---------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self, scale_noise=0.1, scale_base=1.0, scale_spline=1.0) -> None:
        """efficient-kan's defaults: Kaiming-uniform base weight and spline scaler (negative
        slope ``sqrt(5) * scale``), spline weights fitted to small uniform noise at the grid
        points."""
        _kaiming_uniform(self.base_weight, math.sqrt(5) * scale_base)
        g = self.grid_size
        noise = (torch.rand(g + 1, self.in_features, self.out_features) - 0.5) * scale_noise / g
        points = self.grid.T[self.k : self.k + g + 1]  # the G + 1 grid points, (G+1, in)
        coeff = self.fit_coefficients(points.to(noise.dtype), noise)
        self.spline_weight.copy_(coeff)
        _kaiming_uniform(self.spline_scaler, math.sqrt(5) * scale_spline)

    # -- bases ------------------------------------------------------------------------------
    def compiles(self) -> bool:
        """Whether this layer uses torch.compile'd kernels (when compiling works): uniform grid,
        contraction "auto", "fused" or "sparse", compiling not switched off. Interleaved train
        steps, 2 threads, compiled against eager, ratio to the matched MLP: [784, 64, 10] b256
        G5 1.41x vs 1.87x; [30, 8, 2] b512 2.07x vs 2.86x; [2, 5, 1] b1000 2.22x vs 2.78x;
        [64, 8, 10] b32 2.01x vs 2.57x: compiled wins at every size measured."""
        return (self.uniform is not None and self.contraction in ("auto", "fused", "sparse")
                and fused.enabled() and self.compile_allowed)

    def _kernel_config(self) -> tuple:
        return (*self.uniform, self.grid_size, self.k)

    def _takes_sparse(self) -> bool:
        """Whether the compiled path of this layer is the sparse contraction (else fused)."""
        return self.contraction == "sparse" or (self.contraction == "auto" and not _fused_wins(self.grid_size, self.k))

    def compiled_kernels(self, create: bool = True) -> fused.Kernels | None:
        """The compiled kernels this layer runs on its own; None when it does not compile,
        when compiling them failed, or (``create=False``) when they were never built."""
        if not self.compiles():
            return None
        make = sparse.kernels if self._takes_sparse() else fused.kernels
        shape = (self.in_features, self.out_features)
        kernels = make(*self._kernel_config(), shape, activation=self.activation.name,
                       create=create)
        return kernels if kernels is not None and kernels.is_compiled else None

    def uses_compiled_kernels(self) -> bool:
        """Whether the kernels this layer runs are compiled (False before the first forward
        has tried, when compiling is off, or after compiling failed)."""
        return self.compiled_kernels() is not None

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Dense basis ``(B, in, G + k)`` of a ``(B, in)`` input on this layer's knots."""
        if self.uniform is not None:
            lo, h = self.uniform
            return uniform_basis(x, lo, h, self.grid_size, self.k)
        return cox_de_boor(x, self.grid.to(x.dtype), self.k)

    def scaled_spline_weight(self) -> torch.Tensor:
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.in_features)
        if self.uniform is not None and self.contraction != "reference":
            y = self._uniform_forward(x)
        else:
            y = self.reference_forward(x)
        return y.reshape(*shape[:-1], self.out_features)

    def _uniform_forward(self, x: torch.Tensor) -> torch.Tensor:
        args = (x, self.spline_weight, self.spline_scaler, self.base_weight)
        config = self._kernel_config()
        shape = (self.in_features, self.out_features)
        act = self.activation.name
        mode = self.contraction
        if mode == "auto":
            compiles = self.compiles()
            if compiles and self._takes_sparse():
                mode = "sparse"
            elif compiles and fused.kernels(*config, shape, activation=act).is_compiled:
                mode = "fused"
            else:  # eager: compiling off or failed
                mode = _choose(self.grid_size, self.k, x.shape[0], self.in_features)
        if mode == "fused":
            # compiled, or the eager twins where compiling is off or failed (forced "fused")
            return fused.FusedKAN.apply(*args, fused.kernels(*config, shape, activation=act))
        if mode == "sparse":
            return sparse.SparseKAN.apply(*args, sparse.kernels(*config, shape, activation=act))
        return _DenseKAN.apply(*args, _Uniform(*config, activation=act))

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain autograd through the dense basis: the general path for non-uniform knots
        (Cox-de Boor, ``O((G + 2k) k)`` time and memory per input) and the kernel's reference."""
        base = F.linear(self.activation.forward(x), self.base_weight)
        spline = F.linear(
            self.basis(x).reshape(x.shape[0], -1),
            self.scaled_spline_weight().reshape(self.out_features, -1),
        )
        return base + spline

    # -- fitting, grid update and regularisation --------------------------------------------
    @torch.no_grad()
    def fit_coefficients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Least-squares spline coefficients ``(out, in, G + k)`` with ``basis(x) @ c ~= y``.

        ``x`` is ``(N, in)``, ``y`` is ``(N, in, out)``. Under-determined systems (fewer
        distinct points than bases) get the minimum-norm solution.
        """
        a = self.basis(x).transpose(0, 1)  # (in, N, G + k)
        b = y.transpose(0, 1)  # (in, N, out)
        sol = torch.linalg.pinv(a.double()) @ b.double()  # (in, G + k, out)
        return sol.permute(2, 0, 1).to(self.spline_weight.dtype)

    def spline_curves(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge unscaled spline values ``(N, in, out)`` at ``x``: what a refit preserves."""
        bases = self.basis(x)  # (N, in, G + k)
        return torch.einsum("nij,oij->nio", bases, self.spline_weight)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01) -> None:
        """Move the knots to the data (efficient-kan's rule) and refit the spline weights.

        The new interior knots mix the per-feature sample quantiles with a uniform grid over
        the sample range (``grid_eps`` of uniform); ``k`` extra knots at the uniform spacing
        extend it each side. The unscaled spline of every edge is refitted by least squares
        at ``x`` (the scaler is kept, so the layer function changes only by the fit error).
        """
        x = x.reshape(-1, self.in_features)
        curves = self.spline_curves(x)
        g, k = self.grid_size, self.k
        xs = torch.sort(x, dim=0).values
        n = xs.shape[0]
        adaptive = xs[torch.linspace(0, n - 1, g + 1, device=x.device).round().long()]
        step = (xs[-1] - xs[0] + 2 * margin) / g  # (in,)
        ar = torch.arange(g + 1, dtype=x.dtype, device=x.device).unsqueeze(1)
        uniform = xs[0] - margin + ar * step
        interior = self.grid_eps * uniform + (1 - self.grid_eps) * adaptive  # (G+1, in)
        ext = torch.arange(1, k + 1, dtype=x.dtype, device=x.device).unsqueeze(1)
        knots = torch.cat([interior[:1] - step * ext.flip(0), interior, interior[-1:] + step * ext])
        self.grid.copy_(knots.T.to(self.grid.dtype))
        self.uniform = None
        self.spline_weight.copy_(self.fit_coefficients(x, curves))

    @torch.no_grad()
    def extend_grid(self, new_grid: int, x: torch.Tensor | None = None, samples_per_cell: int = 8) -> float:
        """Refine to ``new_grid`` intervals, refitting the spline weights by least squares so the
        function is preserved (the KAN paper's grid extension, e.g. G = 5 -> 10 -> 20 -> 50).

        The new interior knots subdivide the current ones piecewise linearly (per input: each
        old cell split evenly when ``new_grid`` is a multiple of the old G, as pykan's
        refinement interpolates its parent grid), so a uniform grid stays uniform and a
        data-adapted one (after ``update_grid``) keeps its shape; ``k`` new knots at the mean
        new spacing extend it each side. The fit points are ``samples_per_cell`` per new cell,
        plus ``x`` when given. When ``new_grid`` is a multiple of the old G the old spline lies
        in the new space and the refit is exact up to rounding inside the interval; otherwise
        the error is the least-squares approximation error. Outside the interval the new spline
        follows the old one only down to ``k`` *new* intervals (the extension is shorter).
        ``spline_weight`` is replaced by a new contiguous Parameter (rebuild the optimiser).
        Returns the largest deviation of any edge's spline at the fit points.
        """
        k, dtype, old_grid = self.k, self.spline_weight.dtype, self.grid_size
        interior = self.grid[:, k:k + old_grid + 1].to(torch.float64)  # (in, G + 1)
        device = interior.device

        def along(n_cells_points: torch.Tensor) -> torch.Tensor:
            """Positions in units of old cells -> coordinates, piecewise linear per input."""
            cell = n_cells_points.floor().clamp(max=old_grid - 1).long()
            frac = (n_cells_points - cell).unsqueeze(0)
            return interior[:, cell] + frac * (interior[:, cell + 1] - interior[:, cell])

        scale = old_grid / new_grid
        new_interior = along(torch.arange(new_grid + 1, dtype=torch.float64, device=device) * scale)
        pts = along(torch.linspace(0, old_grid, samples_per_cell * new_grid + 1,
                                   dtype=torch.float64, device=device)).T  # (N, in)
        if x is not None:
            pts = torch.cat([pts, x.reshape(-1, self.in_features).to(torch.float64)])
        old = self.spline_curves(pts.to(dtype)).to(torch.float64)  # (N, in, out)
        lo, hi = new_interior[:, 0], new_interior[:, -1]
        h = (hi - lo) / new_grid
        ext = torch.arange(1, k + 1, dtype=torch.float64, device=device)
        knots = torch.cat([lo.unsqueeze(1) - h.unsqueeze(1) * ext.flip(0), new_interior,
                           hi.unsqueeze(1) + h.unsqueeze(1) * ext], dim=1)  # (in, G' + 2k + 1)
        uniform = bool(torch.allclose(lo, lo[0].expand_as(lo)) and torch.allclose(hi, hi[0].expand_as(hi)))
        self.grid_size = new_grid
        self.grid = knots.to(self.grid.dtype)
        self.uniform = (float(lo[0]), float(h[0])) if uniform and self.uniform is not None else None
        coeff = self._fit_double(pts, old)
        self.spline_weight = nn.Parameter(coeff.to(dtype).contiguous())
        new = self.spline_curves(pts.to(dtype)).to(torch.float64)
        return float((new - old).abs().max())

    def _fit_double(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = cox_de_boor(x, self.grid.to(torch.float64), self.k).transpose(0, 1)  # (in, N, nb)
        sol = torch.linalg.pinv(a) @ y.transpose(0, 1)
        return sol.permute(2, 0, 1)

    def regularization_loss(self, activation: float = 1.0, entropy: float = 1.0) -> torch.Tensor:
        """efficient-kan's cheap stand-in for the paper's L1 + entropy penalty: mean absolute
        spline weight per edge, summed, plus the entropy of its distribution over edges."""
        l1 = self.spline_weight.abs().mean(-1)
        total = l1.sum()
        p = l1 / total
        return activation * total + entropy * -(p * p.log()).sum()


def _kaiming_uniform(w: torch.Tensor, a: float) -> None:
    """U(-b, b), b = sqrt(6 / ((1 + a^2) fan_in)): Kaiming-uniform with negative slope ``a``."""
    fan_in = w.shape[1]
    bound = math.sqrt(6.0 / ((1.0 + a * a) * fan_in))
    w.uniform_(-bound, bound)


#: each layer's parameters, in the order the stack kernels take them
_STACKED = ("spline_weight", "spline_scaler", "base_weight")


class NativeKAN(nn.Module):
    """A stack of :class:`NativeKANLayer`, widths ``[in, *hidden, out]``."""

    def __init__(self, widths, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(
            NativeKANLayer(a, b, **layer_kwargs) for a, b in zip(widths[:-1], widths[1:])
        )
        # the per-forward stack check's cache (see _stack_kernels)
        self._stack_key: tuple | None = None
        self._stack: fused.Kernels | None = None
        #: whether the warm-up ran torch.compile'd kernels; None until it has run, False from the
        #: start where no layer compiles (compiling off, contraction "dense" or "reference")
        self.compiled_kernel: bool | None = None if any(layer.compiles() for layer in self.layers) else False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stack = self._stack_kernels()
        if stack is not None:
            shape = x.shape
            params = [layer._parameters[name] for layer in self._layer_list() for name in _STACKED]
            y = fused.FusedKANStack.apply(stack, x.reshape(-1, shape[-1]), *params)
            return y.reshape(*shape[:-1], y.shape[-1])
        for layer in self.layers:
            x = layer(x)
        return x

    def __getstate__(self):
        """Without the stack cache (compiled functions neither pickle nor deep-copy): a copy
        finds its stack again at its first forward."""
        state = self.__dict__.copy()
        state["_stack_key"] = state["_stack"] = None
        return state

    def _stack_kernels(self) -> fused.Kernels | None:
        """The compiled kernels of the whole model as one stack (fused.py
        ``_make_stack_kernels``: one call per step and direction instead of one per layer),
        where every layer would run the compiled fused contraction on the same knots and
        none is blocked; None otherwise (each layer runs its own contraction), or when the
        stack failed to compile. The answer is kept until a layer (or its knots, grid,
        contraction or compile permission) or the compile switch changes (this runs on every
        forward)."""
        layers = self._layer_list()
        key = (fused.enabled(), *[(id(layer), layer.uniform, layer.grid_size, layer.contraction,
                                   layer.compile_allowed) for layer in layers])
        if key != self._stack_key:
            self._stack_key, self._stack = key, self._find_stack()
        stack = self._stack
        return stack if stack is not None and stack.is_compiled else None

    def _layer_list(self):
        # the ModuleList's own dict: reading it through nn.Module attribute lookups costs
        # microseconds per forward
        return self._modules["layers"]._modules.values()

    def _stack_widths(self) -> tuple[int, ...] | None:
        """The widths of the stack where the model would run as one (every layer compiles the
        fused contraction on the same knots, and the stack fits), else None."""
        first = self.layers[0]
        config = (first.uniform, first.grid_size, first.k, first.activation.name)
        for layer in self.layers:
            if (not layer.compiles() or layer._takes_sparse()
                    or (layer.uniform, layer.grid_size, layer.k, layer.activation.name) != config):
                return None
        widths = (first.in_features, *(layer.out_features for layer in self.layers))
        return widths if fused.stack_fits(widths, first.grid_size, first.k) else None

    def _find_stack(self, create: bool = True, widths: tuple[int, ...] | None = None
                    ) -> fused.Kernels | None:
        """The stack's kernels where the model runs as one (see :meth:`_stack_kernels`);
        ``create`` as in :func:`fused.kernels`; ``widths``: :meth:`_stack_widths`, when
        the caller has them."""
        widths = widths or self._stack_widths()
        if widths is None:
            return None
        first = self.layers[0]
        return fused.kernels(*first._kernel_config(), widths, make=fused._make_stack_kernels,
                             activation=first.activation.name, create=create)

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        weight = self.layers[0].spline_weight
        return weight.device, weight.dtype

    def compiled_warm(self) -> list[tuple[NativeKANLayer, bool]]:
        """Each layer that compiles, with whether the compiled kernels it would run (the
        stack's, or its own) were warmed up in this process already, on this model's device
        and dtype, so that running them compiles nothing more. Looks in the caches only:
        builds no kernels."""
        placement = self._placement()
        widths = self._stack_widths()
        if widths is not None:
            stack = self._find_stack(create=False, widths=widths)
            warm = stack is not None and stack.is_compiled and placement in stack.warm
            return [(layer, warm) for layer in self.layers]
        compiling = [layer for layer in self.layers if layer.compiles()]
        return [(layer, (kernels := layer.compiled_kernels(create=False)) is not None
                 and placement in kernels.warm) for layer in compiling]

    def mark_compiled_warm(self) -> None:
        """Record that the compiled kernels this model runs have been warmed up on its device
        and dtype (after :func:`adapters.base.compile_warm_up`): see :meth:`compiled_warm`."""
        stack = self._stack_kernels()
        placement = self._placement()
        for kernels in [stack] if stack is not None else [
                layer.compiled_kernels() for layer in self.layers]:
            if kernels is not None:
                kernels.warm.add(placement)

    def uses_compiled_kernels(self) -> bool:
        """Whether the kernels this model runs are compiled: the stack's, or any layer's."""
        return self._stack_kernels() is not None or any(layer.uses_compiled_kernels() for layer in self.layers)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor) -> None:
        for layer in self.layers:
            layer.update_grid(x)
            x = layer(x)

    def regularization_loss(self, activation: float = 1.0, entropy: float = 1.0) -> torch.Tensor:
        return sum(layer.regularization_loss(activation, entropy) for layer in self.layers)
