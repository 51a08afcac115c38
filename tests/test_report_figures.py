"""Report figures for shocks, training settings and the overfitting gap: the numbers behind
each (hand examples) and figures that decode as images, or nothing when there is nothing to
draw."""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import pandas as pd
import pytest

from bench.report.plots import (UNSET, _natural_order, gap_per_model, gap_points,
                                heatmap_cells, heatmap_colours, scheme_heatmap, shock_curves,
                                shock_recovery)

HOSTILE = "$x$ <b>"
BAD_MATH = r"$\nosuchcommand{$"  # unescaped, mathtext fails on it when the figure is drawn


def _decodes(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 150 and image.shape[1] > 150
    return image


# -- shock recovery ----------------------------------------------------------------------------

def _series(losses: dict[str, list[float]], after: dict[str, tuple[int, float]] = {}):
    rows = [{"run_key": k, "step": i + 1, "name": "val_loss", "value": v}
            for k, values in losses.items() for i, v in enumerate(values)]
    rows += [{"run_key": k, "step": step, "name": "after_shock_val_loss", "value": v}
             for k, (step, v) in after.items()]
    # a metric that is not a loss: never drawn
    rows.append({"run_key": "c1", "step": 1, "name": "val_metric", "value": 99.0})
    return pd.DataFrame(rows)


def _pairs(rows):
    return pd.DataFrame(rows, columns=["dataset", "model", "shock", "run_key", "control_key",
                                       "shock_step"])


SERIES = _series(
    {"c1": [4, 3, 2, 1.5, 1], "c2": [6, 5, 4, 2.5, 3],
     "s1": [4, 3, 2, 8, 3], "s2": [6, 5, 4, math.inf, 5], "s3": [4, 3, 2, 2, 1],
     "orphan": [1, 1, 1, 1, 1]},
    {"s1": (3, 10.0), "s2": (3, 20.0), "s3": (3, 2.5)})
PAIRS = _pairs([
    ("d", "m", "A", "s1", "c1", 3), ("d", "m", "A", "s2", "c2", 3),
    ("d", "m", "B", "s3", "c1", 3),
    ("d", "m", "A", "orphan", "gone", 3),   # its control has no series: skipped
    ("d", "m", "A", "orphan", None, 3),     # no control at all: skipped
    ("other", "m", "A", "s1", "c1", 3),     # another dataset
])


def _curve(curves, kind, shock=None):
    c = curves[(curves.kind == kind) & ((curves.shock == shock) if shock else True)]
    return list(zip(c.rel_step, c.after_shock, c.value, c.n))


def test_shock_curves_are_medians_over_seeds_relative_to_the_shock():
    curves = shock_curves(SERIES, PAIRS, "d")
    # the control: median of c1 and c2 per step, steps counted from the shock step 3
    assert _curve(curves, "control") == [(-2, False, 5, 2), (-1, False, 4, 2), (0, False, 3, 2),
                                         (1, False, 2, 2), (2, False, 2, 2)]
    # shock A: s2's infinite loss at step 4 leaves s1 alone there; the after-shock loss
    # (median of 10 and 20) follows the loss before the noise at 0
    assert _curve(curves, "shocked", "A") == [
        (-2, False, 5, 2), (-1, False, 4, 2), (0, False, 3, 2), (0, True, 15, 2),
        (1, False, 8, 1), (2, False, 4, 2)]
    assert _curve(curves, "shocked", "B") == [
        (-2, False, 4, 1), (-1, False, 3, 1), (0, False, 2, 1), (0, True, 2.5, 1),
        (1, False, 2, 1), (2, False, 1, 1)]
    lost = curves.drop_duplicates(["kind", "shock"]).set_index("shock", drop=False)
    assert lost.loc["A", "lost"] == 1 and lost.loc["B", "lost"] == 0
    assert set(curves.model) == {"m"}


def test_a_control_is_aligned_at_each_shock_step_it_serves():
    pairs = _pairs([("d", "m", "early", "s1", "c1", 2), ("d", "m", "late", "s3", "c1", 4)])
    control = shock_curves(SERIES, pairs, "d").query("kind == 'control'")
    assert sorted(control.aligned_at.unique()) == [2, 4]
    at2 = control[control.aligned_at == 2]
    assert list(at2.rel_step) == [-1, 0, 1, 2, 3] and list(at2.value) == [4, 3, 2, 1.5, 1]


def test_shock_recovery_draws_a_decodable_figure(tmp_path):
    path = shock_recovery(SERIES, PAIRS, "d", tmp_path / "shock.png")
    assert path == tmp_path / "shock.png"
    _decodes(path)


def test_shock_recovery_draws_nothing_without_a_usable_pair(tmp_path):
    out = tmp_path / "none.png"
    assert shock_recovery(SERIES, PAIRS, "missing", out) is None
    assert shock_recovery(SERIES, PAIRS.iloc[:0], "d", out) is None
    # only pairs whose control is missing
    assert shock_recovery(SERIES, PAIRS.iloc[3:5], "d", out) is None
    assert list(tmp_path.iterdir()) == []


def test_shock_recovery_with_many_models_and_hostile_text(tmp_path):
    models = [HOSTILE, BAD_MATH] + [f"m{i}" for i in range(8)]  # 10 models: 8 panels
    pairs = _pairs([("d" + BAD_MATH, m, BAD_MATH, "s1", "c1", 3) for m in models])
    _decodes(shock_recovery(SERIES, pairs, "d" + BAD_MATH, tmp_path / "h.png"))


# -- heat map of training settings -------------------------------------------------------------

def _runs():
    rows = [
        # model a: (adam, 0.01): two ok, one diverged
        ("a", "adam", "0.01", "ok", 0.9), ("a", "adam", "0.01", "ok", 0.8),
        ("a", "adam", "0.01", "diverged", math.nan),
        # (adam, 0.1): every run diverged
        ("a", "adam", "0.1", "diverged", math.nan), ("a", "adam", "0.1", "diverged", math.nan),
        # (sgd, 0.01): an ok run with an infinite metric does not count as ok
        ("a", "sgd", "0.01", "ok", 0.5), ("a", "sgd", "0.01", "ok", math.inf),
        # (sgd, 0.1): an error, neither ok nor diverged
        ("a", "sgd", "0.1", "error", math.nan),
        # model b leaves the optimizer unset
        ("b", None, "0.01", "ok", 0.7),
    ]
    runs = pd.DataFrame(rows, columns=["model", "optimizer", "lr", "status", "test_metric"])
    runs["dataset"] = "d"
    runs["grid"] = ["5", "10"] * 4 + ["5"]
    other = runs.iloc[:1].assign(dataset="other", test_metric=0.0)
    return pd.concat([runs, other], ignore_index=True)


def test_heatmap_cells_mean_ok_runs_and_count_diverged():
    cells = heatmap_cells(_runs(), "d", ["optimizer", "lr"]).set_index(["model", "optimizer",
                                                                        "lr"])
    assert cells.loc[("a", "adam", "0.01")].tolist() == pytest.approx([0.85, 2, 1, 3])
    adam = cells.loc[("a", "adam", "0.1")]
    assert math.isnan(adam["mean"]) and adam[["ok", "diverged", "n"]].tolist() == [0, 2, 2]
    assert cells.loc[("a", "sgd", "0.01")].tolist() == pytest.approx([0.5, 1, 0, 2])
    error = cells.loc[("a", "sgd", "0.1")]
    assert math.isnan(error["mean"]) and error[["ok", "diverged", "n"]].tolist() == [0, 0, 1]
    assert cells.loc[("b", UNSET, "0.01")].tolist() == pytest.approx([0.7, 1, 0, 1])
    assert len(cells) == 5  # the other dataset's run is not counted


def test_heatmap_cells_facet_by_a_third_field():
    cells = heatmap_cells(_runs(), "d", ["optimizer", "lr", "grid"])
    adam = cells[(cells.model == "a") & (cells.optimizer == "adam") & (cells.lr == "0.01")]
    # grid 5: 0.9 and the diverged run; grid 10: 0.8
    assert dict(zip(adam.grid, adam["mean"])) == {"5": 0.9, "10": 0.8}
    assert dict(zip(adam.grid, adam.diverged)) == {"5": 1, "10": 0}


def test_natural_order_is_numeric_when_it_can_be():
    assert _natural_order(["0.1", "1e-3", "0.01"]) == ["1e-3", "0.01", "0.1"]
    assert _natural_order(["sgd", "adam", "10"]) == ["10", "adam", "sgd"]


def _luminance(rgba):
    r, g, b, _ = rgba
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("metric, better", [("accuracy", 1.0), ("rmse", 0.0)])
def test_heatmap_colours_darken_towards_the_better_end(metric, better):
    cmap = heatmap_colours(metric)
    assert _luminance(cmap(better)) < _luminance(cmap(1.0 - better)) - 0.3
    g = cmap(better)
    assert g[1] > g[0] and g[1] > g[2]  # green


@pytest.mark.parametrize("fields", [["optimizer", "lr"], ["optimizer", "lr", "grid"]])
@pytest.mark.parametrize("metric", ["accuracy", "rmse"])
def test_scheme_heatmap_draws_a_decodable_figure(tmp_path, fields, metric):
    _decodes(scheme_heatmap(_runs(), "d", metric, fields, tmp_path / "h.png"))


@pytest.mark.parametrize("dataset, fields", [
    ("d", ["optimizer"]),                          # fewer than 2 fields
    ("d", []),
    ("d", ["optimizer", "lr", "grid", "status"]),  # a fourth field would be averaged over
    ("missing", ["optimizer", "lr"]),
    ("d", ["optimizer", "no_such_field"]),
])
def test_scheme_heatmap_draws_nothing_when_it_cannot(tmp_path, dataset, fields):
    assert scheme_heatmap(_runs(), dataset, "accuracy", fields, tmp_path / "h.png") is None
    assert list(tmp_path.iterdir()) == []


def test_scheme_heatmap_draws_hostile_text_literally(tmp_path):
    runs = _runs()
    runs["model"] = [HOSTILE, BAD_MATH] * 5
    runs["optimizer"] = BAD_MATH
    runs["dataset"] = BAD_MATH
    _decodes(scheme_heatmap(runs.rename(columns={"grid": BAD_MATH}), BAD_MATH, "accuracy",
                            ["optimizer", "lr", BAD_MATH], tmp_path / "h.png"))


# -- overfitting gap ---------------------------------------------------------------------------

def _table(**extra):
    t = pd.DataFrame({"dataset": ["d", "d", "d", "other"], "scheme": ["s"] * 4,
                      "model": ["kan", "mlp", "empty", "kan"],
                      "gap_mean": [0.05, -0.02, math.nan, 9.0],
                      "gap_std": [0.01, math.nan, math.nan, 9.0]})
    return t.assign(**extra)


def test_gap_points_in_percentage_points_for_accuracy():
    points = gap_points(_table(gap_last_mean=[0.1, 0.0, math.nan, 9.0],
                               gap_last_std=[0.02, 0.0, math.nan, 9.0]), "d", "accuracy")
    assert points.label.tolist() == ["kan", "mlp"]  # no gap at all: left out
    assert points.selected.tolist() == pytest.approx([5.0, -2.0])
    assert points.selected_std[0] == pytest.approx(1.0) and math.isnan(points.selected_std[1])
    assert points["last"].tolist() == pytest.approx([10.0, 0.0])
    assert points.last_std.tolist() == pytest.approx([2.0, 0.0])


def test_gap_points_in_target_units_for_rmse_and_without_a_last_epoch():
    points = gap_points(_table(), "d", "rmse")
    assert points.selected.tolist() == pytest.approx([0.05, -0.02])
    assert points["last"].isna().all()


def test_gap_points_name_the_scheme_when_there_are_several():
    t = _table(scheme=["a", "b", "a", "a"])
    assert gap_points(t, "d", "rmse").label.tolist() == ["kan [a]", "mlp [b]"]


@pytest.mark.parametrize("last", [True, False])
def test_gap_per_model_draws_a_decodable_figure(tmp_path, last):
    t = _table(gap_last_mean=[0.1, 0.0, math.nan, 9.0]) if last else _table()
    _decodes(gap_per_model(t, "d", "accuracy", tmp_path / "g.png"))


def test_gap_per_model_draws_nothing_without_a_gap(tmp_path):
    assert gap_per_model(_table(), "missing", "accuracy", tmp_path / "g.png") is None
    assert gap_per_model(_table().iloc[2:3], "d", "accuracy", tmp_path / "g.png") is None
    assert gap_per_model(_table().iloc[:0], "d", "accuracy", tmp_path / "g.png") is None
    assert list(tmp_path.iterdir()) == []


def test_gap_per_model_draws_hostile_text_literally(tmp_path):
    t = _table(model=[HOSTILE, BAD_MATH, "x", "y"], dataset=[BAD_MATH] * 4,
               scheme=[BAD_MATH, "s", "s", "s"])
    _decodes(gap_per_model(t, BAD_MATH, "rmse", tmp_path / "g.png"))
