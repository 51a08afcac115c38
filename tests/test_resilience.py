"""Shock-resilience metrics on synthetic loss curves whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.resilience import Resilience, resilience

trapezoid = getattr(np, "trapezoid", None) or np.trapz

SHOCK = 10


def curve(values: dict[int, float]) -> pd.Series:
    return pd.Series(values, dtype=float).sort_index()


def control_curve() -> pd.Series:
    """10/t on steps 1..20: the loss is 1.0 at the shock step."""
    return curve({t: 10.0 / t for t in range(1, 21)})


def shocked_curve() -> pd.Series:
    """The control up to the shock, a spike to 5.0, back under 1.05 at step 14, the control
    itself (within 5%) from step 17 on; step 16 (0.8 vs 10/16 = 0.625) is not yet within."""
    after = {11: 5.0, 12: 3.0, 13: 1.2, 14: 1.04, 15: 0.9, 16: 0.8}
    return curve({t: after.get(t, 10.0 / t) for t in range(1, 21)})


def test_spike_and_both_recoveries_at_known_steps():
    r = resilience(shocked_curve(), control_curve(), SHOCK)
    assert r.pre_shock_loss == 1.0
    assert r.peak_loss == 5.0
    assert r.spike_ratio == 5.0
    assert r.recovery_steps == 4  # step 14: 1.04 <= 1.05
    assert r.control_recovery_steps == 7  # step 17: equal to the control


def test_after_shock_loss_is_the_peak():
    r = resilience(shocked_curve(), control_curve(), SHOCK, after_shock_loss=8.0)
    assert r.peak_loss == 8.0
    assert r.spike_ratio == 8.0
    assert r.recovery_steps == 4


def test_after_shock_loss_within_tolerance_is_recovery_zero():
    r = resilience(shocked_curve(), control_curve(), SHOCK, after_shock_loss=1.04)
    assert r.recovery_steps == 0
    assert r.control_recovery_steps == 0  # control(10) = 1.0
    assert r.peak_loss == 5.0  # the series still spikes later
    outside = resilience(shocked_curve(), control_curve(), SHOCK, after_shock_loss=1.06)
    assert outside.recovery_steps == 4
    assert outside.control_recovery_steps == 7


@pytest.mark.parametrize("tolerance,expected", [(0.0, 5), (0.05, 4), (0.25, 3), (4.0, 1)])
def test_tolerance_moves_the_recovery_step(tolerance, expected):
    # Post-shock losses 5.0, 3.0, 1.2, 1.04, 0.9 against a pre-shock loss of 1.0.
    r = resilience(shocked_curve(), control_curve(), SHOCK, tolerance=tolerance)
    assert r.recovery_steps == expected


def test_never_recovering_is_none_for_both():
    shocked = curve({t: 10.0 / t if t <= SHOCK else 2.0 for t in range(1, 21)})
    r = resilience(shocked, control_curve(), SHOCK)
    assert r.recovery_steps is None
    assert r.control_recovery_steps is None
    assert r.peak_loss == 2.0


def test_control_recovery_none_when_only_pre_shock_level_is_reached():
    # Back to the pre-shock loss, but the control keeps improving faster: never within 5% of it.
    shocked = curve({t: 10.0 / t if t <= SHOCK else 1.0 for t in range(1, 21)})
    r = resilience(shocked, control_curve(), SHOCK)
    assert r.recovery_steps == 1
    assert r.control_recovery_steps is None


def test_sparse_series_with_shock_between_probes():
    steps = range(5, 55, 5)
    control = curve({t: 1.0 for t in steps})
    shocked = curve({5: 1.0, 10: 1.0, 15: 4.0, 20: 2.0, 25: 1.03, 30: 1.0, 35: 1.0,
                     40: 1.0, 45: 1.0, 50: 1.0})
    r = resilience(shocked, control, 12, after_shock_loss=6.0)
    assert r.pre_shock_loss == 1.0  # step 10, the last probe before step 12
    assert r.peak_loss == 6.0
    assert r.recovery_steps == 13  # step 25
    assert r.control_recovery_steps == 13
    # The control has no step 12, so the area starts at step 15: trapezoids over 15..25 of
    # excess 3.0, 1.0, 0.03 then zeros: 5 * (3 + 1) / 2 + 5 * (1 + 0.03) / 2 + 5 * 0.03 / 2.
    assert r.excess_area == pytest.approx(10.0 + 2.575 + 0.075)


def test_steps_in_only_one_series_are_ignored_for_the_control():
    control = curve({t: 1.0 for t in range(10, 21, 2)} | {13: 100.0})  # 13: control only
    shocked = curve({10: 1.0, 11: 0.5, 12: 3.0, 14: 2.0, 16: 1.0, 18: 1.0, 20: 1.0})
    r = resilience(shocked, control, SHOCK)
    # Step 11 (shocked only) is within, and step 13 (control only) would be; neither counts.
    assert r.control_recovery_steps == 6
    assert r.recovery_steps == 1  # against the pre-shock loss, every shocked step counts
    # Area over common steps 12..20: excess 2, 1, 0, 0, 0 at 2-step spacing.
    assert r.excess_area == pytest.approx(2 * (2 + 1) / 2 + 2 * (1 + 0) / 2)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_losses_after_the_shock(bad):
    shocked = curve({t: 10.0 / t for t in range(1, 21)} | {11: bad, 12: bad, 13: 1.0})
    r = resilience(shocked, control_curve(), SHOCK)
    assert r.peak_loss == math.inf
    assert r.spike_ratio == math.inf
    assert r.recovery_steps == 3  # NaN/inf never count as within tolerance
    assert r.control_recovery_steps == 4  # step 14: back on the control
    assert math.isnan(r.excess_area)


def test_diverged_run_never_recovers():
    shocked = curve({t: 10.0 / t if t <= SHOCK else math.nan for t in range(1, 21)})
    r = resilience(shocked, control_curve(), SHOCK, after_shock_loss=math.inf)
    assert r.peak_loss == math.inf
    assert r.recovery_steps is None
    assert r.control_recovery_steps is None
    assert math.isnan(r.excess_area)


def test_run_diverged_before_the_shock():
    # Both runs already at inf at the shock: no level to recover to, and inf is never within.
    shocked = curve({9: 1.0, 10: math.inf, 11: math.inf, 12: 0.5})
    control = curve({9: 1.0, 10: math.inf, 11: math.inf, 12: 1.0})
    r = resilience(shocked, control, SHOCK, after_shock_loss=math.inf)
    assert r.pre_shock_loss == math.inf
    assert math.isnan(r.spike_ratio)
    assert r.recovery_steps is None  # 0.5 at step 12 is not "back" to an infinite level
    assert r.control_recovery_steps == 2  # step 12: 0.5 <= 1.05; inf vs inf does not count
    finite_after = curve({10: math.inf, 11: 2.0})
    assert math.isnan(resilience(finite_after, finite_after, SHOCK).spike_ratio)  # not 2 / inf


def test_excess_area_constant_excess():
    control = curve({t: 1.0 for t in range(1, 21)})
    shocked = curve({t: 1.0 if t <= SHOCK else 3.0 for t in range(1, 21)})
    with_after = resilience(shocked, control, SHOCK, after_shock_loss=3.0)
    assert with_after.excess_area == pytest.approx(20.0)  # excess 2.0 over steps 10..20
    without_after = resilience(shocked, control, SHOCK)
    assert without_after.excess_area == pytest.approx(18.0)  # excess 2.0 over steps 11..20


def test_excess_area_linear_excess_matches_trapezoid_and_analytic():
    # Excess 20 - t on steps 10..20: a triangle of base 10 and height 10, area 50.
    control = curve({t: 1.0 for t in range(1, 21)})
    shocked = curve({t: 1.0 if t <= SHOCK else 1.0 + 20 - t for t in range(1, 21)})
    r = resilience(shocked, control, SHOCK, after_shock_loss=11.0)
    steps = np.arange(SHOCK, 21)
    assert r.excess_area == pytest.approx(50.0)
    assert r.excess_area == pytest.approx(trapezoid(20.0 - steps, steps))


def test_excess_area_uneven_steps_matches_trapezoid():
    steps = [10, 13, 20, 31, 50]
    control = curve({t: 1.0 / t for t in steps})
    # Step 10 is the shock: its series value is pre-noise (equal to the control), so
    # after_shock_loss stands in for it.
    shocked = curve({t: 1.0 / t + (5.0 / (t - 9) if t > SHOCK else 0.0) for t in steps})
    r = resilience(shocked, control, SHOCK, after_shock_loss=0.1 + 5.0)
    excess = [5.0] + [5.0 / (t - 9) for t in steps[1:]]
    assert r.excess_area == pytest.approx(trapezoid(excess, steps))
    assert r.excess_area != pytest.approx(trapezoid(excess[1:], steps[1:]))


def test_excess_area_nan_with_fewer_than_two_points():
    control = curve({10: 1.0, 11: 1.0})
    shocked = curve({10: 1.0, 11: 2.0})
    assert math.isnan(resilience(shocked, control, SHOCK).excess_area)
    assert resilience(shocked, control, SHOCK, after_shock_loss=3.0).excess_area == 1.5


def test_pre_shock_loss_missing_or_zero():
    late = curve({15: 2.0, 20: 1.0})
    r = resilience(late, late, SHOCK)
    assert math.isnan(r.pre_shock_loss)
    assert math.isnan(r.spike_ratio)
    assert r.peak_loss == 2.0
    assert r.recovery_steps is None  # nothing to recover to
    assert r.control_recovery_steps == 5  # equal to its control at the first common step
    zero = curve({10: 0.0, 15: 0.5})
    assert math.isnan(resilience(zero, zero, SHOCK).spike_ratio)


def test_test_delta():
    r = resilience(shocked_curve(), control_curve(), SHOCK, shocked_test=0.8, control_test=0.9)
    assert r.test_delta == pytest.approx(-0.1)
    assert math.isnan(resilience(shocked_curve(), control_curve(), SHOCK,
                                 shocked_test=0.8).test_delta)
    assert math.isnan(resilience(shocked_curve(), control_curve(), SHOCK,
                                 shocked_test=math.nan, control_test=0.9).test_delta)


def test_values_are_prefixed_for_storing():
    r = resilience(shocked_curve(), control_curve(), SHOCK, shocked_test=0.8, control_test=0.9)
    values = r.values()
    assert set(values) == {
        "shock_pre_shock_loss", "shock_peak_loss", "shock_spike_ratio", "shock_recovery_steps",
        "shock_control_recovery_steps", "shock_test_delta", "shock_excess_area",
    }
    assert values["shock_spike_ratio"] == 5.0
    assert values["shock_recovery_steps"] == 4
    assert isinstance(r, Resilience)


@pytest.mark.parametrize("kwargs,match", [
    ({"shock_step": 0}, "shock_step must be >= 1"),
    ({"shock_step": 1.5}, "shock_step must be an int"),
    ({"tolerance": -0.01}, "tolerance"),
    ({"tolerance": math.nan}, "tolerance"),
])
def test_rejects_bad_arguments(kwargs, match):
    args = {"shock_step": SHOCK} | kwargs
    with pytest.raises(ValueError, match=match):
        resilience(shocked_curve(), control_curve(), **args)


@pytest.mark.parametrize("series,match", [
    (pd.Series([1.0, 2.0], index=[1.0, 2.0]), "indexed by int steps"),
    (pd.Series([1.0, 2.0], index=[2, 1]), "strictly ascending"),
    (pd.Series([1.0, 2.0], index=[1, 1]), "strictly ascending"),
    ([1.0, 2.0], "pandas Series"),
])
def test_rejects_bad_series(series, match):
    with pytest.raises(ValueError, match=match):
        resilience(series, control_curve(), SHOCK)
    with pytest.raises(ValueError, match=match):
        resilience(shocked_curve(), series, SHOCK)
