"""B-spline bases for the native KAN layer.

Two evaluations of the same functions, on the knot vector efficient-kan uses (``G`` uniform
intervals on ``[lo, hi]`` extended by ``k`` intervals on each side: ``G + 2k + 1`` knots
``t_0 < ... < t_{G+2k}``, ``G + k`` basis functions of degree ``k``, half-open cells, zero
outside ``[t_0, t_{G+2k})``):

* :func:`uniform_local` - uniform knots only. A point in cell ``c`` (``t_c <= x < t_{c+1}``)
  touches exactly the ``k + 1`` bases ``c - k .. c``, and on a uniform grid their values are the
  *same* ``k + 1`` polynomials of the local position ``u = (x - t_c) / h`` in every cell (the
  segments of the cardinal B-spline). So the basis is a cell index plus one ``(k+1) x (k+1)``
  polynomial table evaluated by Horner's rule: no recursion, no division, cost ``O(k^2)`` per
  input whatever ``G`` is. The derivative uses the table of derivative polynomials.
* :func:`cox_de_boor` - any non-decreasing knots (per input feature), the textbook recursion
  over all ``G + k`` bases: cost ``O((G + 2k) k)`` time and memory per input.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import torch


def uniform_knots(
    grid: int,
    k: int,
    grid_range: tuple[float, float] = (-1.0, 1.0),
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The ``grid + 2k + 1`` knots: ``grid`` intervals on ``grid_range`` extended ``k`` each side."""
    lo, hi = grid_range
    h = (hi - lo) / grid
    steps = torch.arange(-k, grid + k + 1, dtype=torch.float64)
    return (steps * h + lo).to(dtype=dtype, device=device)


@lru_cache(maxsize=None)
def _segment_table_exact(k: int) -> tuple[tuple[Fraction, ...], ...]:
    """``M[p][r]``: coefficient of ``u^p`` in the value of basis ``c - k + r`` in cell ``c``.

    Built from the cardinal B-spline recursion on polynomials with exact rationals:
    ``N_d(t) = t/d N_{d-1}(t) + (d+1-t)/d N_{d-1}(t-1)``, written per unit segment
    ``t = m + u``; basis ``c - k + r`` sees segment ``m = k - r`` of ``N_k``.
    """
    # pieces[m] = polynomial in u (coefficient list, lowest power first) of N_d on [m, m+1)
    pieces = [[Fraction(1)]]
    for d in range(1, k + 1):
        new = []
        for m in range(d + 1):
            poly = [Fraction(0)] * (d + 1)
            if m < d:  # (m + u)/d * N_{d-1} piece m
                for p, a in enumerate(pieces[m]):
                    poly[p] += a * m / d
                    poly[p + 1] += a / d
            if m >= 1:  # (d + 1 - m - u)/d * N_{d-1} piece m - 1
                for p, a in enumerate(pieces[m - 1]):
                    poly[p] += a * (d + 1 - m) / d
                    poly[p + 1] -= a / d
            new.append(poly)
        pieces = new
    return tuple(tuple(pieces[k - r][p] for r in range(k + 1)) for p in range(k + 1))


@lru_cache(maxsize=None)
def _segment_tables(k: int) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """(values, derivatives) tables as floats: rows are powers of ``u``, columns are ``r``."""
    exact = _segment_table_exact(k)
    values = tuple(tuple(float(a) for a in row) for row in exact)
    deriv = tuple(tuple(float((p + 1) * a) for a in exact[p + 1]) for p in range(k))
    return values, deriv


def segment_table(k: int, *, derivative: bool = False, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The polynomial table as a tensor ``(powers, k + 1)`` (``k`` powers for the derivative)."""
    values, deriv = _segment_tables(k)
    return torch.tensor(deriv if derivative else values, dtype=dtype, device=device)


def _horner(u: torch.Tensor, rows: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """``sum_p u^p rows[p]`` for every ``r`` at once: ``u (...,)`` -> ``(..., k+1)``."""
    width = len(rows[0])
    # highest power first; the table is a handful of Python floats, so each step is one
    # broadcast multiply-add on a (..., k+1) tensor
    coef = torch.tensor(rows, dtype=u.dtype, device=u.device)
    uu = u.unsqueeze(-1)
    out = coef[-1].expand(*u.shape, width)
    for p in range(len(rows) - 2, -1, -1):
        out = torch.addcmul(coef[p], out, uu)
    return out


def uniform_cell(
    x: torch.Tensor, lo: float, h: float, grid: int, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell index, local position and an inside-the-knot-span mask for uniform knots.

    ``lo``/``h`` are the first *interior* knot and the spacing, so ``t_0 = lo - k h``.
    Returns ``cell`` (int64, clamped to ``[0, G + 2k - 1]``), ``u`` in ``[0, 1)`` (same dtype
    as ``x``) and ``inside`` (bool): points outside ``[t_0, t_{G+2k})`` have ``inside`` False.
    """
    t = (x - lo) / h + k  # position in units of h from t_0
    f = torch.floor(t)
    n_cells = grid + 2 * k
    inside = (f >= 0) & (f < n_cells)
    u = t - f
    # NaN has no cell: send it to cell 0 (``inside`` is False, so its values are zeroed) rather
    # than casting NaN to int64 (-2^63, an out-of-bounds index)
    cell = f.nan_to_num(nan=0.0).clamp(0, n_cells - 1).to(torch.int64)
    return cell, u, inside


def uniform_local(
    x: torch.Tensor, lo: float, h: float, grid: int, k: int, *, derivative: bool = False
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k + 1`` non-zero bases of each input on uniform knots.

    Returns ``cell`` (int64, ``x.shape``; the active bases are ``cell - k .. cell``, indices
    below 0 or above ``G + k - 1`` belong to no basis and carry value 0) and ``values``
    (``x.shape + (k + 1,)``), plus ``d values / dx`` when ``derivative``. Values are exactly
    zero outside the knot span.
    """
    cell, u, inside = uniform_cell(x, lo, h, grid, k)
    values_rows, deriv_rows = _segment_tables(k)
    values = _horner(u, values_rows)
    # cells next to the ends of the knot vector own fewer than k + 1 real bases: zero the
    # slots whose basis index j = cell - k + r is outside [0, G + k - 1], and everything
    # for points outside the span
    keep = _valid_slots(cell, inside, grid, k)
    zero = values.new_zeros(())
    values = torch.where(keep, values, zero)
    if not derivative:
        return cell, values
    dvalues = torch.where(keep, _horner(u, deriv_rows) / h, zero)
    return cell, values, dvalues


def _valid_slots(cell: torch.Tensor, inside: torch.Tensor, grid: int, k: int) -> torch.Tensor:
    r = torch.arange(k + 1, device=cell.device)
    j = cell.unsqueeze(-1) - k + r
    return (j >= 0) & (j < grid + k) & inside.unsqueeze(-1)


def local_to_dense(cell: torch.Tensor, values: torch.Tensor, n_bases: int, k: int) -> torch.Tensor:
    """Scatter local values ``(..., k+1)`` into the full basis ``(..., n_bases)``."""
    # pad k slots on the left so slot index cell + r never goes negative; the invalid slots
    # carry zeros, so writing them into the padding is harmless
    shape = values.shape[:-1]
    dense = values.new_zeros(*shape, n_bases + 2 * k)
    idx = cell.unsqueeze(-1) + torch.arange(k + 1, device=cell.device)
    dense.scatter_(-1, idx, values)
    return dense[..., k : k + n_bases]


def uniform_basis(x: torch.Tensor, lo: float, h: float, grid: int, k: int) -> torch.Tensor:
    """Dense basis ``x.shape + (G + k,)`` on uniform knots (via :func:`uniform_local`)."""
    cell, values = uniform_local(x, lo, h, grid, k)
    return local_to_dense(cell, values, grid + k, k)


def cox_de_boor(x: torch.Tensor, knots: torch.Tensor, k: int) -> torch.Tensor:
    """Dense basis of degree ``k`` on arbitrary non-decreasing knots, by Cox-de Boor.

    ``x`` is ``(B, in)``; ``knots`` is ``(in, n_knots)`` (per feature) or ``(n_knots,)``.
    Returns ``(B, in, n_knots - k - 1)``. Cells are half-open ``[t_j, t_{j+1})`` and terms
    with a zero-length denominator (repeated knots) are dropped, the usual convention.
    Cost: ``O(n_knots * k)`` time and memory per input (autograd keeps every level).
    """
    t = knots if knots.dim() == 2 else knots.unsqueeze(0)
    xx = x.unsqueeze(-1)
    bases = ((xx >= t[:, :-1]) & (xx < t[:, 1:])).to(x.dtype)
    for d in range(1, k + 1):
        left_den = t[:, d:-1] - t[:, : -(d + 1)]
        right_den = t[:, d + 1 :] - t[:, 1:-d]
        left = (xx - t[:, : -(d + 1)]) / torch.where(left_den == 0, 1, left_den)
        right = (t[:, d + 1 :] - xx) / torch.where(right_den == 0, 1, right_den)
        left = torch.where(left_den == 0, 0, left)
        right = torch.where(right_den == 0, 0, right)
        bases = left * bases[..., :-1] + right * bases[..., 1:]
    return bases
