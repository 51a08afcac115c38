"""bench.speed.report on a minimal pytest-benchmark-shaped JSON."""

from __future__ import annotations

import json

import pytest

from bench.speed.report import SpeedReportError, load_groups, speed_report


def _bench(kind, config, impl, family, median, peak=None, minimum=None):
    info = {"impl": impl, "family": family, "config": config, "kind": kind}
    if peak is not None:
        info["peak_step_bytes"] = peak
    return {
        "group": f"{kind} {config}",
        "name": f"test_{kind}[{impl}-{config}]",
        "params": {"impl": impl, "cfg": config},
        "stats": {"min": median * 0.9 if minimum is None else minimum, "median": median, "mean": median, "rounds": 5},
        "extra_info": info,
    }


@pytest.fixture
def bench_json(tmp_path):
    cfg = "[784,64,10] b256 G5"
    data = {
        "machine_info": {"node": "box", "processor": "x86_64"},
        "benchmarks": [
            _bench("train_step", cfg, "mlp", "mlp", 0.004, 2**20),
            _bench("train_step", cfg, "native", "kan", 0.006, 3 * 2**20),
            _bench("train_step", cfg, "inkan", "kan", 0.008),
            _bench("train_step", cfg, "efficient_kan", "kan", 0.024),
            _bench("forward", "[2,5,1] b1000 G5", "mlp", "mlp", 0.001),
            # no extra_info: falls back to group and params
            {"group": "forward [2,5,1] b1000 G5", "name": "x", "params": {"impl": "native"},
             "stats": {"median": 0.002}},
        ],
    }
    path = tmp_path / "BENCHMARK.json"
    path.write_text(json.dumps(data))
    return path


def test_ratios(bench_json):
    groups, machine = load_groups(bench_json)
    assert machine["node"] == "box"
    fwd, step = groups  # forward sorts before train_step
    assert fwd.kind == "forward" and [e.impl for e in fwd.entries] == ["mlp", "native"]
    assert fwd.entries[1].ratio == pytest.approx(2.0)
    assert fwd.native_vs_best is None and fwd.best_other is None
    ratios = {e.impl: e.ratio for e in step.entries}
    assert ratios == pytest.approx({"mlp": 1.0, "native": 1.5, "inkan": 2.0, "efficient_kan": 6.0})
    assert step.best_other == "inkan"
    assert step.native_vs_best == pytest.approx(0.75)


def test_writes_markdown_and_html(bench_json, tmp_path):
    md, html = speed_report(bench_json, tmp_path / "out")
    text = md.read_text()
    assert "| native | 6.000 | 5.400 | 1.50x | 3.0 |" in text
    assert "native vs fastest other KAN (inkan): **0.75x**" in text
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<td>inkan</td>" in page and "0.75x" in page


def test_flags_ratios_read_from_a_disturbed_measurement(tmp_path):
    """A median far above its own minimum (another process took the cores for part of the
    rounds) makes every ratio it enters unreliable: the report names it instead of silently
    printing, say, native at 0.78x the MLP because the MLP's rounds were disturbed."""
    cfg = "[784,64,10] b256 G5"
    data = {"benchmarks": [
        _bench("train_step", cfg, "mlp", "mlp", 0.0062, minimum=0.0035),  # 1.77x its minimum
        _bench("train_step", cfg, "native", "kan", 0.0048),
        _bench("train_step", cfg, "inkan", "kan", 0.0065),
        _bench("forward", cfg, "mlp", "mlp", 0.001),
        _bench("forward", cfg, "native", "kan", 0.002),
        _bench("forward", cfg, "inkan", "kan", 0.003),
        _bench("forward", cfg, "efficient_kan", "kan", 0.02, minimum=0.01),  # not the best other KAN
    ]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    groups, _ = load_groups(path)
    fwd, step = groups
    assert step.disturbed == ["mlp"]
    assert fwd.disturbed == []  # efficient_kan is disturbed but enters neither summary ratio
    md, html = speed_report(path, tmp_path / "out")
    text = md.read_text()
    assert "| train_step | [784,64,10] b256 G5 | 0.77x | inkan | 0.74x | mlp |" in text
    assert "| forward | [784,64,10] b256 G5 | 2.00x | inkan | 0.67x |  |" in text
    assert "disturbed: mlp (median 1.77x its minimum)" in text
    assert "disturbed" in html.read_text()


def test_bad_input(tmp_path):
    with pytest.raises(SpeedReportError, match="no such file"):
        speed_report(tmp_path / "missing.json", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"foo": 1}')
    with pytest.raises(SpeedReportError, match="pytest-benchmark"):
        speed_report(bad, tmp_path)


def test_real_quick_benchmark_json(tmp_path):
    """The quick benchmark run's JSON, when one was produced in this checkout's CI step."""
    import os

    path = os.environ.get("KANBENCH_BENCHMARK_JSON")
    if not path:
        pytest.skip("set KANBENCH_BENCHMARK_JSON to a pytest-benchmark JSON to check it")
    md, html = speed_report(path, tmp_path)
    assert md.exists() and html.exists()


def _run(tmp_path, name, mlp, native, inkan, mlp_min=None):
    cfg = "[784,64,10] b256 G50"
    data = {"benchmarks": [
        _bench("train_step", cfg, "mlp", "mlp", mlp, minimum=mlp_min),
        _bench("train_step", cfg, "native", "kan", native),
        _bench("train_step", cfg, "inkan", "kan", inkan),
    ]}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_ranges_over_several_runs(tmp_path):
    """Several runs: the in-run ratios' ranges over the runs (a ratio read from a disturbed
    measurement left out, its run counted), then each run's own report."""
    runs = [
        _run(tmp_path, "r1.json", 0.020, 0.028, 0.060),  # 1.40x the MLP, 0.47x inkan
        _run(tmp_path, "r2.json", 0.018, 0.027, 0.062),  # 1.50x, 0.44x
        # the MLP's rounds were disturbed: native would read 0.90x the MLP
        _run(tmp_path, "r3.json", 0.030, 0.027, 0.061, mlp_min=0.017),
    ]
    md, html = speed_report(runs, tmp_path / "out")
    text = md.read_text()
    assert "## Across 3 runs" in text
    assert "| train_step | [784,64,10] b256 G50 | 1.40-1.50x | inkan | 0.44-0.47x | 3 | 1 |" in text
    assert "0.90x" not in text.split("## Run 1")[0]  # the disturbed ratio stays out of the ranges
    for i, path in enumerate(runs, 1):
        assert f"## Run {i}: `{path}`" in text
    assert text.count("### Summary: native vs best other KAN") == 3
    assert "| train_step | [784,64,10] b256 G50 | 0.90x | inkan | 0.44x | mlp |" in text  # run 3's own table
    page = html.read_text()
    assert "Across 3 runs" in page and "1.40-1.50x" in page


def test_a_ratio_disturbed_in_every_run_has_no_range(tmp_path):
    """Only the ratios a disturbed implementation enters are left out: the MLP's disturbed
    rounds void native vs MLP, not native vs inkan."""
    runs = [_run(tmp_path, f"r{i}.json", 0.030, 0.027, 0.061, mlp_min=0.017) for i in (1, 2)]
    text = speed_report(runs, tmp_path / "out")[0].read_text()
    assert "| train_step | [784,64,10] b256 G50 | - | inkan | 0.44x | 2 | 2 |" in text


def test_cli_takes_several_files(tmp_path, capsys):
    from bench.cli import main

    runs = [_run(tmp_path, f"r{i}.json", 0.020, 0.028, 0.060) for i in (1, 2)]
    assert main(["speed-report", *map(str, runs), "--out-dir", str(tmp_path / "out")]) == 0
    assert "Across 2 runs" in (tmp_path / "out" / "speed_report.md").read_text()


def test_a_suite_report_takes_speed_files(bench_json, tmp_path):
    """`report STORE --speed FILE`: a Speed section with the ratios and a decodable figure."""
    import matplotlib.image as mpimg

    from bench.cli import main
    from helpers import one_run_store

    store = one_run_store(tmp_path / "s.sqlite")
    out = tmp_path / "r"
    assert main(["report", str(store), "--out-dir", str(out), "--speed", str(bench_json)]) == 0
    md = next(out.glob("*.md")).read_text()
    section = md[md.index("## Speed"):]
    assert "native 1.50x, inkan 2.00x, efficient_kan 6.00x" in section
    assert "0.75x inkan" in section  # native against the fastest other KAN
    figures = sorted(out.glob("*_files/speed-0-*.png"))
    assert [f.stem.split("-")[2].split("_")[0] for f in figures] == ["forward", "train"]
    assert all(mpimg.imread(f).ndim == 3 for f in figures)
