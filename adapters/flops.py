"""FLOPs per sample: the fairness study's nominal convention, and what an implementation executes.

Torch-free (the budget solver and the reports call it without torch). Every figure is for ONE
sample; each adapter's ``flops(spec, in_dim, out_dim)`` returns a :class:`Flops`.

**nominal** - the convention of KANbeFair (Yu, Yu & Wang, "KAN or MLP: A Fairer Comparison",
arXiv 2407.16674; github.com/yu-rp/KANbeFair, ``src/models/kanbefair.py`` and ``mlp.py``),
as its code computes it (its published results.csv rows are reproduced in tests/test_flops.py):

* B-spline KAN layer ``din -> dout``, grid ``G``, order ``k``, shortcut (base function) ``s``:
  ``din*dout*(9k(G + 1.5k) + 2G - 2.5k + 1)``, plus ``FLOPS[s]*din + 2*din*dout`` unless
  ``s == "zero"``: the basis priced per edge, whatever the implementation does.
* MLP layer ``din -> dout``: ``2*din*dout + FLOPS[act]*dout``; its loop prices the activation on
  EVERY layer, the output layer included, and no bias add.

**impl** - the forward as the implementation executes it, op by op, under these rules:

* a matrix product (``mm``, ``addmm``, ``bmm``, an ``einsum`` that lowers to one) costs 2 per
  multiply-add, ``2*m*n*k`` (torch.utils.flop_counter's count); the matrix ``addmm`` adds (a
  bias, or the output it accumulates into) costs 1 per output element, outside the matmul part;
* a gather contraction (``embedding_bag`` with per-sample weights: a weighted sum of table rows)
  also costs 2 per multiply-add, but is no matrix product: it is in ``impl``, not ``impl_matmul``;
* every other op on floating-point operands costs 1 per output element (arithmetic,
  comparisons, floor, clamp, where, nan_to_num), a fused multiply-add (``addcmul``) 2, a sum of
  ``n`` terms ``n - 1``, an activation :func:`activation_flops` (KANbeFair's prices);
* free: data movement (views, copies, casts, cat/stack, gathers, scatters, zero fills) and
  integer or boolean arithmetic (cell indices, masks);
* work done once per forward whatever the batch size (efficient-kan's ``spline_weight *
  spline_scaler``, the native kernels' packed weights, pykan's knot differences) is not per
  sample and is excluded.

Each adapter describes its layers as :class:`LayerWork` (its ``flops`` docstring gives the
formula and where each term comes from); :func:`flops_of` sums them and applies the training
rule below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

#: KANbeFair's ``FLOPs_MAP`` (src/models/utils.py): FLOPs of one activation evaluation
KANBEFAIR_FLOPS: dict[str, int] = {
    "zero": 0,
    "identity": 0,
    "relu": 1,
    "square_relu": 2,
    "sigmoid": 4,   # neg, exp, add, div
    "silu": 5,      # x * sigmoid(x)
    "tanh": 6,      # two exps, neg, sub, add, div
    "gelu": 14,     # the tanh approximation: x^3 (2), *c, +x, *c, tanh (6), +1, *x, *0.5
    "polynomial2": 5,
    "polynomial3": 9,
    "polynomial5": 14,
}

#: activations of ``adapters.mlp.ACTIVATIONS`` that KANbeFair's map lacks, priced in its style
#: (ours, not the study's): leaky_relu = a select and a multiply (2); elu = a select, exp and
#: subtract (3)
EXTRA_ACTIVATION_FLOPS: dict[str, int] = {"leaky_relu": 2, "elu": 3}


def activation_flops(name: str) -> int:
    """FLOPs of one evaluation of the activation ``name``: KANbeFair's price, or ours for the
    names it lacks (:data:`EXTRA_ACTIVATION_FLOPS`). ValueError for any other name."""
    if name in KANBEFAIR_FLOPS:
        return KANBEFAIR_FLOPS[name]
    if name in EXTRA_ACTIVATION_FLOPS:
        return EXTRA_ACTIVATION_FLOPS[name]
    known = ", ".join(sorted({**KANBEFAIR_FLOPS, **EXTRA_ACTIVATION_FLOPS}))
    raise ValueError(f"no FLOPs price for activation {name!r}; priced: {known}")


def _pairs(widths: Iterable[int]) -> list[tuple[int, int]]:
    widths = list(widths)
    if len(widths) < 2:
        raise ValueError(f"need at least an input and an output width, got {widths}")
    return list(zip(widths[:-1], widths[1:]))


# -- nominal: KANbeFair's formulas -----------------------------------------------------------

def kanbefair_kan_flops(widths: Iterable[int], grid: int, k: int, shortcut: str) -> int:
    """KANbeFair's FLOPs of a B-spline KAN with layer ``widths`` (module docstring), exact.

    ``9k(G + 1.5k) - 2.5k = 9kG + (27k^2 - 5k)/2`` is an integer for every k (``k(27k - 5)`` is
    even), so the sum is computed in integers."""
    per_edge = 9 * k * grid + (27 * k * k - 5 * k) // 2 + 2 * grid + 1
    shortcut_price = activation_flops(shortcut)
    total = 0
    for din, dout in _pairs(widths):
        total += din * dout * per_edge
        if shortcut != "zero":
            total += shortcut_price * din + 2 * din * dout
    return total


def kanbefair_kan_params(widths: Iterable[int], grid: int, k: int, shortcut: str) -> int:
    """KANbeFair's parameter count of that KAN: ``din*dout*(G + k + 2) + dout`` per layer, plus
    ``din*dout`` unless the shortcut is "zero". Its convention, not any adapter's (used only to
    reproduce its published rows)."""
    return sum(din * dout * (grid + k + 2) + dout + (din * dout if shortcut != "zero" else 0)
               for din, dout in _pairs(widths))


def kanbefair_mlp_flops(widths: Iterable[int], activation: str) -> int:
    """KANbeFair's FLOPs of an MLP: ``2*din*dout + FLOPS[act]*dout`` on every layer."""
    price = activation_flops(activation)
    return sum(2 * din * dout + price * dout for din, dout in _pairs(widths))


def kanbefair_mlp_params(widths: Iterable[int]) -> int:
    """KANbeFair's parameter count of an MLP: ``dout*(din + 1)`` per layer."""
    return sum(dout * (din + 1) for din, dout in _pairs(widths))


# -- impl: what runs, and the training rule --------------------------------------------------

def cox_de_boor_terms(grid: int, k: int) -> int:
    """Bases evaluated above degree 0 by the Cox-de Boor recursion on ``G + 2k + 1`` knots:
    ``G + 2k - d`` at each degree ``d = 1..k``, i.e. ``k(G + 2k) - k(k + 1)/2``."""
    return sum(grid + 2 * k - d for d in range(1, k + 1))


@dataclass(frozen=True)
class LayerWork:
    """One layer's forward FLOPs per sample (module docstring's rules), split by what its
    backward needs under the training rule of :func:`flops_of`."""

    #: matrix products of input-derived features with the layer's weights
    matmul: int = 0
    #: matrix products of features that depend on trained parameters even in the first layer
    #: (FastKAN's basis after its learned layer norm) with the layer's weights
    matmul_learned_input: int = 0
    #: matrix products of input-derived values with a constant table (no weight gradient)
    matmul_const: int = 0
    #: gather contractions of input-derived values with the weights (not matrix products)
    gather: int = 0
    #: elementwise work on the layer's input alone: basis, base activation
    on_input: int = 0
    #: elementwise work on what the weights produced: scalings, sums, bias adds, activations
    after: int = 0


@dataclass(frozen=True)
class Flops:
    """Per-sample FLOPs of one model (see adapters/flops.py for the conventions)."""

    nominal: float | None  # KANbeFair's convention; None where the family has no such formula
    impl: float            # forward as this implementation executes it
    impl_matmul: float     # the matmul/contraction part of impl (what torch's FlopCounterMode sees)
    train: float           # forward + backward (see flops_of)
    train_matmul: float    # the matrix-product part of train


def flops_of(layers: Iterable[LayerWork], nominal: float | None) -> Flops:
    """Sum the layers into a :class:`Flops`.

    ``impl`` is the sum of every part; ``impl_matmul`` its matrix products (``matmul +
    matmul_const``), which torch.utils.flop_counter.FlopCounterMode counts (it misses an
    in-place ``addmm_``; gather contractions are not matrix products).

    ``train`` = forward (``impl``) + backward, the backward priced as autograd would run it on
    this forward (a model, not a measurement: native's hand-written backward differs):

    * a matrix product or gather contraction costs one product of its own size per operand
      that needs a gradient: the weights always (the weight gradient), the layer's input
      features except in the first layer, whose input needs no gradient (so ``matmul`` and
      ``gather`` cost 1x there, 2x elsewhere; ``matmul_const``, whose table is constant, 0x in
      the first layer and 1x elsewhere; ``matmul_learned_input`` 2x everywhere);
    * an elementwise op costs what it costs forward, except the first layer's work on its
      input alone (``on_input``: basis, base activation), which needs no gradient.

    ``train_matmul`` is its matrix-product part (forward and backward).
    """
    layers = list(layers)
    impl = matmul = train = train_matmul = 0
    for index, w in enumerate(layers):
        first = index == 0
        products = w.matmul + w.matmul_const + w.matmul_learned_input
        forward = products + w.gather + w.on_input + w.after
        backward_matmul = ((1 if first else 2) * w.matmul + (0 if first else 1) * w.matmul_const
                           + 2 * w.matmul_learned_input)
        backward = backward_matmul + (1 if first else 2) * w.gather + w.after + (0 if first else w.on_input)
        impl += forward
        matmul += products
        train += forward + backward
        train_matmul += products + backward_matmul
    return Flops(
        nominal=None if nominal is None else float(nominal),
        impl=float(impl),
        impl_matmul=float(matmul),
        train=float(train),
        train_matmul=float(train_matmul),
    )
