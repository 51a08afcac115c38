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
