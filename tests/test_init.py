"""Named initialisations (bench/init.py) over every adapter: which tensors, which distribution.

The expected tensors, roles and fans below are written out from the README table
("### Initialisations"), independently of what the adapters declare, so a wrong fan in an
adapter fails both the declaration check and the statistics check.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

import adapters
from adapters import Adapter, AdapterError, ModelSpec
from adapters.base import INIT_DRAWN_ROLES, INIT_FILLED_ROLES, InitTarget
from bench.init import INIT_NAMES, apply_init, check_init, init_seed, init_scale, parse_init
from helpers import available

ADAPTERS = ["mlp", "native", "efficient_kan", "pykan", "inkan", "fastkan", "chebyshev_kan",
            "fourier_kan", "jacobi_kan", "taylor_kan", "wavelet_kan", "rational_kan"]
#: coefficients per edge of the families at their default options, and whether a bias
FAMILY_BASES = {"chebyshev_kan": (8, False), "fourier_kan": (10, True), "jacobi_kan": (6, True),
                "taylor_kan": (3, True)}
FAMILY_COEFFICIENTS = {"chebyshev_kan": "cheby_coeffs", "fourier_kan": "fourier_coeffs",
                       "jacobi_kan": "jacobi_coeffs", "taylor_kan": "taylor_coeffs"}
INITS = ["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "normal(0.1)"]

# in != hidden != out, so a swapped fan_in/fan_out changes every kaiming std (by sqrt(2) and
# sqrt(1.5)); every drawn tensor has at least 2048 elements.
IN, HIDDEN, OUT = 32, 64, 96
G, K = 5, 3
SPEC = ModelSpec(hidden=(HIDDEN,), grid=G, k=K)
WIDTHS = [IN, HIDDEN, OUT]
#: relative tolerance on a drawn standard deviation: the sampling error is under 1.6 % at
#: 2048 elements; a wrong gain (sqrt(2)) or a swapped fan (>= 22 %) is far outside
STD_TOL = 0.05

DRAWN = {"weight", "base_weight", "spline_coefficients"}
FILLED = {"spline_scaler": 1.0, "node_scale": 1.0, "bias": 0.0}


def expected_targets(name: str) -> list[tuple[str, slice | None, str, int | None, int | None]]:
    """(parameter name, column block or None, role, fan_in, fan_out), from the README table."""
    out = []
    for l, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        nb = G + K
        if name == "mlp":
            out += [(f"{2 * l}.weight", None, "weight", a, b), (f"{2 * l}.bias", None, "bias", None, None)]
        elif name in ("native", "efficient_kan"):
            out += [
                (f"layers.{l}.base_weight", None, "base_weight", a, b),
                (f"layers.{l}.spline_weight", None, "spline_coefficients", a * nb, b * nb),
                (f"layers.{l}.spline_scaler", None, "spline_scaler", None, None),
            ]
        elif name == "pykan":
            out += [
                (f"kan.act_fun.{l}.scale_base", None, "base_weight", a, b),
                (f"kan.act_fun.{l}.coef", None, "spline_coefficients", a * nb, b * nb),
                (f"kan.act_fun.{l}.scale_sp", None, "spline_scaler", None, None),
                (f"kan.node_scale_{l}", None, "node_scale", None, None),
                (f"kan.subnode_scale_{l}", None, "node_scale", None, None),
                (f"kan.node_bias_{l}", None, "bias", None, None),
                (f"kan.subnode_bias_{l}", None, "bias", None, None),
            ]
        elif name == "inkan":
            n = a * (G + 3)
            out += [
                (f"layers.{l}.weight", slice(0, n), "spline_coefficients", a * (G + 3), b * (G + 3)),
                (f"layers.{l}.weight", slice(n, n + a), "base_weight", a, b),
            ]
        elif name == "fastkan":  # 8 centres; the layer norm keeps its start
            out += [(f"{l}.spline_weight", None, "spline_coefficients", a * 8, b * 8),
                    (f"{l}.base.weight", None, "base_weight", a, b),
                    (f"{l}.base.bias", None, "bias", None, None)]
        elif name in FAMILY_BASES:
            k, bias = FAMILY_BASES[name]
            out += [(f"layers.{l}.base_weight", None, "base_weight", a, b),
                    (f"layers.{l}.{FAMILY_COEFFICIENTS[name]}", None, "spline_coefficients",
                     a * k, b * k)]
            if bias:
                out.append((f"layers.{l}.bias", None, "bias", None, None))
        elif name == "rational_kan":  # the rational functions keep their fitted start
            out += [(f"{l}.linear.weight", None, "base_weight", a, b),
                    (f"{l}.linear.bias", None, "bias", None, None)]
        elif name == "wavelet_kan":
            out += [(f"layers.{l}.base_weight", None, "base_weight", a, b),
                    (f"layers.{l}.wavelet_weights", None, "spline_coefficients", a, b),
                    (f"layers.{l}.scale", None, "spline_scaler", None, None),
                    (f"layers.{l}.translation", None, "bias", None, None),
                    (f"layers.{l}.bias", None, "bias", None, None)]
    return out


def formula(init: str, fan_in: int, fan_out: int) -> tuple[str, float]:
    """("normal", std) or ("uniform", bound): torch.nn.init's defaults, kaiming gain sqrt(2)."""
    return {
        "kaiming_normal": ("normal", math.sqrt(2.0 / fan_in)),
        "kaiming_uniform": ("uniform", math.sqrt(6.0 / fan_in)),
        "xavier_normal": ("normal", math.sqrt(2.0 / (fan_in + fan_out))),
        "xavier_uniform": ("uniform", math.sqrt(6.0 / (fan_in + fan_out))),
        "normal(0.1)": ("normal", 0.1),
    }[init]


def block(t: torch.Tensor, cols: slice | None) -> torch.Tensor:
    return t if cols is None else t[:, cols]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def check_distribution(values: torch.Tensor, kind: str, scale: float, what: str) -> None:
    v = values.detach().double().flatten()
    n = v.numel()
    assert n >= 2048, what
    std = scale if kind == "normal" else scale / math.sqrt(3.0)
    assert abs(v.mean().item()) < 4 * std / math.sqrt(n), f"{what}: mean {v.mean().item()}"
    assert v.std().item() == pytest.approx(std, rel=STD_TOL), f"{what}: std"
    z = (v - v.mean()) / v.std()
    excess_kurtosis = z.pow(4).mean().item() - 3.0
    if kind == "normal":
        assert abs(excess_kurtosis) < 0.5, f"{what}: not normal (kurtosis {excess_kurtosis})"
    else:
        assert abs(excess_kurtosis + 1.2) < 0.3, f"{what}: not uniform (kurtosis {excess_kurtosis})"
        assert v.abs().max().item() <= scale * (1 + 1e-6), f"{what}: beyond the bound"
        assert v.abs().max().item() >= 0.99 * scale, f"{what}: bound not reached"


# -- parse_init -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("default", ("default", None)),
        ("kaiming_normal", ("kaiming_normal", None)),
        ("kaiming_uniform", ("kaiming_uniform", None)),
        ("xavier_normal", ("xavier_normal", None)),
        ("xavier_uniform", ("xavier_uniform", None)),
        ("normal(0.1)", ("normal", 0.1)),
        ("normal(1e-2)", ("normal", 0.01)),
        ("normal( 2 )", ("normal", 2.0)),
    ],
)
def test_parse_init_accepts_the_six_forms(text, parsed):
    assert parse_init(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["normal(-1)", "normal()", "he", "normal(0)", "normal(nan)", "normal(inf)", "normal",
     "normal(0.1", "normal(0.1)x", "normal(1_0)", "xavier", "", "Kaiming_Normal", "uniform(0.1)", None, 0.1],
)
def test_parse_init_rejects_anything_else_naming_the_forms(text):
    with pytest.raises(ValueError) as info:
        parse_init(text)
    message = str(info.value)
    assert repr(text) in message
    for form in ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "normal(<std>)"):
        assert form in message


def test_init_names():
    assert set(INIT_NAMES) == {"default", "kaiming_normal", "kaiming_uniform", "xavier_normal",
                               "xavier_uniform", "normal"}


# -- the formulas are torch.nn.init's -------------------------------------------------------


@pytest.mark.parametrize("init", INITS)
def test_scales_are_torch_nn_init_defaults(init):
    fan_in, fan_out = 300, 700
    w = torch.empty(fan_out, fan_in, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    name, std = parse_init(init)
    if name == "normal":
        nn.init.normal_(w, std=std, generator=g)
    else:
        getattr(nn.init, name + "_")(w, generator=g)
    kind, scale = init_scale(name, std, fan_in, fan_out)
    assert (kind, scale) == pytest.approx(formula(init, fan_in, fan_out))
    check_distribution(w, kind, scale, f"torch.nn.init {init}")


# -- every adapter --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_declares_the_documented_targets(name):
    a = available(name)
    model = a.build(SPEC, IN, OUT, seed=0)
    params = dict(model.named_parameters())
    declared = []
    for t in a.init_targets(model):
        assert isinstance(t, InitTarget)
        p = params[t.name]
        assert t.tensor.untyped_storage().data_ptr() == p.untyped_storage().data_ptr()
        # which block of the parameter: its column offset within the (out, n) parameter
        if t.tensor.shape == p.shape:
            cols = None
        else:
            start = t.tensor.storage_offset() - p.storage_offset()
            cols = slice(start, start + t.tensor.shape[1])
        declared.append((t.name, cols, t.role, t.fan_in, t.fan_out))
    assert sorted(declared, key=repr) == sorted(expected_targets(name), key=repr)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("name", ADAPTERS)
def test_init_touches_exactly_the_documented_tensors_with_the_documented_statistics(name, init):
    a = available(name)
    model = a.build(SPEC, IN, OUT, seed=0)
    before = snapshot(model)
    apply_init(a, model, init, seed=3)
    after = snapshot(model)
    assert before.keys() == after.keys()
    by_param: dict[str, list] = {}
    for pname, cols, role, fan_in, fan_out in expected_targets(name):
        by_param.setdefault(pname, []).append((cols, role, fan_in, fan_out))
    for pname in before:
        entries = by_param.get(pname)
        if entries is None:
            assert torch.equal(before[pname], after[pname]), f"{name}: {pname} changed"
            continue
        covered = torch.zeros_like(after[pname], dtype=torch.bool)
        for cols, role, fan_in, fan_out in entries:
            new, old = block(after[pname], cols), block(before[pname], cols)
            block(covered, cols).fill_(True)
            what = f"{name} {init} {pname}[{cols}] ({role})"
            if role in DRAWN:
                assert (new != old).double().mean() > 0.99, f"{what}: not redrawn"
                check_distribution(new, *formula(init, fan_in, fan_out), what)
            else:
                assert torch.all(new == FILLED[role]), what
        assert covered.all(), f"{name}: part of {pname} neither initialised nor declared"
    # the model still computes
    y = model(torch.rand(7, IN) * 2 - 1)
    assert y.shape == (7, OUT) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ADAPTERS)
def test_default_changes_nothing(name):
    a = available(name)
    model = a.build(SPEC, IN, OUT, seed=0)
    before = snapshot(model)
    apply_init(a, model, "default", seed=3)
    after = snapshot(model)
    assert all(torch.equal(before[n], after[n]) for n in before)


@pytest.mark.parametrize("name", ADAPTERS)
def test_values_depend_on_the_init_seed_only_and_leave_global_rngs_alone(name):
    a = available(name)
    init = "kaiming_uniform"
    m1 = a.build(SPEC, IN, OUT, seed=0)
    m2 = a.build(SPEC, IN, OUT, seed=0)
    m3 = a.build(SPEC, IN, OUT, seed=1)  # another build seed, same init seed
    m4 = a.build(SPEC, IN, OUT, seed=0)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    apply_init(a, m1, init, seed=7)
    apply_init(a, m2, init, seed=7)
    apply_init(a, m3, init, seed=7)
    apply_init(a, m4, init, seed=8)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    s1, s2, s3, s4 = map(snapshot, (m1, m2, m3, m4))
    drawn = {n for n, _, role, _, _ in expected_targets(name) if role in DRAWN}
    assert all(torch.equal(s1[n], s2[n]) for n in s1)
    assert all(torch.equal(s1[n], s3[n]) for n in drawn)
    assert all(not torch.equal(s1[n], s4[n]) for n in drawn)


def test_roles_are_the_documented_ones():
    assert INIT_DRAWN_ROLES == DRAWN and INIT_FILLED_ROLES == set(FILLED)


@pytest.mark.parametrize("name", ADAPTERS)
def test_values_are_the_documented_stream(name):
    """Targets in declaration order, each drawn in float64 from one CPU generator seeded with
    init_seed(seed): the values can be reproduced outside kanbench."""
    a = available(name)
    model = a.build(SPEC, IN, OUT, seed=0)
    apply_init(a, model, "kaiming_uniform", seed=11)
    g = torch.Generator().manual_seed(init_seed(11))
    drawn = [t for t in a.init_targets(model) if t.role in DRAWN]
    assert drawn
    for t in drawn:
        bound = math.sqrt(6.0 / t.fan_in)
        expect = torch.rand(tuple(t.tensor.shape), generator=g, dtype=torch.float64) * 2 * bound - bound
        assert torch.equal(t.tensor, expect.to(t.tensor.dtype)), t.name


def test_init_seed_is_derived_not_the_run_seed():
    assert init_seed(0) == init_seed(0)
    assert len({init_seed(s) for s in range(100)} | set(range(100))) == 200
    assert all(0 <= init_seed(s) < 2**63 for s in (0, 1, 2**40, -5))


@pytest.mark.parametrize("name", ADAPTERS)
def test_values_are_drawn_in_float64_then_cast(name):
    a = available(name)
    m32 = a.build(SPEC, IN, OUT, seed=0, dtype=torch.float32)
    m64 = a.build(SPEC, IN, OUT, seed=0, dtype=torch.float64)
    apply_init(a, m32, "xavier_normal", seed=2)
    apply_init(a, m64, "xavier_normal", seed=2)
    s32, s64 = snapshot(m32), snapshot(m64)
    for n, _, role, _, _ in expected_targets(name):
        assert s32[n].dtype == torch.float32 and s64[n].dtype == torch.float64
        assert torch.equal(s32[n], s64[n].float()), n


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ADAPTERS)
def test_cuda_gets_the_cpu_values(name):
    a = available(name)
    cpu = a.build(SPEC, IN, OUT, seed=0)
    gpu = a.build(SPEC, IN, OUT, seed=0, device="cuda")
    apply_init(a, cpu, "kaiming_normal", seed=4)
    apply_init(a, gpu, "kaiming_normal", seed=4)
    s_cpu, s_gpu = snapshot(cpu), snapshot(gpu)
    for n in s_cpu:
        assert s_gpu[n].is_cuda
        assert torch.equal(s_cpu[n], s_gpu[n].cpu()), n


# -- adapters without targets, and bad targets ----------------------------------------------


class _NoInit(Adapter):
    name, family = "no_init_kan", "kan"

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        return nn.Linear(in_dim, out_dim).to(device, dtype)

    def param_count(self, spec, in_dim, out_dim):
        return in_dim * out_dim + out_dim

    def spline_coefficients(self, model):
        return [model.weight]


class _ForeignTarget(_NoInit):
    name = "foreign_target_kan"

    def init_targets(self, model):
        return [InitTarget("weight", "weight", torch.zeros(3, 4), fan_in=4, fan_out=3)]


def test_adapter_without_targets_cannot_be_initialised():
    a = _NoInit()
    model = a.build(SPEC, 4, 3, seed=0)
    before = snapshot(model)
    apply_init(a, model, "default", seed=0)  # nothing to do, no error
    check_init(a, "default")
    for init in INITS:
        with pytest.raises(AdapterError, match="no_init_kan"):
            apply_init(a, model, init, seed=0)
        with pytest.raises(AdapterError, match="no_init_kan"):
            check_init(a, init)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("name", ADAPTERS)
def test_check_init_accepts_every_builtin_adapter(name):
    a = adapters.get(name)
    for init in ["default", *INITS]:
        check_init(a, init)
    with pytest.raises(ValueError, match="'he'"):
        check_init(a, "he")


def test_a_target_outside_the_model_is_an_error():
    a = _ForeignTarget()
    model = a.build(SPEC, 4, 3, seed=0)
    with pytest.raises(AdapterError, match="foreign_target_kan"):
        apply_init(a, model, "xavier_uniform", seed=0)


def test_init_target_validates_role_and_fans():
    t = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="role"):
        InitTarget("kernel", "w", t, fan_in=3, fan_out=2)
    with pytest.raises(ValueError, match="fan"):
        InitTarget("weight", "w", t)
    with pytest.raises(ValueError, match="fan"):
        InitTarget("spline_coefficients", "w", t, fan_in=0, fan_out=2)
    InitTarget("bias", "b", t)
