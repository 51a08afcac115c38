"""The native KAN layer: efficient-kan's function and parameterisation.

``y = silu(x) @ base_weight.T + sum_i sum_j B_j(x_i) * spline_weight[:, i, j] * spline_scaler[:, i]``
with ``G + k`` B-splines of degree ``k`` per input on ``G + 2k + 1`` knots (``G`` uniform
intervals on ``grid_range`` extended by ``k`` on each side), zero outside the knot span.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adapters.native.basis import cox_de_boor, uniform_basis, uniform_knots


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
    ):
        super().__init__()
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
        base = F.linear(F.silu(x), self.base_weight)
        spline = F.linear(
            self.basis(x).reshape(x.shape[0], -1),
            self.scaled_spline_weight().reshape(self.out_features, -1),
        )
        return (base + spline).reshape(*shape[:-1], self.out_features)

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


class NativeKAN(nn.Module):
    """A stack of :class:`NativeKANLayer`, widths ``[in, *hidden, out]``."""

    def __init__(self, widths, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(
            NativeKANLayer(a, b, **layer_kwargs) for a, b in zip(widths[:-1], widths[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor) -> None:
        for layer in self.layers:
            layer.update_grid(x)
            x = layer(x)

    def regularization_loss(self, activation: float = 1.0, entropy: float = 1.0) -> torch.Tensor:
        return sum(layer.regularization_loss(activation, entropy) for layer in self.layers)
