"""Shocked runs joined with their controls: the resilience of every shocked run in a store.

A shocked run's control is the run with the same ``pair_key`` (data, split, scheme, seed),
the same model (name, adapter, architecture) and no shock. Resilience is computed when read
(:func:`resilience_table`), from both runs' stored per-step series, so it is never stale and
needs no schema: the validation-subset loss the probes record (``val_loss``), the loss right
after the noise (``after_shock_val_loss``), and each run's last-epoch test metric.
Torch-free, like the store and the reports.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from bench.resilience import resilience
from bench.store import Store

#: the intervention columns of the export (empty for a run without a shock)
SHOCK_FIELDS = ("shock_at", "shock_sigma", "shock_scale", "shock_target")


def intervention_columns(configs: pd.Series) -> pd.DataFrame:
    """Per run, its shock setting (``shock_at``, ``shock_sigma``, ``shock_scale``,
    ``shock_target``; empty without one) and its probe cadence (``probes_every``, empty: once
    per epoch), from its stored configuration."""
    rows = []
    for config in configs:
        interventions = json.loads(config).get("interventions") or {}
        shock = interventions.get("shock") or {}
        rows.append({**{f"shock_{k}": shock.get(k) for k in ("at", "sigma", "scale", "target")},
                     "probes_every": (interventions.get("probes") or {}).get("every")})
    return pd.DataFrame.from_records(rows, index=configs.index,
                                     columns=[*SHOCK_FIELDS, "probes_every"])


def _model_identity(runs: pd.DataFrame) -> pd.Series:
    configs = runs.config_json.map(json.loads)
    return runs.model + "|" + runs.adapter + "|" + configs.map(
        lambda c: json.dumps(c.get("arch"), sort_keys=True))


#: the per-step series resilience is computed from
SHOCK_SERIES = ("val_loss", "after_shock_val_loss")


def resilience_table(store: Store, tolerance: float = 0.05, *, runs: pd.DataFrame | None = None,
                     series: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per shocked run of the store: its ``run_key``, its control's
    (``shock_control_key``, empty when the store has no control for it) and the resilience
    metrics (:mod:`bench.resilience`) as ``shock_*`` columns. ``runs`` (``store.runs()``) and
    ``series`` (``store.series(names=SHOCK_SERIES)``) when the caller has read them already."""
    runs = store.runs() if runs is None else runs
    columns = ["run_key", "shock_control_key"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = pd.concat([runs, intervention_columns(runs.config_json)], axis=1)
    runs["model_identity"] = _model_identity(runs)
    shocked = runs[runs.shock_sigma.notna() & runs.status.isin(("ok", "diverged"))]
    if shocked.empty:
        return pd.DataFrame(columns=columns)
    controls = runs[runs.shock_sigma.isna() & (runs.status == "ok")]
    control_of = {(r.pair_key, r.model_identity): r for r in controls.itertuples()}
    if series is None:
        series = store.series(names=SHOCK_SERIES)
    by_run = {key: g for key, g in series.groupby("run_key")}
    rows: list[dict[str, Any]] = []
    for r in shocked.itertuples():
        control = control_of.get((r.pair_key, r.model_identity))
        row: dict[str, Any] = {"run_key": r.run_key,
                               "shock_control_key": None if control is None else control.run_key}
        step = pd.to_numeric(getattr(r, "shock_step", None), errors="coerce")
        if control is not None and pd.notna(step):
            own = by_run.get(r.run_key, series.iloc[:0])
            theirs = by_run.get(control.run_key, series.iloc[:0])
            after = own[own.name == "after_shock_val_loss"].value
            metrics = resilience(
                _loss_series(own), _loss_series(theirs), int(step),
                after_shock_loss=float(after.iloc[0]) if len(after) else None,
                shocked_test=_number(r.test_metric_last),
                control_test=_number(control.test_metric_last),
                tolerance=tolerance)
            row.update(metrics.values())
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _loss_series(series: pd.DataFrame) -> pd.Series:
    loss = series[series.name == "val_loss"]
    return pd.Series(loss.value.to_numpy(dtype=float), index=loss.step.astype(int).to_numpy())


def _number(value: Any) -> float | None:
    number = pd.to_numeric(value, errors="coerce")
    return None if pd.isna(number) else float(number)


def with_shocks(store: Store, export: pd.DataFrame) -> pd.DataFrame:
    """``export`` (one row per run, :meth:`Store.export`) with the intervention columns and, for
    shocked runs, their control's key and resilience metrics."""
    if export.empty:
        return export
    runs = store.runs()
    out = pd.concat([export, intervention_columns(runs.config_json).set_axis(export.index)],
                    axis=1)
    if out.shock_sigma.isna().all():  # no shocked run: no series to read
        return out
    table = resilience_table(store, runs=runs)
    if table.empty:
        return out
    return out.merge(table, how="left", on="run_key")
