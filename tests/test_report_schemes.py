"""The report's "Training schemes" section: divergence rates, scheme sensitivity chosen on
validation, and suite text escaped. Hand-made run records in a real store: no training."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from adapters.spec import ModelSpec
from bench.records import RunResult, RunSpec, SplitSpec, TrainingSpec
from bench.report import write_report
from bench.report.render import DIVERGING_ROWS, build_context
from bench.report.schemes import divergence_rates, scheme_sensitivity
from bench.store import Store

HOSTILE = "<script>alert(1)</script>|x"


def _save(store: Store, *, label: str, model: str, scheme: str, training: TrainingSpec,
          seed: int, status: str, val: float | None = None, test: float | None = None,
          gap: float = 0.0, metric: str = "accuracy", step: int | None = None) -> None:
    spec = RunSpec(
        suite="schemes", dataset="iris" if metric == "accuracy" else "diabetes",
        dataset_label=label, dataset_options={}, split=SplitSpec(), model=model,
        adapter="mlp" if model.startswith("mlp") else "native",
        family="mlp" if model.startswith("mlp") else "kan", arch=ModelSpec(hidden=(4,)),
        params=50, budget=None, scheme=scheme, training=training, seed=seed, device="cpu")
    finished = status == "ok"
    result = RunResult(
        status=status, metric=metric, params=50,
        error={"error": "RuntimeError: boom", "skipped": "unavailable"}.get(status),
        train_metric=test + gap if finished else None, val_metric=val if finished else None,
        test_metric=test if finished else None, gap=gap if finished else None,
        best_epoch=1 if finished else None, epochs=1, steps=10, diverged_step=step,
        train_time_s=1.0, throughput=100.0)
    store.save(spec, result, env={})


def _grid_scheme(optimizer: str, lr: float) -> tuple[str, TrainingSpec]:
    # named as bench.suite.SchemeGrid names a grid point
    return f"optimizer={optimizer},lr={lr:g}", TrainingSpec(epochs=1, optimizer=optimizer, lr=lr)


A01, A1, S01, S1 = (_grid_scheme(o, lr) for o in ("adam", "sgd") for lr in (0.01, 0.1))

#: model -> scheme -> per seed (status, val, test, diverged step); 2x2 grid x 3 seeds
GRID = {
    # adam,lr=0.1 is the best on test but not on validation: selection must ignore it
    "mlp": {A01: [("ok", 0.90, 0.80, None), ("ok", 0.91, 0.81, None), ("ok", 0.92, 0.82, None)],
            A1: [("ok", 0.85, 0.95, None), ("ok", 0.86, 0.96, None), ("ok", 0.87, 0.97, None)],
            S01: [("ok", 0.70, 0.60, None), ("ok", 0.72, 0.62, None), ("diverged", 0, 0, 7)],
            S1: [("diverged", 0, 0, 3), ("diverged", 0, 0, 5), ("diverged", 0, 0, 4)]},
    "kan": {A01: [("ok", 0.80, 0.80, None)] * 3,
            A1: [("diverged", 0, 0, 9), ("ok", 0.70, 0.70, None), ("ok", 0.72, 0.72, None)],
            S01: [("error", 0, 0, None), ("ok", 0.60, 0.60, None), ("ok", 0.62, 0.62, None)],
            S1: [("skipped", 0, 0, None), ("ok", 0.50, 0.50, None), ("diverged", 0, 0, 2)]},
}
#: a regression dataset (lower RMSE is better) with two schemes that vary lr only
REG = {A01: [(1.0, 1.1), (1.2, 1.3)], A1: [(1.5, 1.6), (1.7, 2.0)]}


@pytest.fixture
def grid_store(tmp_path) -> Path:
    path = tmp_path / "grid.sqlite"
    with Store(path) as store:
        for model, schemes in GRID.items():
            for (scheme, training), seeds in schemes.items():
                for seed, (status, val, test, step) in enumerate(seeds):
                    _save(store, label="iris", model=model, scheme=scheme, training=training,
                          seed=seed, status=status, val=val, test=test, step=step,
                          gap=0.01 * (seed + 1))
        for (scheme, training), seeds in REG.items():
            for seed, (val, test) in enumerate(seeds):
                _save(store, label="reg", model="mlp", scheme=scheme, training=training,
                      seed=seed, status="ok", val=val, test=test, metric="rmse")
    return path


def _runs(path: Path):
    with Store(path, readonly=True) as store:
        return store.runs()


def _row(table, **where):
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        mask &= (table[column] == value).to_numpy()
    assert mask.sum() == 1, where
    return table[mask].iloc[0]


def test_divergence_rates_count_trained_runs_and_keep_failures_and_skips_apart(grid_store):
    rates = divergence_rates(_runs(grid_store))
    mlp = _row(rates.by_model, dataset="iris", model="mlp")
    assert (mlp.runs, mlp.diverged, mlp.failed, mlp.skipped) == (12, 4, 0, 0)
    assert mlp.rate == pytest.approx(4 / 12)
    # kan: one failed run and one skipped run are not in the 10 runs that trained
    kan = _row(rates.by_model, dataset="iris", model="kan")
    assert (kan.runs, kan.diverged, kan.failed, kan.skipped) == (10, 2, 1, 1)
    assert kan.rate == pytest.approx(0.2)

    per_scheme = {(r.model, r.scheme): (r.diverged, r.runs, r.diverged_steps)
                  for r in rates.by_scheme[rates.by_scheme.dataset == "iris"].itertuples()}
    assert per_scheme[("mlp", S1[0])] == (3, 3, (3, 4, 5))
    assert per_scheme[("mlp", S01[0])] == (1, 3, (7,))
    assert per_scheme[("mlp", A01[0])] == (0, 3, ())
    assert per_scheme[("kan", S1[0])] == (1, 2, (2,))

    fields = {(r.dataset, r.model, r.field, r.value): (r.diverged, r.runs, r.failed, r.skipped)
              for r in rates.by_field.itertuples()}
    assert fields[("iris", "mlp", "optimizer", "adam")] == (0, 6, 0, 0)
    assert fields[("iris", "mlp", "optimizer", "sgd")] == (4, 6, 0, 0)
    assert fields[("iris", "mlp", "lr", "0.01")] == (1, 6, 0, 0)
    assert fields[("iris", "mlp", "lr", "0.1")] == (3, 6, 0, 0)
    assert fields[("iris", "kan", "optimizer", "adam")] == (1, 6, 0, 0)
    assert fields[("iris", "kan", "optimizer", "sgd")] == (1, 4, 1, 1)
    assert fields[("iris", "kan", "lr", "0.1")] == (2, 5, 0, 1)
    # only the fields that vary between the runs: the regression runs share the optimizer
    assert {f for d, m, f, v in fields} == {"optimizer", "lr"}
    assert {f for d, m, f, v in fields if d == "reg"} == {"lr"}


def test_sensitivity_selects_on_validation_and_reports_test(grid_store):
    table = scheme_sensitivity(_runs(grid_store))
    mlp = _row(table, dataset="iris", model="mlp")
    # adam,lr=0.1 has the best test mean (0.96): choosing it would mean selecting on test
    assert mlp.best_scheme == A01[0] and mlp.worst_scheme == S01[0]
    assert mlp.best_test == pytest.approx(0.81) and mlp.best_val == pytest.approx(0.91)
    assert mlp.worst_test == pytest.approx(0.61)
    assert mlp.best_test_std == pytest.approx(np.std([0.80, 0.81, 0.82], ddof=1))
    # every seed of sgd,lr=0.1 diverged: no mean, counted apart from the three schemes
    assert (mlp.schemes, mlp.unfinished_schemes) == (3, 1)
    means = [np.mean([0.80, 0.81, 0.82]), np.mean([0.95, 0.96, 0.97]), np.mean([0.60, 0.62])]
    assert mlp.spread == pytest.approx(means[0] - means[2])
    assert mlp.scheme_std == pytest.approx(np.std(means, ddof=1))
    assert mlp.median_gap == pytest.approx(np.median([0.01, 0.02, 0.03] * 2 + [0.01, 0.02]))

    kan = _row(table, dataset="iris", model="kan")
    assert (kan.best_scheme, kan.worst_scheme) == (A01[0], S1[0])
    assert (kan.schemes, kan.unfinished_schemes) == (4, 0)
    assert kan.spread == pytest.approx(0.80 - 0.50)
    assert kan.worst_seeds == 1

    # RMSE: lower validation is better, and the spread is still positive (worst minus best)
    reg = _row(table, dataset="reg", model="mlp")
    assert reg.metric == "rmse" and reg.best_scheme == A01[0] and reg.worst_scheme == A1[0]
    assert reg.spread == pytest.approx(np.mean([1.6, 2.0]) - np.mean([1.1, 1.3]))
    assert reg.scheme_std == pytest.approx(np.std([1.2, 1.8], ddof=1))


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def test_the_report_shows_the_section_in_both_formats(grid_store, tmp_path):
    md_path, html_path = write_report(grid_store, tmp_path / "out", "grid")
    md = _section(md_path.read_text(encoding="utf-8"), "## Training schemes", "\n## iris")
    html = _section(html_path.read_text(encoding="utf-8"), "<h2>Training schemes", "<h2>iris")
    # the best scheme by validation, its test accuracy (mean ± std over seeds) and the spread
    row = next(line for line in md.splitlines() if line.startswith("| mlp | 3 (+1"))
    assert "| optimizer=adam,lr=0.01 | 81.00% ± 1.00 |" in row
    assert "| optimizer=sgd,lr=0.01 | 61.00% ± 1.41 |" in row
    assert "| 20.00 pp |" in row and "4/12 diverged (33%)" in row
    assert "2/10 diverged (20%), 1 failed" in md
    assert re.search(r"\| mlp \| 0/6 diverged \| 4/6 diverged \| 1/6 diverged \| 3/6 diverged \|",
                     md), md
    assert "| mlp | optimizer=sgd,lr=0.1 | 3/3 diverged | 3, 4, 5 |" in md
    assert "### reg (rmse, lower is better)" in md
    for text in ("best scheme (by validation)", "4/12 diverged (33%)", "3/3 diverged",
                 "optimizer=sgd,lr=0.1"):
        assert text in html


def test_suite_text_in_the_section_is_escaped(tmp_path):
    path = tmp_path / "hostile.sqlite"
    with Store(path) as store:
        for scheme, lr in ((HOSTILE, 0.01), ("plain", 0.1)):
            for seed, status in enumerate(("ok", "diverged")):
                _save(store, label=HOSTILE, model=HOSTILE, scheme=scheme,
                      training=TrainingSpec(epochs=1, lr=lr), seed=seed, status=status,
                      val=0.9, test=0.9, step=3 if status == "diverged" else None)
    md_path, html_path = write_report(path, tmp_path / "out", "hostile")
    md, html = md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")
    assert HOSTILE not in md and HOSTILE not in html
    md_section = _section(md, "## Training schemes", "\n## ")
    html_section = _section(html, "<h2>Training schemes", "\n<h2>")
    escaped_md = r"\<script\>alert(1)\</script\>\|x"
    escaped_html = "&lt;script&gt;alert(1)&lt;/script&gt;|x"
    # as the dataset heading, the model, the best scheme and a diverging pair
    assert md_section.count(escaped_md) >= 4 and html_section.count(escaped_html) >= 4
    assert "<script>" not in html_section


def test_one_scheme_has_no_section(tmp_path):
    path = tmp_path / "one.sqlite"
    with Store(path) as store:
        for seed, status in enumerate(("ok", "diverged")):
            _save(store, label="iris", model="mlp", scheme="default",
                  training=TrainingSpec(epochs=1), seed=seed, status=status, val=0.9, test=0.9)
    with Store(path, readonly=True) as store:
        assert "schemes_section" not in build_context(store, tmp_path, "one")
    md_path, html_path = write_report(path, tmp_path / "out", "one")
    for report in (md_path, html_path):
        assert "Training schemes" not in report.read_text(encoding="utf-8")


def test_a_long_list_of_diverging_pairs_is_collapsed(tmp_path):
    path = tmp_path / "many.sqlite"
    n = DIVERGING_ROWS + 5
    with Store(path) as store:
        for i in range(n + 1):  # every scheme diverges but the last
            lr = 0.001 * (i + 1)
            _save(store, label="iris", model="mlp", scheme=f"lr={lr:g}",
                  training=TrainingSpec(epochs=1, lr=lr), seed=0,
                  status="ok" if i == n else "diverged", val=0.9, test=0.9, step=i + 1)
    md = write_report(path, tmp_path / "out", "many")[0].read_text(encoding="utf-8")
    section = _section(md, "## Training schemes", "\n## iris")
    assert len(re.findall(r"^\| mlp \| lr=", section, flags=re.M)) == DIVERGING_ROWS
    assert "… and 5 more." in section
    assert "25/26 diverged (96%)" in section
