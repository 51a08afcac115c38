"""Configurations, parameter-matched MLPs, model builders and the peak-memory probe shared by
the speed benchmarks (tests/benchmarks) and the interleaved ratios (bench/speed/interleaved.py).

The MLP beside each KAN configuration is matched with the suites' own budget rule
(:func:`bench.budget.solve_width`, as for ``budget: {match: <kan>, tolerance: 0.02}``): the
same depth, one shared hidden width solved so its parameter count is the closest to the
reference KAN's, rejected when that is further than 2% away."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import adapters
from adapters import Adapter, AdapterError, ModelSpec
from bench.budget import solve_width
from bench.errors import BudgetError
from bench.optimizers import build_optimizer, implementation
from bench.records import TrainingSpec
from bench.speed.memory import peak_bytes


DEFAULT_GRID = 5


@dataclass(frozen=True)
class Config:
    widths: tuple[int, ...]
    batch: int
    grid: int = DEFAULT_GRID
    k: int = 3

    @property
    def id(self) -> str:
        return f"[{','.join(map(str, self.widths))}] b{self.batch} G{self.grid}"

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(hidden=self.widths[1:-1], grid=self.grid, k=self.k)

    @property
    def edges(self) -> int:
        return sum(a * b for a, b in zip(self.widths[:-1], self.widths[1:]))


FULL = [
    *(Config((784, 64, 10), 256, g) for g in (5, 10, 20, 50)),
    Config((30, 8, 2), 512),
    Config((2, 5, 1), 1000),
    Config((1000, 1000, 1), 100),
]
QUICK = [Config((784, 64, 10), 256, 5), Config((784, 64, 10), 256, 50), Config((30, 8, 2), 512)]


def quick() -> bool:
    return os.environ.get("KANBENCH_BENCH_QUICK", "") not in ("", "0", "false")


def configs() -> list[Config]:
    return QUICK if quick() else FULL


def rounds() -> tuple[int, int]:
    """(warm-up rounds, timed rounds): warm-up covers torch.compile's first calls."""
    return (2, 5) if quick() else (3, 20)


#: above this many elements in the per-edge tensor of an adapter that materialises its edges
#: (``materialised_terms``: ikan's Taylor and wavelet layers, of which the backward keeps
#: several) a step takes seconds and gigabytes
MATERIALISED_LIMIT = 120_000_000

# pykan evaluates every edge with Python-level bookkeeping; above this many
# edge * sample * basis evaluations one step takes more than a few seconds on a CPU.
PYKAN_WORK_LIMIT = 2_000_000

# the reference KAN for parameter matching: efficient-kan's count, in*out*(G+k+2) per layer
REFERENCE_KAN = "native"


def kan_params(cfg: Config) -> int:
    return adapters.get(REFERENCE_KAN).param_count(cfg.spec, cfg.widths[0], cfg.widths[-1])


# the matched MLP's budget, as a suite's ``budget: {match: <kan>, tolerance: 0.02}``
MLP_TOLERANCE = 0.02


def matched_mlp_spec(cfg: Config) -> ModelSpec:
    """The MLP of the configuration's depth whose hidden layers share one width, solved by the
    suites' budget solver so its parameter count is the closest to the reference KAN's
    (:data:`REFERENCE_KAN`); raises :class:`bench.errors.BudgetError` when that count is more
    than :data:`MLP_TOLERANCE` away."""
    hidden: list[int | None] = [None] * (len(cfg.widths) - 2)
    what = f"speed benchmark {cfg.id}, MLP matched to '{REFERENCE_KAN}'"
    return solve_width(adapters.get("mlp"), ModelSpec(), hidden, cfg.widths[0], cfg.widths[-1],
                       kan_params(cfg), MLP_TOLERANCE, what).spec


@dataclass
class Bench:
    """One implementation on one configuration, ready to time."""

    impl: str
    adapter: Adapter
    cfg: Config
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    opt: torch.optim.Optimizer
    info: dict = field(default_factory=dict)

    def forward(self):
        with torch.no_grad():
            return self.model(self.x)

    def loss(self) -> torch.Tensor:
        return F.cross_entropy(self.model(self.x), self.y)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss().backward()
        self.opt.step()

    def provenance(self) -> dict[str, str]:
        """The adapter's provenance of this model (read it after the warm-up rounds: e.g.
        whether its kernel compiled)."""
        built = self.model.inner if isinstance(self.model, _TwoLogits) else self.model
        return {f"provenance_{k}": v for k, v in self.adapter.provenance(built).items()}


def implementations() -> list[str]:
    return adapters.names()


def skip_reason(impl: str, cfg: Config) -> str | None:
    try:
        adapter = adapters.get(impl)
    except AdapterError as exc:
        return str(exc)
    reason = adapter.unavailable_reason()
    if reason:
        return reason
    if impl == "pykan" and cfg.edges * cfg.batch * (cfg.grid + cfg.k) > PYKAN_WORK_LIMIT:
        return f"pykan: a train step on {cfg.id} takes more than a few seconds"
    if adapter.hyper is not None:
        if cfg.grid != DEFAULT_GRID:
            return f"{impl} has no grid: its model here is the one of the G5 configuration"
        try:
            spec = matched_family_spec(impl, cfg)
        except BudgetError as exc:
            return str(exc)
        terms = getattr(adapter, "materialised_terms", lambda spec: None)(spec)
        widths = spec.widths(cfg.widths[0], cfg.widths[-1])
        edges = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        if terms is not None and edges * cfg.batch * terms > MATERIALISED_LIMIT:
            return (f"{impl}: its layers hold a (batch, out, in{', terms' if terms > 1 else ''})"
                    f" tensor, {edges * cfg.batch * terms * 4 / 2**30:.1f} GiB per "
                    f"intermediate on {cfg.id}")
    return None


#: a KAN family's count moves in coarse steps ((in + out) x coefficients per edge per unit of
#: width): its width is matched within this
FAMILY_TOLERANCE = 0.10


def matched_family_spec(impl: str, cfg: Config) -> ModelSpec:
    """A KAN family without a grid (its own hyper-parameters, at their defaults) at the
    configuration's depth, its hidden layers sharing one width solved to the reference KAN's
    parameter count, as for the MLP: so its time compares with the matched MLP's at equal
    parameters. BudgetError when no width comes within :data:`FAMILY_TOLERANCE`."""
    adapter = adapters.get(impl)
    hidden: list[int | None] = [None] * (len(cfg.widths) - 2)
    template = ModelSpec(options=adapter.resolve_options({}))
    what = f"speed benchmark {cfg.id}, {impl} matched to '{REFERENCE_KAN}'"
    return solve_width(adapter, template, hidden, cfg.widths[0], cfg.widths[-1],
                       kan_params(cfg), FAMILY_TOLERANCE, what).spec


def bench_spec(impl: str, cfg: Config) -> ModelSpec:
    """What ``impl`` builds on ``cfg``: the configuration's B-spline KAN, or for the MLP and the
    families without a grid, a model of the reference KAN's parameter count."""
    adapter = adapters.get(impl)
    if adapter.family == "mlp":
        return matched_mlp_spec(cfg)
    if adapter.hyper is not None:
        return matched_family_spec(impl, cfg)
    return cfg.spec


def make_bench(impl: str, cfg: Config, device: str = "cpu", seed: int = 0) -> Bench:
    adapter = adapters.get(impl)
    spec = bench_spec(impl, cfg)
    in_dim, out_dim = cfg.widths[0], cfg.widths[-1]
    model = adapter.build(spec, in_dim, out_dim, seed=seed, device=device)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(cfg.batch, in_dim, generator=g) * 2 - 1).to(device)
    y = torch.randint(0, max(out_dim, 2), (cfg.batch,), generator=g).clamp_(max=out_dim - 1).to(device)
    if out_dim == 1:  # cross-entropy needs two classes: score against zero
        model = _TwoLogits(model)
    opt = build_optimizer(model.parameters(), TrainingSpec(optimizer="adam", lr=1e-3))
    info = {
        "impl": impl,
        "family": adapter.family,
        "config": cfg.id,
        "params": adapter.count_params(model),
        "kan_params": kan_params(cfg),
        "arch": spec.describe(adapter.family),
        "optimizer_impl_used": implementation(opt),
    }
    return Bench(impl, adapter, cfg, model, x, y, opt, info)


class _TwoLogits(torch.nn.Module):
    """``[0, f(x)]`` as logits, so single-output models train with the same loss."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return torch.cat([torch.zeros_like(out), out], dim=1)


def peak_step_bytes(bench: Bench) -> int:
    """Transient peak of tensor memory during one train step (method: bench/speed/memory.py;
    CUDA ``torch.cuda.max_memory_allocated``, CPU the allocations ``torch.profiler`` records).
    Run after a warm-up step so that optimiser state already exists."""
    bench.step()
    return peak_bytes(bench.step, bench.x.device)
