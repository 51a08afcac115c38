"""Forward, backward and train-step timings of every adapter, each KAN configuration beside its
parameter-matched MLP (one pytest-benchmark group per kind and configuration)."""

from __future__ import annotations

import pytest

from bench.speed.harness import configs, implementations, make_bench, peak_step_bytes, rounds, skip_reason

CONFIGS = configs()
IMPLS = implementations()


def _bench_or_skip(impl, cfg):
    reason = skip_reason(impl, cfg)
    if reason:
        pytest.skip(reason)
    return make_bench(impl, cfg)


def _run(benchmark, bench, kind, target, setup=None):
    warm, timed = rounds()
    benchmark.group = f"{kind} {bench.cfg.id}"
    benchmark.extra_info.update(bench.info, kind=kind)
    if setup is None:
        benchmark.pedantic(target, rounds=timed, iterations=1, warmup_rounds=warm)
    else:
        for _ in range(warm):
            target(*setup()[0])
        benchmark.pedantic(target, setup=setup, rounds=timed, iterations=1)
    benchmark.extra_info.update(bench.provenance())


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
@pytest.mark.parametrize("impl", IMPLS)
def test_forward(benchmark, impl, cfg):
    bench = _bench_or_skip(impl, cfg)
    _run(benchmark, bench, "forward", bench.forward)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
@pytest.mark.parametrize("impl", IMPLS)
def test_backward(benchmark, impl, cfg):
    bench = _bench_or_skip(impl, cfg)

    def setup():
        bench.opt.zero_grad(set_to_none=True)
        return (bench.loss(),), {}

    _run(benchmark, bench, "backward", lambda loss: loss.backward(), setup=setup)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
@pytest.mark.parametrize("impl", IMPLS)
def test_train_step(benchmark, impl, cfg):
    bench = _bench_or_skip(impl, cfg)
    _run(benchmark, bench, "train_step", bench.step)
    benchmark.extra_info["peak_step_bytes"] = peak_step_bytes(bench)
