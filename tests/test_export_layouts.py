"""``export --series --layout pykan-logger``: the pykan study's per-step logger CSV from
hand-made run records in a real store (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from adapters.spec import ModelSpec
from bench.cli import main
from bench.export_layouts import PYKAN_LOGGER_COLUMNS, pykan_logger_table
from bench.records import RunResult, RunSpec, SplitSpec, TrainingSpec
from bench.store import Store

HEADER = ("run_key,model,dataset,seed,step,train_loss,test_loss,reg,subnode_act_mean,"
          "edge_act_mean,act_scale_mean,act_scale_spline_mean,coef_mean")
STATS = ["subnode_act_mean", "edge_act_mean", "act_scale_mean", "act_scale_spline_mean"]


def _save(store: Store, *, model: str, adapter: str, family: str, metric: str, seed: int,
          series: dict[int, dict[str, float]]) -> str:
    spec = RunSpec(
        suite="layouts", dataset="diabetes" if metric == "rmse" else "iris",
        dataset_label="diabetes" if metric == "rmse" else "iris", dataset_options={},
        split=SplitSpec(), model=model, adapter=adapter, family=family,
        arch=ModelSpec(hidden=(4,)), params=50, budget=None, scheme="default",
        training=TrainingSpec(epochs=1), seed=seed, device="cpu")
    result = RunResult(status="ok", metric=metric, params=50, train_metric=1.0, val_metric=1.0,
                       test_metric=1.0, gap=0.0, best_epoch=1, epochs=1, steps=3)
    for step, values in series.items():
        for name, value in values.items():
            result.log(step, 1, name, value)
    store.save(spec, result, env={})
    return spec.key


PYKAN_STEP = {"subnode_act_mean": 0.1, "edge_act_mean": 0.2, "act_scale_mean": 0.3,
              "act_scale_spline_mean": 0.4}


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, str, str]:
    """An MLP classification run (stored first) and a pykan regression run."""
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        mlp = _save(s, model="mlp", adapter="mlp", family="mlp", metric="accuracy", seed=1,
                    series={1: {"train_loss": 0.7, "test_loss": 0.8, "coef_mean": 0.5},
                            2: {"train_loss": 0.6, "test_loss": 0.65, "coef_mean": 0.5}})
        pykan = _save(s, model="pk", adapter="pykan", family="kan", metric="rmse", seed=0,
                      series={2: {"train_loss": 1.0, "test_loss": 0.25, "reg": 0.5,
                                  "coef_mean": 0.9, **PYKAN_STEP, "shock": 1.0},
                              1: {"train_loss": 4.0, "test_loss": 9.0, "reg": 0.75,
                                  "coef_mean": 0.8, **PYKAN_STEP},
                              3: {"coef_mean": 1.0}})  # no train_loss: no row
    return path, pykan, mlp


def _table(path: Path, **kw) -> pd.DataFrame:
    with Store(path, readonly=True) as s:
        return pykan_logger_table(s.series(), s.runs(), **kw)


def test_pykan_runs_only_by_default_with_rmse_losses(store):
    path, pykan, _ = store
    table = _table(path)
    assert list(table.columns) == PYKAN_LOGGER_COLUMNS
    assert table.run_key.tolist() == [pykan, pykan] and table.step.tolist() == [1, 2]
    assert table.model.tolist() == ["pk", "pk"] and table.dataset.tolist() == ["diabetes"] * 2
    assert table.seed.tolist() == [0, 0]
    assert table.train_loss.tolist() == [2.0, 1.0]  # sqrt of the MSE
    assert table.test_loss.tolist() == [3.0, 0.5]
    assert table.reg.tolist() == [0.75, 0.5]
    assert table.coef_mean.tolist() == [0.8, 0.9]
    for name, value in PYKAN_STEP.items():
        assert table[name].tolist() == [value, value]


def test_all_models_keeps_cross_entropy_and_fills_what_others_lack(store):
    path, pykan, mlp = store
    table = _table(path, all_models=True)
    assert table.run_key.tolist() == [mlp, mlp, pykan, pykan]  # store order, then step
    rows = table[table.run_key == mlp]
    assert rows.train_loss.tolist() == [0.7, 0.6] and rows.test_loss.tolist() == [0.8, 0.65]
    assert rows.reg.tolist() == [0.0, 0.0]  # no regulariser recorded
    assert rows.coef_mean.tolist() == [0.0, 0.0]  # no spline coefficients
    assert rows[STATS].isna().all().all()  # pykan's own statistics: no meaning here


def test_cli_writes_the_studys_csv(store, tmp_path):
    path, pykan, mlp = store
    out = tmp_path / "logger.csv"
    assert main(["export", str(path), "--series", "--layout", "pykan-logger", "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER and len(lines) == 3
    assert lines[1] == f"{pykan},pk,diabetes,0,1,2.0,3.0,0.75,0.1,0.2,0.3,0.4,0.8"
    assert main(["export", str(path), "--series", "--layout", "pykan-logger", "--all-models",
                 "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[1] == f"{mlp},mlp,iris,1,1,0.7,0.8,0.0,,,,,0.0"
    assert len(lines) == 5


def test_wide_is_layout_wide_and_long_the_default(store, tmp_path):
    path = store[0]
    outputs = {}
    for name, flags in {"wide": ["--wide"], "layout_wide": ["--layout", "wide"],
                        "long": [], "layout_long": ["--layout", "long"]}.items():
        outputs[name] = tmp_path / f"{name}.csv"
        assert main(["export", str(path), "--series", *flags, "-o", str(outputs[name])]) == 0
    text = {name: p.read_text(encoding="utf-8") for name, p in outputs.items()}
    assert text["wide"] == text["layout_wide"] and "shock" in text["wide"].splitlines()[0]
    assert text["long"] == text["layout_long"] and text["long"].startswith("run_key,pair_key")


@pytest.mark.parametrize("flags", [
    ["--layout", "pykan-logger"],  # without --series
    ["--layout", "wide"],
    ["--series", "--all-models"],  # --all-models widens pykan-logger only
    ["--series", "--wide", "--layout", "pykan-logger"],
])
def test_contradictory_options_are_errors(store, flags, capsys):
    assert main(["export", str(store[0]), *flags]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_an_unknown_layout_is_an_argparse_error(store, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(store[0]), "--series", "--layout", "pykan"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_no_pykan_runs_writes_the_header_only_and_says_so(tmp_path, capsys):
    path = tmp_path / "mlp.sqlite"
    with Store(path) as s:
        _save(s, model="mlp", adapter="mlp", family="mlp", metric="rmse", seed=0,
              series={1: {"train_loss": 1.0}})
    assert main(["export", str(path), "--series", "--layout", "pykan-logger"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [HEADER]
    assert "no pykan runs" in captured.err
    assert main(["export", str(path), "--series", "--layout", "pykan-logger",
                 "--all-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == HEADER and math.isclose(float(lines[1].split(",")[5]), 1.0)
