"""Report figures: the Pareto front on hand examples, and figures that decode as images."""

from __future__ import annotations

import matplotlib.image as mpimg
import pandas as pd
import pytest

from bench.report.plots import learning_curves, metric_vs_cost, pareto_front


@pytest.mark.parametrize("higher, cost, scores, expected", [
    # accuracy: point 2 costs more than point 1 and scores less: dominated
    (True, [1, 2, 3, 4], [0.5, 0.7, 0.6, 0.9], [True, True, False, True]),
    # RMSE: lower is better; point 3 (0.7 at cost 3) is beaten by point 2 (0.5 at cost 2)
    (False, [1, 2, 3, 4], [1.0, 0.5, 0.7, 0.2], [True, True, False, True]),
    # equal points do not dominate each other; a NaN is never on the front; point 4 costs
    # more than points 1 and 2 and scores less
    (True, [1, 1, 3, 4], [0.5, 0.5, float("nan"), 0.4], [True, True, False, False]),
])
def test_pareto_front(higher, cost, scores, expected):
    assert pareto_front(pd.Series(cost, dtype=float), pd.Series(scores), higher).tolist() \
        == expected


def _table():
    return pd.DataFrame({
        "dataset": ["d"] * 3, "scheme": ["default"] * 3, "model": ["kan", "mlp", "big"],
        "family": ["kan", "mlp", "mlp"], "params": [100, 120, 1000],
        "test_metric_mean": [0.9, 0.8, 0.95], "test_metric_std": [0.01, 0.02, 0.0]})


def test_metric_vs_cost_draws_a_decodable_figure(tmp_path):
    path = metric_vs_cost(_table(), "d", "accuracy", "params", "parameters", tmp_path / "p.png")
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # fewer than two points with a cost: nothing to draw
    assert metric_vs_cost(_table().iloc[:1], "d", "accuracy", "params", "parameters",
                          tmp_path / "q.png") is None
    assert not (tmp_path / "q.png").exists()


def test_learning_curves_draw_bands_over_seeds(tmp_path):
    rows = [{"dataset": "d", "model": m, "seed": s, "epoch": e, "val_metric": 0.5 + 0.1 * e + s,
             "train_metric": 0.6 + 0.1 * e} for m in ("a", "b") for s in (0, 1)
            for e in range(1, 6)]
    path = learning_curves(pd.DataFrame(rows), "d", "accuracy", tmp_path / "c.png")
    assert mpimg.imread(path).shape[2] in (3, 4)
