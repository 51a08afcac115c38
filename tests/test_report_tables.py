"""Summary-table figures checked against scipy."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from bench.report.tables import _t_interval


def test_t_interval_matches_scipy():
    values = pd.Series([0.9, 0.93, 0.95, 0.88])
    low, high = _t_interval(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    assert all(math.isnan(v) for v in _t_interval(pd.Series([0.9])))
    # non-finite values are left out, not propagated
    assert _t_interval(pd.Series([0.9, float("inf"), 0.93, 0.95, 0.88])) == pytest.approx(expected)


def test_efficiency_shortfall_against_each_cost():
    from bench.report.tables import efficiency

    table = pd.DataFrame({
        "dataset": ["d"] * 3, "scheme": ["s"] * 3, "model": ["kan", "mlp", "big"],
        "metric": ["rmse"] * 3, "params": [100, 100, 1000],
        "train_time_s_mean": [2.0, 1.0, 3.0], "test_metric_mean": [0.1, 0.3, 0.05]})
    e = efficiency(table).set_index("model")
    # parameters: kan and mlp cost the same; kan is better, so mlp falls 0.2 short of it
    assert e.shortfall_params.to_dict() == pytest.approx({"kan": 0.0, "mlp": 0.2, "big": 0.0})
    # time: mlp is the cheapest (nothing costs less), kan is beaten by nothing cheaper
    assert e.shortfall_train_time_s_mean.to_dict() == pytest.approx(
        {"kan": 0.0, "mlp": 0.0, "big": 0.0})
    assert "shortfall_flops_impl_mean" not in e  # a cost the table lacks is left out
