"""bench.speed.interleaved: speed ratios from rounds that time every implementation in turn."""

from __future__ import annotations

import pytest

from bench.speed.harness import FULL, Config
from bench.speed.interleaved import (
    InterleavedError,
    measure,
    render_markdown,
    select_configs,
    speed_interleaved,
    summarise,
)


class _Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_measure_shuffles_the_order_and_times_each_call():
    clock = _Clock()
    calls = []
    fns = {}
    names = ("mlp", "native", "inkan", "efficient_kan")
    for name, t in zip(names, (1.0, 2.0, 3.0, 4.0)):
        def fn(name=name, t=t):
            calls.append(name)
            clock.now += t
        fns[name] = (None, fn)
    rounds = 200
    times = measure(fns, rounds=rounds, warmup=1, clock=clock)
    assert times == {name: [t] * rounds for name, t in zip(names, (1.0, 2.0, 3.0, 4.0))}
    assert sorted(calls[:4]) == sorted(names)  # the warm-up round runs each once
    timed = calls[4:]
    rounds_run = [timed[i:i + 4] for i in range(0, len(timed), 4)]
    assert all(sorted(r) == sorted(names) for r in rounds_run)  # each once per round
    # every implementation runs first, and right after every other one, in a fair share of
    # the rounds: a fixed rotation kept native after efficient-kan in every round
    firsts = [r[0] for r in rounds_run]
    assert all(firsts.count(n) > rounds / 8 for n in names)
    after = [(a, b) for a, b in zip(timed, timed[1:])]
    for a in names:
        for b in names:
            if a != b:
                assert after.count((a, b)) > rounds / 8, (a, b)
    # seeded: the same orders again
    calls.clear()
    measure(fns, rounds=rounds, warmup=1, clock=clock)
    assert calls[4:] == timed


def test_measure_calls_setup_outside_the_timing():
    clock = _Clock()

    def setup():
        clock.now += 100.0  # untimed
        return (5.0,)

    def target(t):
        clock.now += t

    times = measure({"native": (setup, target)}, rounds=2, warmup=0, clock=clock)
    assert times == {"native": [5.0, 5.0]}


def test_summary_uses_paired_per_round_ratios():
    """A disturbance in one round slows whichever implementations it hits; the paired ratio of
    that round moves, the median of the per-round ratios does not."""
    times = {
        "mlp": [1.0, 1.0, 1.0, 1.0, 5.0],
        "native": [1.5, 1.4, 1.6, 1.5, 1.5],  # round 5: only the MLP was disturbed
        "inkan": [2.0, 2.0, 2.0, 2.0, 2.0],
        "efficient_kan": [6.0] * 5,
    }
    families = {"mlp": "mlp", "native": "kan", "inkan": "kan", "efficient_kan": "kan"}
    group = summarise("train_step", "[784,64,10] b256 G5", times, families)
    rows = {r.impl: r for r in group.rows}
    assert rows["native"].vs_mlp == pytest.approx(1.5)  # median of 1.5, 1.4, 1.6, 1.5, 0.3
    assert rows["mlp"].vs_mlp == pytest.approx(1.0)
    assert rows["native"].median == pytest.approx(1.5)
    assert group.best_other == "inkan"
    assert group.native_vs_best == pytest.approx(0.75)  # median of 0.75, 0.7, 0.8, 0.75, 0.75
    assert group.native_vs_best_quartiles == pytest.approx((0.75, 0.75))
    assert [r.impl for r in group.rows] == ["mlp", "native", "inkan", "efficient_kan"]


def test_summary_without_mlp_or_other_kan():
    group = summarise("forward", "cfg", {"native": [1.0, 1.2]}, {"native": "kan"})
    assert group.rows[0].vs_mlp is None
    assert group.best_other is None and group.native_vs_best is None


def test_select_configs():
    assert select_configs(None) == FULL
    g50 = select_configs(["784,64,10:G50"])
    assert [c.id for c in g50] == ["[784,64,10] b256 G50"]
    assert [c.grid for c in select_configs(["784,64,10"])] == [5, 10, 20, 50]
    assert select_configs(["2,5,1:b64"]) == [Config((2, 5, 1), 64)]
    with pytest.raises(InterleavedError, match="'7,7'.*no benchmark configuration has widths"):
        select_configs(["7,7"])
    with pytest.raises(InterleavedError, match="'784,64,10:x5'.*WIDTHS"):
        select_configs(["784,64,10:x5"])


def test_real_models_end_to_end():
    """Real models on the smallest configuration, a few rounds: the table has every
    implementation asked for, with finite positive times and the MLP at 1.00x."""
    cfg = [Config((2, 5, 1), 64)]
    groups = speed_interleaved(cfg, ["mlp", "native"], kinds=("train_step", "backward"), rounds=3, warmup=1)
    assert [(g.kind, g.config) for g in groups] == [("train_step", cfg[0].id), ("backward", cfg[0].id)]
    for g in groups:
        rows = {r.impl: r for r in g.rows}
        assert set(rows) == {"mlp", "native"}
        assert rows["mlp"].vs_mlp == pytest.approx(1.0)
        assert all(r.median > 0 and r.vs_mlp > 0 for r in g.rows)
    text = render_markdown(groups, rounds=3, threads=2)
    assert "| train_step | [2,5,1] b64 G5 |" in text and "| native |" in text


def test_unavailable_implementation_is_reported():
    with pytest.raises(InterleavedError, match="no-such-kan"):
        speed_interleaved([Config((2, 5, 1), 64)], ["mlp", "no-such-kan"], rounds=1, warmup=0)


def test_cli(tmp_path, capsys):
    from bench.cli import main

    out = tmp_path / "ratios.md"
    assert main(["speed-interleaved", "--config", "2,5,1:b64", "--impl", "mlp", "--impl", "native",
                 "--rounds", "2", "--warmup", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "[2,5,1] b64 G5" in text and "paired" in text
    assert str(out) in capsys.readouterr().out

