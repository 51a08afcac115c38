"""Interleaved speed ratios: every implementation timed in turn within each round.

pytest-benchmark (tests/benchmarks) times all rounds of one implementation, then all of the
next: on a shared machine a disturbance lasting a few seconds lands on one implementation and
moves its ratios, and the slower drift of the machine's speed separates implementations timed
a minute apart. Here each round times every implementation once, in an order shuffled from
round to round (none is always first, or always after the same one), and the ratios are taken
per round (paired) and summarised by their median, so a disturbed round moves one paired ratio
and not the summary. Measured on this project's 2-core machine: one of three full pytest-benchmark
runs read native's [784, 64, 10] train step at G = 10, 20 and 50 at 1.59x, 1.58x and 1.53x the
MLP, while the other two and an interleaved run of the same code read 1.31-1.43x.

Run: ``python -m bench speed-interleaved [--config 784,64,10:G50] [--impl native --impl mlp]``.
The models, inputs and matched MLPs are the benchmarks' own (bench/speed/harness.py).
"""

from __future__ import annotations

import random
import re
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

import adapters
from adapters import AdapterError
from bench.errors import KanbenchError
from bench.speed.harness import FULL, Bench, Config, implementations, make_bench, skip_reason
from bench.speed.report import BASELINE, NATIVE, _x

KINDS = ("train_step", "forward", "backward")

#: ``(setup, target)``: ``target(*setup())`` is timed, ``setup`` (or nothing) runs untimed first
Timed = tuple[Callable[[], tuple] | None, Callable]


class InterleavedError(KanbenchError):
    """Bad configuration or implementation names for the interleaved ratios."""


@dataclass
class Row:
    impl: str
    family: str
    median: float  # seconds, median over the rounds
    vs_mlp: float | None  # median over the rounds of time / MLP time in the same round


@dataclass
class Group:
    kind: str
    config: str
    rows: list[Row]
    best_other: str | None
    native_vs_best: float | None  # median of the per-round native / best-other-KAN ratios
    native_vs_best_quartiles: tuple[float, float] | None


def select_configs(selectors: list[str] | None) -> list[Config]:
    """The benchmark configurations matching ``WIDTHS[:bBATCH][:GGRID]`` selectors (e.g.
    ``784,64,10:G50``, ``1000,1000,1``); a batch or grid not in the benchmark list makes a new
    configuration of those widths. None: every benchmark configuration."""
    if not selectors:
        return list(FULL)
    chosen: list[Config] = []
    for text in selectors:
        parts = text.split(":")
        try:
            widths = tuple(int(w) for w in parts[0].split(","))
            opts = {p[0]: int(p[1:]) for p in parts[1:] if re.fullmatch(r"[bG]\d+", p)}
        except ValueError:
            widths, opts = (), {}
        if not widths or len(opts) != len(parts) - 1:
            raise InterleavedError(f"config {text!r}: expected WIDTHS[:bBATCH][:GGRID], e.g. 784,64,10:G50")
        known = [c for c in FULL if c.widths == widths]
        if not known:
            raise InterleavedError(f"config {text!r}: no benchmark configuration has widths {list(widths)}; "
                                   f"known: {sorted({c.widths for c in FULL})}")
        matches = [c for c in known if opts.get("G", c.grid) == c.grid]
        if not matches:
            matches = [Config(widths, known[0].batch, opts["G"], known[0].k)]
        if "b" in opts:
            matches = [Config(c.widths, opts["b"], c.grid, c.k) for c in matches]
        chosen.extend(c for c in matches if c not in chosen)
    return chosen


def _timed(bench: Bench, kind: str) -> Timed:
    if kind == "train_step":
        setup, target = None, bench.step
    elif kind == "forward":
        setup, target = None, bench.forward
    elif kind == "backward":
        def setup():
            bench.opt.zero_grad(set_to_none=True)
            return (bench.loss(),)

        def target(loss):
            loss.backward()
    else:
        raise InterleavedError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if not bench.x.is_cuda:
        return setup, target

    # CUDA runs asynchronously: wait for the queued work on both sides of the timed call
    def synced_setup():
        args = setup() if setup is not None else ()
        torch.cuda.synchronize(bench.x.device)
        return args

    def synced_target(*args):
        target(*args)
        torch.cuda.synchronize(bench.x.device)

    return synced_setup, synced_target


def measure(fns: dict[str, Timed], rounds: int, warmup: int,
            clock: Callable[[], float] = time.perf_counter, seed: int = 0) -> dict[str, list[float]]:
    """Each implementation's time in each of ``rounds`` rounds (after ``warmup`` untimed ones),
    each round in its own order, shuffled (seeded): over the rounds every implementation runs
    first, and right after each other one, about equally often. What ran just before a step
    (its caches, its allocations) changes the step's time; a rotation of one fixed order would
    keep each implementation after the same predecessor in every round."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    order = random.Random(seed)
    for r in range(warmup + rounds):
        for name in order.sample(names, len(names)):
            setup, target = fns[name]
            args = setup() if setup is not None else ()
            start = clock()
            target(*args)
            elapsed = clock() - start
            if r >= warmup:
                times[name].append(elapsed)
    return times


def _paired(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b) if y > 0]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(kind: str, config: str, times: dict[str, list[float]], families: dict[str, str]) -> Group:
    """Medians and paired ratios of one (kind, config)'s timings; rows fastest first."""
    base = times.get(BASELINE)
    rows = [
        Row(impl, families[impl], statistics.median(t), _median(_paired(t, base)) if base else None)
        for impl, t in times.items()
    ]
    rows.sort(key=lambda r: r.median)
    others = [r for r in rows if r.family == "kan" and r.impl != NATIVE]
    best = others[0].impl if others else None
    vs_best = quartiles = None
    paired = _paired(times[NATIVE], times[best]) if best and NATIVE in times else []
    if paired:
        vs_best = statistics.median(paired)
        q = statistics.quantiles(paired, n=4, method="inclusive") if len(paired) > 1 else [paired[0]] * 3
        quartiles = (q[0], q[2])
    return Group(kind, config, rows, best, vs_best, quartiles)


def speed_interleaved(configs: list[Config], impls: list[str] | None = None, kinds=("train_step",),
                      rounds: int = 30, warmup: int = 3, device: str = "cpu",
                      progress: Callable[[str], None] | None = None) -> list[Group]:
    """Interleaved timings of ``impls`` (default: every available adapter) on ``configs``."""
    if impls is None:
        impls = implementations()
    for impl in impls:
        try:
            adapters.get(impl)
        except AdapterError as exc:
            raise InterleavedError(f"implementation {impl!r}: {exc}") from None
    groups = []
    for cfg in configs:
        benches: dict[str, Bench] = {}
        for impl in impls:
            reason = skip_reason(impl, cfg)
            if reason:  # not installed, or too slow on this configuration (pykan)
                if progress:
                    progress(f"{cfg.id}: {impl} skipped ({reason})")
                continue
            benches[impl] = make_bench(impl, cfg, device=device)
        families = {impl: b.adapter.family for impl, b in benches.items()}
        for kind in kinds:
            fns = {impl: _timed(b, kind) for impl, b in benches.items()}
            times = measure(fns, rounds, warmup)
            groups.append(summarise(kind, cfg.id, times, families))
            if progress:
                progress(f"{kind} {cfg.id}: done")
    return groups


def render_markdown(groups: list[Group], rounds: int, threads: int) -> str:
    lines = [
        "# Interleaved speed ratios",
        "",
        f"{rounds} rounds per configuration, {threads} threads, torch {torch.__version__}. Each round "
        "times every implementation once (shuffled order); **vs MLP** and **native vs it** are "
        "medians of the paired per-round ratios, with their interquartile range.",
        "",
        "## Summary",
        "| kind | config | native vs MLP | best other KAN | native vs it (paired) | IQR |",
        "|---|---|---|---|---|---|",
    ]
    for g in groups:
        native = next((r for r in g.rows if r.impl == NATIVE), None)
        iqr = "-" if g.native_vs_best_quartiles is None else "{:.2f}-{:.2f}".format(*g.native_vs_best_quartiles)
        lines.append(f"| {g.kind} | {g.config} | {_x(native.vs_mlp if native else None)} | "
                     f"{g.best_other or '-'} | {_x(g.native_vs_best)} | {iqr} |")
    for g in groups:
        lines += ["", f"## {g.kind} {g.config}", "| implementation | median ms | vs MLP (paired) |", "|---|---|---|"]
        lines += [f"| {r.impl} | {r.median * 1e3:.3f} | {_x(r.vs_mlp)} |" for r in g.rows]
    return "\n".join(lines) + "\n"
