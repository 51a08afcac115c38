"""FLOPs per sample (adapters/flops.py and every adapter's ``flops``).

Three independent checks of each adapter's figures:

* ``FlopCounterMode`` (torch.utils.flop_counter) on a real forward, and forward + backward, of
  a built model: it counts matrix products only, so it pins ``impl_matmul`` and
  ``train_matmul`` exactly. What it cannot see: an in-place ``addmm_`` (native's "dense"
  contraction accumulates its spline GEMM into the base output with one: the test adds that
  GEMM by hand), gather contractions (``embedding_bag``; inkan's gather-multiply-sum), every
  elementwise op, and torch.compile'd kernels (the checks build the eager twins: native with
  KANBENCH_NATIVE_COMPILE=0, inkan with ``compile_basis=False``; the compiled kernels run the
  same Python functions, so the same arithmetic up to what inductor fuses). ``train`` models
  autograd's backward of the forward; native's contractions have hand-written backwards, of
  which "fused" runs exactly those products and "dense" and "sparse" do not
  (:data:`_OWN_BACKWARD`): the backward check runs native's "fused" and "reference" (plain
  autograd) contractions.
* :class:`OpCount`, a dispatch mode that prices every aten op a forward executes by the rules
  of adapters/flops.py, independently of each adapter's formula: it pins all of ``impl``
  (elementwise basis work, gathers, sums, activations) on every eager path, per sample (the
  difference of two batch sizes, so that per-batch work drops out).
* hand-computed examples, arithmetic in the comments, and KANbeFair's published rows.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

import adapters
from adapters import Adapter, AdapterError, Flops, ModelSpec
from adapters.flops import (
    EXTRA_ACTIVATION_FLOPS,
    KANBEFAIR_FLOPS,
    LayerWork,
    activation_flops,
    cox_de_boor_terms,
    flops_of,
    kanbefair_kan_flops,
    kanbefair_kan_params,
    kanbefair_mlp_flops,
    kanbefair_mlp_params,
)
from adapters.mlp import ACTIVATIONS
from helpers import available

IN, OUT, BATCH = 3, 2, 8

#: option sets that change what a forward executes, per adapter (each is checked)
VARIANTS: dict[str, list[dict]] = {
    "native": [{"contraction": c} for c in ("dense", "fused", "sparse", "reference")],
    "inkan": [{"compile_basis": False, "basis_mode": m, "contraction": c}
              for m in ("local", "dense") for c in ("dense", "direct")],
    "pykan": [{}, {"affine_trainable": True}],
    "fastkan": [{}, {"centres": 5, "base_activation": None}, {"layer_norm": False,
                                                             "base_activation": "gelu"}],
    "chebyshev_kan": [{}, {"degree": 3, "use_bias": True, "base_activation": "relu"}],
    "fourier_kan": [{}, {"num_frequencies": 2, "use_bias": False}],
    "jacobi_kan": [{}, {"degree": 1}, {"degree": 3, "a": 0.5, "b": 2.0}],
    "taylor_kan": [{}, {"order": 1}, {"order": 5}],
    "wavelet_kan": [{"wavelet_type": w} for w in ("mexican_hat", "morlet", "dog", "shannon")],
    "rational_kan": [{}, {"groups": 2, "init": "identity"}],
}
#: options whose work depends on the data: their FLOPs are an upper bound (checked as such)
DATA_DEPENDENT: dict[str, list[dict]] = {"wavelet_kan": [{"wavelet_type": "meyer"}]}

SHAPES = [((5,), 3, 2), ((4, 3), 5, 3), ((5,), 5, 3), ((4, 3), 3, 2)]  # hidden, G, k


#: native contractions whose hand-written backward runs other products than autograd would:
#: "dense" gathers k + 1 table rows for the input gradient (not a GEMM over all G + k bases),
#: "sparse" takes its weight gradient as a GEMM over all G + k bases (not a scatter of k + 1)
_OWN_BACKWARD = ("dense", "sparse")


def _cases(backward: bool = False):
    """(adapter, spec) for every registered adapter, option variant and shape; with
    ``backward`` only models whose backward runs the products ``train`` prices (native's
    "fused" kernel does: its hand-written backward is the packed GEMM's two products)."""
    for name in adapters.names():
        for options in VARIANTS.get(name, [{}]):
            if backward and name == "native" and options.get("contraction") in _OWN_BACKWARD:
                continue
            seen = set()
            for hidden, grid, k in SHAPES:
                if name == "inkan" and k != 3:
                    continue
                if adapters.get(name).hyper is not None:  # no grid: one case per depth
                    if hidden in seen:
                        continue
                    seen.add(hidden)
                label = ",".join(f"{key}={value}" for key, value in options.items())
                yield pytest.param(name, ModelSpec(hidden=hidden, grid=grid, k=k, options=options),
                                   id=f"{name}[{label}]-{'x'.join(map(str, hidden))}-G{grid}-k{k}")


@pytest.fixture(autouse=True)
def _eager_native(monkeypatch):
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "0")


def _model(name: str, spec: ModelSpec, in_dim: int = IN, out_dim: int = OUT):
    return available(name).build(spec, in_dim, out_dim, seed=0).eval()


# -- the op counter -------------------------------------------------------------------------

_FREE = frozenset(
    "view _unsafe_view reshape expand permute transpose t unsqueeze squeeze slice select alias "
    "detach clone copy_ _to_copy contiguous cat stack index index_select embedding gather scatter "
    "scatter_ new_zeros new_empty zeros zeros_like ones_like empty empty_like full fill_ zero_ "
    "arange eye lift_fresh split narrow as_strided index_put_".split())
_ELEMENTWISE = frozenset(
    "add add_ sub sub_ rsub mul mul_ div div_ neg floor clamp clamp_ clamp_min ge gt le lt eq ne "
    "where nan_to_num nan_to_num_ exp cos sin acos pow sinc abs".split())


class OpCount(TorchDispatchMode):
    """Prices each aten op a forward executes by the rules of adapters/flops.py: matrix products
    2 per multiply-add (``matmul``; an addmm's added matrix 1 per element, elementwise), weighted
    ``embedding_bag`` 2 per multiply-add (``gather``), ``sum`` n - 1 per n terms, ``addcmul`` 2,
    activations their price, other ops on floating-point operands 1 per output element; data
    movement and integer/boolean ops free. An op on floats it has no price for fails the test."""

    def __init__(self) -> None:
        super().__init__()
        self.matmul = self.gather = self.elementwise = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        numel = sum(t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        if name in _FREE or not any(t.is_floating_point() for t in inputs):
            return out
        if name in ("mm", "bmm", "addmm", "addmm_"):
            a, b = args[-2:]
            self.matmul += 2 * a.numel() * b.shape[-1]  # (.., m, k) @ (.., k, n): 2 m k n
            if name.startswith("addmm"):
                self.elementwise += numel
        elif name in ("_embedding_bag", "_embedding_bag_forward_only"):
            weight, indices = args[0], args[1]
            assert args[4] == 0 and args[6] is not None, "a weighted sum of rows expected"
            self.gather += 2 * indices.numel() * weight.shape[1]
        elif name == "sum":
            self.elementwise += args[0].numel() - numel
        elif name == "native_layer_norm":  # adapters/fastkan.py: 7n + 2 per normalised row
            n = math.prod(args[1])
            self.elementwise += (7 * n + 2) * (args[0].numel() // n)
        elif name == "addcmul":
            self.elementwise += 2 * numel
        elif name in ACTIVATIONS:
            self.elementwise += activation_flops(name) * numel
        elif name in _ELEMENTWISE:
            self.elementwise += numel
        else:
            raise AssertionError(f"no price for {func}")
        return out

    @property
    def total(self) -> int:
        return self.matmul + self.gather + self.elementwise


def _per_sample(model, in_dim: int = IN) -> tuple[float, float]:
    """(all, matmul) FLOPs per sample of a forward, counted at two batch sizes: the difference
    leaves out per-batch work (scaled or packed weights, knot differences)."""
    torch.manual_seed(0)
    counts = []
    with torch.no_grad():
        model(torch.rand(BATCH, in_dim) * 2.4 - 1.2)  # fill the kernels' caches first
        for batch in (BATCH, 2 * BATCH):
            x = torch.rand(batch, in_dim) * 2.4 - 1.2  # some inputs beyond the grid
            with OpCount() as c:
                model(x)
            counts.append(c)
    return ((counts[1].total - counts[0].total) / BATCH,
            (counts[1].matmul - counts[0].matmul) / BATCH)


# -- checks against what runs ---------------------------------------------------------------

def _dense_addmm_(name: str, spec: ModelSpec, in_dim: int, out_dim: int) -> int:
    """native "dense": the spline GEMM per sample, accumulated in place (``addmm_``), which
    FlopCounterMode does not count: 2 a b (G + k) per layer."""
    if name != "native" or spec.options.get("contraction") != "dense":
        return 0
    widths = spec.widths(in_dim, out_dim)
    return sum(2 * a * b * (spec.grid + spec.k) for a, b in zip(widths[:-1], widths[1:]))


@pytest.mark.parametrize("name, spec", list(_cases()))
def test_flop_counter_sees_the_matmul_part_of_a_forward(name, spec):
    model = _model(name, spec)
    flops = available(name).flops(spec, IN, OUT)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(BATCH, IN) * 2 - 1)
    assert counter.get_total_flops() == BATCH * (flops.impl_matmul - _dense_addmm_(name, spec, IN, OUT))


@pytest.mark.parametrize("name, spec", list(_cases(backward=True)))
def test_flop_counter_sees_the_matmul_part_of_forward_and_backward(name, spec):
    """loss = out.sum(), the input without grad: autograd's backward runs one product per
    operand that needs a gradient, the weights always, the layer input but in the first layer
    (native: its "reference" and "fused" contractions, see :data:`_OWN_BACKWARD`)."""
    model = _model(name, spec)
    flops = available(name).flops(spec, IN, OUT)
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(BATCH, IN) * 2 - 1).sum().backward()
    assert counter.get_total_flops() == BATCH * flops.train_matmul


@pytest.mark.parametrize("name, spec", list(_cases()))
def test_impl_prices_every_op_the_forward_executes(name, spec):
    total, matmul = _per_sample(_model(name, spec))
    flops = available(name).flops(spec, IN, OUT)
    assert (total, matmul) == (flops.impl, flops.impl_matmul)


@pytest.mark.parametrize("name, options", [(n, o) for n, opts in DATA_DEPENDENT.items()
                                           for o in opts])
def test_data_dependent_work_is_priced_as_an_upper_bound(name, options):
    spec = ModelSpec(hidden=(5,), options=options)
    total, matmul = _per_sample(_model(name, spec))
    flops = available(name).flops(spec, IN, OUT)
    assert matmul == flops.impl_matmul and 0 < total <= flops.impl


@pytest.mark.parametrize("contraction, impl", [
    # [1000, 300], G = 5, k = 3 (8 bases), silu. sparse: per input 5 + 9 + 4*(2*4 + 2) = 54,
    # 54000; base GEMM 2*1000*300; gather 2*4*1000*300; input blocks of max(2^18 // (8*300),
    # 1024 / 8) = 128 inputs: 8 blocks, each added into the output, 8*300
    ("sparse", 54_000 + 600_000 + 2_400_000 + 8 * 300),
    # fused: per input 5 + 7 + 4*9 + 2*8*5 = 128, 128000; GEMM 2*1000*300*9; the packed weight
    # (300 x 9000 > 2^21 floats) goes in blocks of 2^20 // 2700 = 388 inputs: 3 blocks, 2 adds
    ("fused", 128_000 + 5_400_000 + 2 * 300),
])
def test_wide_native_layers_add_their_input_blocks(contraction, impl):
    """A layer over the blocking thresholds adds its blocks' partial outputs."""
    spec = ModelSpec(hidden=(), grid=5, k=3, options={"contraction": contraction})
    assert available("native").flops(spec, 1000, 300).impl == impl
    assert _per_sample(_model("native", spec, 1000, 300), in_dim=1000)[0] == impl


def test_auto_resolves_as_the_layer_does(monkeypatch):
    native = available("native")
    small, large = ModelSpec(grid=5, k=3), ModelSpec(grid=40, k=3)  # G + k 8 and 43; 8(k + 1) 32
    with_opt = lambda spec, c: spec.model_copy(update={"options": {"contraction": c}})  # noqa: E731
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "1")
    assert native.executed_contraction(small) == "fused"
    assert native.flops(small, IN, OUT) == native.flops(with_opt(small, "fused"), IN, OUT)
    monkeypatch.setenv("KANBENCH_NATIVE_COMPILE", "0")
    assert native.executed_contraction(small) == "dense"
    for spec in (small, large):  # eager: what the built model runs, op for op
        assert _per_sample(_model("native", spec))[0] == native.flops(spec, IN, OUT).impl
    assert native.executed_contraction(large) == "sparse"


def test_inkan_auto_takes_the_direct_contraction_where_inkan_does():
    """inkan's rule: direct where out <= 16 and G + 3 >= 32."""
    inkan = available("inkan")
    for grid, direct in ((29, True), (28, False)):
        spec = ModelSpec(grid=grid, k=3, options={"compile_basis": False})
        model = _model("inkan", spec)
        assert model.layers[0]._use_direct is direct
        forced = spec.model_copy(update={"options": {"compile_basis": False,
                                                     "contraction": "direct" if direct else "dense"}})
        assert inkan.flops(spec, IN, OUT) == inkan.flops(forced, IN, OUT)
        assert _per_sample(model)[0] == inkan.flops(spec, IN, OUT).impl


@pytest.mark.parametrize("base", ["zero", "identity", "silu", "tanh"])
def test_pykan_base_functions(base):
    spec = ModelSpec(hidden=(4,), grid=3, k=2, activation=base)
    assert _per_sample(_model("pykan", spec))[0] == available("pykan").flops(spec, IN, OUT).impl


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_is_priced_as_it_runs(activation):
    for name in ("mlp", "efficient_kan", "native", "pykan"):
        spec = ModelSpec(hidden=(4,), grid=3, k=2, activation=activation)
        assert _per_sample(_model(name, spec))[0] == available(name).flops(spec, IN, OUT).impl


# -- the interface --------------------------------------------------------------------------

@pytest.mark.parametrize("name", adapters.names())
def test_flops_checks_the_spec_and_is_the_interface(name):
    a = available(name)
    flops = a.flops(ModelSpec(hidden=(5,)), IN, OUT)
    # KANbeFair's nominal convention prices MLPs and B-spline KANs only
    assert isinstance(flops, Flops)
    assert (flops.nominal is not None) == (a.family == "mlp" or a.basis == "b-spline")
    assert 0 < flops.impl_matmul <= flops.impl < flops.train
    assert flops.impl_matmul < flops.train_matmul <= flops.train
    with pytest.raises(AdapterError):
        a.flops(ModelSpec(options={"no_such_option": 1}), IN, OUT)
    if "activation" in a.spec_fields:
        with pytest.raises(AdapterError):
            a.flops(ModelSpec(activation="no_such_activation"), IN, OUT)


def test_options_that_change_the_computation_change_the_flops():
    def impl(name, **options):
        return available(name).flops(ModelSpec(hidden=(5,), options=options), IN, OUT).impl

    natives = {c: impl("native", contraction=c) for c in ("dense", "fused", "sparse", "reference")}
    assert len(set(natives.values())) == 4
    inkans = {(m, c): impl("inkan", basis_mode=m, contraction=c)
              for m in ("local", "dense") for c in ("dense", "direct")}
    # the direct contraction always evaluates the basis locally
    assert inkans["local", "direct"] == inkans["dense", "direct"]
    assert len(set(inkans.values())) == 3
    assert impl("inkan", compile_basis=False) == impl("inkan", compile_basis=True)
    assert impl("pykan", affine_trainable=True) == impl("pykan")


def test_an_adapter_without_a_flops_model_still_loads_but_says_so():
    class Plain(Adapter):
        name, family = "plain_without_flops", "mlp"

        def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
            return torch.nn.Linear(in_dim, out_dim)

        def param_count(self, spec, in_dim, out_dim):
            return in_dim * out_dim + out_dim

        def spline_coefficients(self, model):
            return [model.weight]

    with pytest.raises(AdapterError, match="adapter 'plain_without_flops' does not model its FLOPs"):
        Plain().flops(ModelSpec(), IN, OUT)


def test_flops_is_exported_and_torch_free():
    import subprocess
    import sys

    from adapters.base import Flops as interface_flops

    assert adapters.Flops is Flops is interface_flops
    code = ("import sys, adapters.flops as f; f.kanbefair_kan_flops([2, 1], 3, 2, 'silu'); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- KANbeFair's convention -----------------------------------------------------------------

@pytest.mark.parametrize("widths, grid, k, shortcut, params, flops", [
    ([784, 2, 10], 3, 2, "silu", 12716, 181786),   # MNIST KAN, results.csv
    ([784, 2, 10], 3, 3, "zero", 12716, 320776),
])
def test_kanbefair_published_kan_rows(widths, grid, k, shortcut, params, flops):
    assert kanbefair_kan_params(widths, grid, k, shortcut) == params
    assert kanbefair_kan_flops(widths, grid, k, shortcut) == flops


@pytest.mark.parametrize("widths, activation, params, flops", [
    ([2, 100, 100, 1], "gelu", 10501, 23414),      # Special_ellipkinc MLP
    ([9, 32, 2], "gelu", 386, 1180),               # Titanic MLP
    ([9, 32, 2], "relu", 386, 738),
])
def test_kanbefair_published_mlp_rows(widths, activation, params, flops):
    assert kanbefair_mlp_params(widths) == params
    assert kanbefair_mlp_flops(widths, activation) == flops


def test_kanbefair_formulas_by_hand():
    # KAN [2, 1], G = 3, k = 2, silu: per edge 9*2*(3 + 3) + 2*3 - 2.5*2 + 1 = 108 + 6 - 5 + 1
    # = 110, 2 edges 220; shortcut 5*2 (silu per input) + 2*2 (per edge) = 14: 234
    assert kanbefair_kan_flops([2, 1], 3, 2, "silu") == 234
    # k = 3, G = 1, zero: 9*3*(1 + 4.5) + 2 - 7.5 + 1 = 148.5 - 4.5 = 144 per edge, no shortcut
    assert kanbefair_kan_flops([1, 1], 1, 3, "zero") == 144
    # identity: price 0, but the shortcut's 2 per edge stays: 144 + 2
    assert kanbefair_kan_flops([1, 1], 1, 3, "identity") == 146
    # MLP [2, 3, 1] tanh: 2*2*3 + 6*3 = 30, then 2*3*1 + 6*1 = 12 (the output layer too): 42
    assert kanbefair_mlp_flops([2, 3, 1], "tanh") == 42
    # params: KAN [2, 1] G = 3, k = 2: 2*(3 + 2 + 2) + 1 + 2 (shortcut) = 17; MLP [2, 3, 1]: 9 + 4
    assert kanbefair_kan_params([2, 1], 3, 2, "silu") == 17
    assert kanbefair_mlp_params([2, 3, 1]) == 13


def test_activation_prices():
    assert KANBEFAIR_FLOPS["gelu"] == 14 and KANBEFAIR_FLOPS["silu"] == 5
    # every activation we build has a price: KANbeFair's, or ours where it has none
    for name in ACTIVATIONS:
        assert activation_flops(name) == KANBEFAIR_FLOPS.get(name, EXTRA_ACTIVATION_FLOPS.get(name))
    assert set(EXTRA_ACTIVATION_FLOPS) == set(ACTIVATIONS) - set(KANBEFAIR_FLOPS)
    with pytest.raises(ValueError, match="no FLOPs price for activation 'softplus'"):
        activation_flops("softplus")
    with pytest.raises(ValueError):
        kanbefair_mlp_flops([2, 1], "softplus")


# -- the formulas by hand -------------------------------------------------------------------

def test_cox_de_boor_terms():
    # G = 3, k = 2: degree 1 has G + 2k - 1 = 6 bases, degree 2 has 5: 11
    assert cox_de_boor_terms(3, 2) == 11
    assert cox_de_boor_terms(5, 3) == 10 + 9 + 8


def test_the_training_rule_by_hand():
    w = LayerWork(matmul=10, matmul_const=3, gather=4, on_input=5, after=1)  # 23 forward
    f = flops_of([w, w], nominal=7)
    # backward: first layer 10 (weight grad) + 4 (gather's weight grad) + 1 (after) = 15;
    # second 2*10 + 3 (const table: input grad only) + 2*4 + 1 + 5 (its input work) = 37
    assert f == Flops(nominal=7.0, impl=46.0, impl_matmul=26.0, train=46.0 + 15 + 37,
                      train_matmul=26.0 + 10 + 23)
    assert flops_of([w], None).nominal is None


SMALL = dict(in_dim=2, out_dim=1)  # one layer, a = 2, b = 1: the first layer's backward rule


@pytest.mark.parametrize("name, options, expected", [
    # G = 3, k = 2, silu; n = G + k = 5 bases, k + 1 = 3 active; S = cox_de_boor_terms = 11
    # efficient-kan: per input 5 (silu) + 2*7 (degree-0 comparisons) + 7*11 = 96, 2 inputs 192;
    # matmul 2*2*1*(5 + 1) = 24; after 1: impl 217; train + 24 (weight grads) + 1 = 242
    ("efficient_kan", {}, Flops(234.0, 217.0, 24.0, 242.0, 48.0)),
    # pykan: per input 5 + 14 + 8*11 = 107, 214; einsum 2*2*1*5 = 20; after 4*2 (edges)
    # + (2 - 1)*1 (sum) + 5*1 (nodes) = 14: impl 248; train + 20 + 14 = 282
    ("pykan", {}, Flops(234.0, 248.0, 20.0, 282.0, 40.0)),
    # native fused: per input 5 + 7 + 3*(2*3 + 1) + 2*5*(3 + 1) = 73, 146; the contraction
    # of a layer this small runs in loops, not a GEMM: 2*2*1*6 - 1 (a sum of 12 products):
    # 23: 169; + 23 (weight gradient)
    ("native", {"contraction": "fused"}, Flops(234.0, 169.0, 0.0, 192.0, 0.0)),
    # dense: per input 5 + 7 + 2 (powers) + 2*3*5 (identity rows) = 44, 88; constant table
    # 2*2*3*3 = 36; GEMMs 24; after 1: 149, matmul 60; train + 24 + 1 (no grad through the table)
    ("native", {"contraction": "dense"}, Flops(234.0, 149.0, 60.0, 174.0, 84.0)),
    # sparse: per input 5 + 9 + 3*(2*3 + 2) = 38, 76; base GEMM 4; gather 2*3*2*1 = 12; one
    # block's add 1: 93; train + 4 + 12 + 1 = 110
    ("native", {"contraction": "sparse"}, Flops(234.0, 93.0, 4.0, 110.0, 8.0)),
    # reference: per input 5 + 9 + 3*(2*2 + 1) = 29, 58; GEMMs 24; sum 1: 83; + 24 + 1
    ("native", {"contraction": "reference"}, Flops(234.0, 83.0, 24.0, 108.0, 48.0)),
])
def test_kan_formulas_by_hand(name, options, expected):
    spec = ModelSpec(grid=3, k=2, options=options)
    assert adapters.get(name).flops(spec, **SMALL) == expected


@pytest.mark.parametrize("options, expected", [
    # G = 3, k = 3, n = 6; nominal: per edge 9*3*7.5 + 6 - 7.5 + 1 = 202, 404 + 5*2 + 4 = 418
    # local basis: 2 (t0) + 1 (floor) + 1 + 4 (positions) + 4*17 = 76, + 5 (silu) = 81 per
    # input, 162; dense contraction 2*2*1*(6 + 1) = 28: 190; train + 28
    ({"basis_mode": "local", "contraction": "dense"}, Flops(418.0, 190.0, 28.0, 218.0, 56.0)),
    # dense basis: 2 + 6 + 6*17 = 110, + 5 = 115 per input, 230; + 28: 258
    ({"basis_mode": "dense", "contraction": "dense"}, Flops(418.0, 258.0, 28.0, 286.0, 56.0)),
    # direct: 162; base GEMM 4; gathered 4*2*1 multiplies + (4*2 - 1)*1 adds = 15; add 1:
    # 182; train + 4 + 15 + 1 = 202
    ({"contraction": "direct"}, Flops(418.0, 182.0, 4.0, 202.0, 8.0)),
])
def test_inkan_formulas_by_hand(options, expected):
    assert adapters.get("inkan").flops(ModelSpec(grid=3, k=3, options=options), **SMALL) == expected


def test_mlp_formula_by_hand():
    # [2, 3, 1] relu: layer 1 addmm 2*2*3 = 12, bias 3, relu 3; layer 2 addmm 6, bias 1 (no
    # activation): impl 25, matmul 18; backward: layer 1 12 (weight grad) + 6, layer 2 2*6 + 1:
    # train 25 + 31 = 56, its matmuls 18 + 12 + 12 = 42; nominal 2*2*3 + 3 + 2*3*1 + 1 = 22
    f = adapters.get("mlp").flops(ModelSpec(hidden=(3,), activation="relu"), 2, 1)
    assert f == Flops(22.0, 25.0, 18.0, 56.0, 42.0)
