"""Other shapes of the per-step series for ``python -m bench export --series --layout``.

``pykan-logger``: the CSV of the study that extended pykan's ``fit`` with a per-step logger,
one row per (run, step), so its analysis scripts read kanbench's runs unchanged. Like the store
and the reports, this module needs pandas only (no torch, adapters or training code).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: the layouts ``export --series --layout`` writes: ``long`` (one row per run, step and name),
#: ``wide`` (one row per run and step, one column per name), ``pykan-logger`` (see
#: :func:`pykan_logger_table`)
SERIES_LAYOUTS = ("long", "wide", "pykan-logger")

#: identifying columns first, then the study's logger columns in its order
PYKAN_LOGGER_IDS = ["run_key", "model", "dataset", "seed", "step"]
PYKAN_LOGGER_VALUES = ["train_loss", "test_loss", "reg", "subnode_act_mean", "edge_act_mean",
                       "act_scale_mean", "act_scale_spline_mean", "coef_mean"]
PYKAN_LOGGER_COLUMNS = PYKAN_LOGGER_IDS + PYKAN_LOGGER_VALUES
#: pykan's own activation statistics (``Adapter.activation_statistics``): no meaning elsewhere
PYKAN_ACTIVATION_STATS = ["subnode_act_mean", "edge_act_mean", "act_scale_mean",
                          "act_scale_spline_mean"]


def pykan_logger_table(series: pd.DataFrame, runs: pd.DataFrame, *,
                       all_models: bool = False) -> pd.DataFrame:
    """The study's logger layout: one row per (run, step) at which ``train_loss`` was recorded,
    with exactly the columns :data:`PYKAN_LOGGER_COLUMNS`, runs in store order, steps ascending.

    ``series`` is the long per-step series (``Store.series()``: run_key, step, name, value...),
    ``runs`` the runs table (``Store.runs()``: model, dataset, seed, adapter, family, task).
    Only pykan runs (adapter ``pykan``; the study logged pykan) unless ``all_models``.

    * ``train_loss``, ``test_loss``: regression runs (task ``regression``) as RMSE, the square
      root of the MSE trained on (standardised targets), as pykan's ``fit`` reports them;
      classification runs keep the cross-entropy; other runs (task unknown) the stored value.
    * ``reg``: the weighted regularisation term; 0 for a run that recorded none (no
      regulariser), as the study's logger writes 0 when ``save_act`` is off.
    * ``subnode_act_mean`` ... ``act_scale_spline_mean``: pykan runs only, empty for others.
    * ``coef_mean``: mean |coef| of a KAN; 0 for a model without spline coefficients (family
      other than ``kan``: an MLP), as the study's logger writes 0 when no layer has ``coef``.

    A value a run did not record at a step stays empty.
    """
    chosen = runs if all_models else runs[runs.adapter == "pykan"]
    chosen = chosen[["run_key", "model", "dataset", "seed", "adapter", "family", "task"]]
    points = series[series.run_key.isin(chosen.run_key)]
    recorded = points.loc[points.name == "train_loss", ["run_key", "step"]]
    if recorded.empty:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in PYKAN_LOGGER_COLUMNS})
    # (run_key, name, step) is the series table's primary key: pivot never aggregates
    values = points.pivot(index=["run_key", "step"], columns="name", values="value")
    values = values.reindex(columns=PYKAN_LOGGER_VALUES)  # other series are not the study's
    rows = recorded.merge(chosen, on="run_key").merge(
        values, how="left", left_on=["run_key", "step"], right_index=True)
    run_order = rows.run_key.map({key: i for i, key in enumerate(chosen.run_key)})
    rows = rows.assign(run_order=run_order).sort_values(["run_order", "step"], kind="stable")

    regression = rows.task == "regression"
    for loss in ("train_loss", "test_loss"):
        rows.loc[regression, loss] = np.sqrt(rows.loc[regression, loss])
    with_reg = set(points.run_key[points.name == "reg"])
    rows.loc[~rows.run_key.isin(with_reg), "reg"] = 0.0
    rows.loc[rows.adapter != "pykan", PYKAN_ACTIVATION_STATS] = np.nan
    rows.loc[rows.family != "kan", "coef_mean"] = 0.0
    return rows[PYKAN_LOGGER_COLUMNS].astype({"seed": "int64", "step": "int64"}) \
        .reset_index(drop=True)


def _dtype(column: str) -> str:
    return "int64" if column in ("seed", "step") else \
        "object" if column in ("run_key", "model", "dataset") else "float64"
