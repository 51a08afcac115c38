"""Resilience to a mid-training shock: how far a run's loss jumps and how fast it comes back.

A *shocked* run has Gaussian noise added to its learned coefficients once, right after
optimisation step ``shock_step``. Its *control* is the same run (data, scheme, seed, model)
without the noise. Both record a loss series: the loss on a fixed validation subset every few
steps, indexed by the global step (1-based, ascending). A series value at ``shock_step`` was
recorded before the noise was added. The shocked run may also record ``after_shock_loss``: the
same loss measured at ``shock_step`` immediately after the noise was added.

Metrics, per shocked run (``tol`` is the tolerance, default 0.05 = 5%):

- ``pre_shock_loss``: the shocked series' loss at the last recorded step at or before
  ``shock_step``. NaN when there is no such step.
- ``peak_loss``: the largest of ``after_shock_loss`` (when given) and the shocked series' losses
  at steps after ``shock_step``. Infinite when any of those losses is NaN or infinite (the run
  diverged); NaN when there is no loss after the shock at all.
- ``spike_ratio``: ``peak_loss / pre_shock_loss``. NaN when ``pre_shock_loss`` is 0, NaN or
  infinite.
- ``recovery_steps``: how many steps after the shock the shocked loss first comes back within
  ``tol`` of the pre-shock loss, i.e. the first recorded step ``t > shock_step`` with
  ``loss(t) <= (1 + tol) * pre_shock_loss``, reported as ``t - shock_step``. It is 0 when
  ``after_shock_loss`` is already within tolerance. None when it never happens within the series
  (also when ``pre_shock_loss`` is NaN or infinite: there is nothing to come back to).
- ``control_recovery_steps``: how many steps after the shock the shocked loss first comes back
  within ``tol`` of the control's loss at the same step: the first step ``t > shock_step``
  recorded in both series with ``shocked(t) <= (1 + tol) * control(t)``, reported as
  ``t - shock_step``. It is 0 when ``after_shock_loss`` is given, ``shock_step`` is in the
  control series and ``after_shock_loss <= (1 + tol) * control(shock_step)``. Steps recorded in
  only one series are ignored. None when it never happens within the series.
- ``test_delta``: the shocked run's final test metric minus the control's. NaN when either is
  missing.
- ``excess_area``: the extra loss the shock cost, summed over time: the trapezoidal integral of
  ``shocked(t) - control(t)`` (in loss x steps) over the steps recorded in both series from the
  shock on. At ``shock_step`` itself the shocked side is ``after_shock_loss`` (used only when
  given and ``shock_step`` is in the control series); otherwise the integral starts at the first
  common step after the shock. NaN when there are fewer than 2 points, or when any difference is
  NaN or infinite.

A NaN or infinite shocked loss is never within tolerance, nor is any loss compared with a NaN
control loss (a finite loss is within an infinite control loss). Losses are assumed
non-negative.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

# numpy >= 2.0 renamed trapz to trapezoid; the project supports numpy >= 1.24.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

PREFIX = "shock_"


@dataclass(frozen=True)
class Resilience:
    """One shocked run's response to its shock, against its control (see the module docstring)."""

    pre_shock_loss: float
    peak_loss: float
    spike_ratio: float
    recovery_steps: int | None  # None: never recovered within the series
    control_recovery_steps: int | None  # None: never recovered within the series
    test_delta: float
    excess_area: float

    def values(self) -> dict[str, float | int | None]:
        """The metrics keyed by stored name: the field prefixed ``shock_`` (``shock_spike_ratio``)."""
        return {PREFIX + name: value for name, value in asdict(self).items()}


def resilience(
    shocked: pd.Series,
    control: pd.Series,
    shock_step: int,
    *,
    after_shock_loss: float | None = None,
    shocked_test: float | None = None,
    control_test: float | None = None,
    tolerance: float = 0.05,
) -> Resilience:
    """Resilience metrics of ``shocked`` against ``control`` for a shock after ``shock_step``."""
    if isinstance(shock_step, bool) or not isinstance(shock_step, (int, np.integer)):
        raise ValueError(f"shock_step must be an int, got {shock_step!r}")
    if shock_step < 1:
        raise ValueError(f"shock_step must be >= 1 (steps are 1-based), got {shock_step}")
    if not (tolerance >= 0 and math.isfinite(tolerance)):  # also rejects NaN
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    shocked = _checked_series(shocked, "shocked")
    control = _checked_series(control, "control")
    after = _optional_float(after_shock_loss)
    shock_step = int(shock_step)
    factor = 1.0 + tolerance

    before = shocked[shocked.index <= shock_step]
    pre = float(before.iloc[-1]) if len(before) else math.nan

    post = shocked[shocked.index > shock_step]
    post_losses = post.to_numpy()
    if after is not None:
        post_losses = np.concatenate([[after], post_losses])
    if len(post_losses) == 0:
        peak = math.nan
    elif not np.isfinite(post_losses).all():
        peak = math.inf  # a diverged run: NaN counts as the worst possible loss
    else:
        peak = float(post_losses.max())

    spike_ratio = peak / pre if math.isfinite(pre) and pre != 0 else math.nan

    # Recovery against the pre-shock loss: after_shock_loss counts as step shock_step. A run
    # already diverged before the shock has no level to come back to.
    pre_threshold = pre * factor if math.isfinite(pre) else math.nan
    recovery = _first_within(post, pre_threshold, shock_step)
    if after is not None and _within(after, pre_threshold):
        recovery = 0

    # Against the control, step by step, only where both runs recorded a loss.
    common = shocked.index.intersection(control.index)
    common_post = common[common > shock_step]
    control_recovery = _first_within(
        shocked.loc[common_post], control.loc[common_post] * factor, shock_step
    )
    excess = (shocked.loc[common_post] - control.loc[common_post]).to_numpy()
    steps = common_post.to_numpy(dtype=float)
    # after_shock_loss has a control counterpart only where the control recorded shock_step.
    if after is not None and shock_step in control.index:
        control_at_shock = float(control.loc[shock_step])
        if _within(after, control_at_shock * factor):
            control_recovery = 0
        excess = np.concatenate([[after - control_at_shock], excess])
        steps = np.concatenate([[float(shock_step)], steps])
    if len(excess) < 2 or not np.isfinite(excess).all():
        area = math.nan
    else:
        area = float(_trapezoid(excess, steps))

    shocked_test_value = _optional_float(shocked_test)
    control_test_value = _optional_float(control_test)
    test_delta = (
        math.nan
        if shocked_test_value is None or control_test_value is None
        else shocked_test_value - control_test_value  # NaN propagates from a NaN metric
    )

    return Resilience(
        pre_shock_loss=pre,
        peak_loss=peak,
        spike_ratio=spike_ratio,
        recovery_steps=recovery,
        control_recovery_steps=control_recovery,
        test_delta=test_delta,
        excess_area=area,
    )


def _checked_series(series: pd.Series, name: str) -> pd.Series:
    """``series`` as floats, after checking it is indexed by strictly ascending int steps."""
    if not isinstance(series, pd.Series):
        raise ValueError(f"{name} must be a pandas Series, got {type(series).__name__}")
    if len(series) and not pd.api.types.is_integer_dtype(series.index.dtype):
        raise ValueError(f"{name} must be indexed by int steps, got {series.index.dtype} index")
    if not series.index.is_monotonic_increasing or not series.index.is_unique:
        raise ValueError(f"{name} steps must be strictly ascending")
    try:
        return series.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} losses must be numbers: {exc}") from exc


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _within(loss: float, threshold: float) -> bool:
    # A NaN/inf loss (or a NaN threshold) is never within tolerance; NaN comparisons are False.
    return math.isfinite(loss) and loss <= threshold


def _first_within(losses: pd.Series, thresholds: pd.Series | float, shock_step: int) -> int | None:
    """Steps from the shock to the first finite loss at or below its threshold; None if none."""
    hits = np.isfinite(losses.to_numpy()) & (losses <= thresholds).to_numpy()
    if not hits.any():
        return None
    return int(losses.index[int(np.argmax(hits))]) - shock_step
