"""Configurations, parameter-matched MLPs, model builders and the peak-memory probe shared by
the speed benchmarks (tests/benchmarks) and the interleaved ratios (bench/interleaved.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import adapters
from adapters.base import Adapter, AdapterError, ModelSpec
from bench.memory import peak_bytes


@dataclass(frozen=True)
class Config:
    widths: tuple[int, ...]
    batch: int
    grid: int = 5
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


# pykan evaluates every edge with Python-level bookkeeping; above this many
# edge * sample * basis evaluations one step takes more than a few seconds on a CPU.
PYKAN_WORK_LIMIT = 2_000_000

# the reference KAN for parameter matching: efficient-kan's count, in*out*(G+k+2) per layer
REFERENCE_KAN = "native"


def kan_params(cfg: Config) -> int:
    return adapters.get(REFERENCE_KAN).param_count(cfg.spec, cfg.widths[0], cfg.widths[-1])


def matched_mlp_spec(cfg: Config) -> ModelSpec:
    """An MLP with the KAN's depth whose hidden widths are scaled by one factor so its parameter
    count is within 2% of the KAN's (bisection on the factor)."""
    mlp = adapters.get("mlp")
    target = kan_params(cfg)
    hidden = cfg.widths[1:-1]
    if not hidden:
        raise ValueError(f"{cfg.id}: an MLP without hidden layers has a fixed parameter count")

    def spec(scale: float) -> ModelSpec:
        return ModelSpec(hidden=tuple(max(1, round(h * scale)) for h in hidden))

    lo, hi = 1e-3, 1.0
    while mlp.param_count(spec(hi), cfg.widths[0], cfg.widths[-1]) < target:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if mlp.param_count(spec(mid), cfg.widths[0], cfg.widths[-1]) < target:
            lo = mid
        else:
            hi = mid
    best = min(
        (spec(lo), spec(hi)),
        key=lambda s: abs(mlp.param_count(s, cfg.widths[0], cfg.widths[-1]) - target),
    )
    got = mlp.param_count(best, cfg.widths[0], cfg.widths[-1])
    if abs(got - target) > 0.02 * target:
        raise ValueError(f"{cfg.id}: no MLP within 2% of {target} parameters (best {got})")
    return best


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
    return None


def make_bench(impl: str, cfg: Config, device: str = "cpu", seed: int = 0) -> Bench:
    adapter = adapters.get(impl)
    spec = matched_mlp_spec(cfg) if adapter.family == "mlp" else cfg.spec
    in_dim, out_dim = cfg.widths[0], cfg.widths[-1]
    model = adapter.build(spec, in_dim, out_dim, seed=seed, device=device)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(cfg.batch, in_dim, generator=g) * 2 - 1).to(device)
    y = torch.randint(0, max(out_dim, 2), (cfg.batch,), generator=g).clamp_(max=out_dim - 1).to(device)
    if out_dim == 1:  # cross-entropy needs two classes: score against zero
        model = _TwoLogits(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    info = {
        "impl": impl,
        "family": adapter.family,
        "config": cfg.id,
        "params": adapter.count_params(model),
        "kan_params": kan_params(cfg),
        "arch": spec.describe(adapter.family),
        **{f"provenance_{k}": v for k, v in adapter.provenance().items()},
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
    """Transient peak of tensor memory during one train step (method: bench/memory.py; CUDA
    ``torch.cuda.max_memory_allocated``, CPU the allocations ``torch.profiler`` records). Run
    after a warm-up step so that optimiser state already exists."""
    bench.step()
    return peak_bytes(bench.step, bench.x.device)
