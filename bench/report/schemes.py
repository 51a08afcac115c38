"""Runs -> training-scheme tables (pandas): how often a scheme makes a model diverge, and how
much the choice of scheme moves a model's result.

Pure functions of the runs table as :meth:`bench.store.Store.runs` returns it, restricted to
the runs shown. Like :mod:`bench.report.tables` this module imports no torch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import pandas as pd

from bench.records.metrics import higher_is_better
from bench.store import training_columns

_GROUP = ["dataset", "model"]
_COUNTS = ["runs", "diverged", "failed", "skipped", "rate"]


class DivergenceTables(NamedTuple):
    """Divergence counts (columns ``runs, diverged, failed, skipped, rate``) per group."""

    by_model: pd.DataFrame  # dataset, model, counts
    by_scheme: pd.DataFrame  # dataset, model, scheme, counts, diverged_steps (sorted tuple)
    by_field: pd.DataFrame  # dataset, model, field, value, counts


def _counts(g: pd.DataFrame) -> dict[str, Any]:
    """``runs`` are the runs that trained to an outcome (ok or diverged): a skipped run never
    trained, and a failed one (error, or stopped at the timeout) stopped before its outcome
    was known, so neither is in the rate's denominator; both are counted apart."""
    trained = int(g.status.isin(("ok", "diverged")).sum())
    diverged = int((g.status == "diverged").sum())
    return {"runs": trained, "diverged": diverged,
            "failed": int(g.status.isin(["error", "timeout"]).sum()),
            "skipped": int((g.status == "skipped").sum()),
            "rate": diverged / trained if trained else math.nan}


def _shown(value: Any) -> str:
    """A training field's value as text, numbers as in grid scheme names (0.001, 1e-05)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"  # also a nested field of a setting absent from this run
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def scheme_fields(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run, every training field that differs between the runs (as text, e.g. ``optimizer``
    -> ``sgd``), from each run's stored configuration (:func:`bench.store.training_columns`;
    a field it had to prefix with ``training_`` keeps its own name here)."""
    fields = training_columns(runs.config_json).map(_shown)
    fields.columns = [c.removeprefix("training_") for c in fields.columns]
    return fields[[c for c in fields.columns if fields[c].nunique() > 1]]


def divergence_rates(runs: pd.DataFrame) -> DivergenceTables:
    """Divergence per (dataset, model), per (dataset, model, scheme) and per (dataset, model,
    field, value) for every training field that varies between that model's runs (e.g.
    optimizer=sgd: 3 of 18 runs diverged). See :func:`_counts` for what counts as a run."""
    fields = scheme_fields(runs)
    by_model, by_scheme, by_field = [], [], []
    for (dataset, model), g in runs.groupby(_GROUP, sort=False):
        by_model.append({"dataset": dataset, "model": model, **_counts(g)})
        for scheme, s in g.groupby("scheme", sort=False):
            steps = pd.to_numeric(s.diverged_step[s.status == "diverged"], errors="coerce")
            by_scheme.append({"dataset": dataset, "model": model, "scheme": scheme,
                              **_counts(s),
                              "diverged_steps": tuple(sorted(int(x) for x in steps.dropna()))})
        group_fields = fields.loc[g.index]
        for field in group_fields.columns:
            if group_fields[field].nunique() < 2:  # varies elsewhere, not between these runs
                continue
            for value, v in g.groupby(group_fields[field], sort=False):
                by_field.append({"dataset": dataset, "model": model, "field": field,
                                 "value": value, **_counts(v)})
    # explicit columns: a table without rows (no field varies) still has them
    return DivergenceTables(
        pd.DataFrame(by_model, columns=[*_GROUP, *_COUNTS]),
        pd.DataFrame(by_scheme, columns=[*_GROUP, "scheme", *_COUNTS, "diverged_steps"]),
        pd.DataFrame(by_field, columns=[*_GROUP, "field", "value", *_COUNTS]))


def scheme_sensitivity(runs: pd.DataFrame) -> pd.DataFrame:
    """How much the scheme moves each (dataset, model)'s result, over the scheme's ``ok`` seeds.

    Nothing is selected on the test set: the best and the worst scheme are the ones with the
    best and worst mean VALIDATION metric (``val_metric``; direction from
    :func:`bench.records.metrics.higher_is_better`); the table reports their mean TEST metric.
    ``spread`` is the best scheme's test mean minus the worst's, signed so that better is
    positive in the metric's units (for RMSE: worst minus best); it is negative only where the
    validation ranking does not hold on the test set. ``scheme_std`` is the standard deviation
    of the per-scheme test means (no selection at all). A scheme without an ``ok`` run (every
    seed diverged, failed or skipped) has no mean: it is counted in ``unfinished_schemes``, not
    in ``schemes``, the spread or the std. ``median_gap`` is the median overfitting gap over
    every ``ok`` run of the model.
    """
    rows = []
    for (dataset, model), g in runs.groupby(_GROUP, sort=False):
        metric = g.metric.dropna().iloc[0] if g.metric.notna().any() else None
        ok = g[g.status == "ok"]
        ok = ok.assign(**{c: pd.to_numeric(ok[c], errors="coerce")
                          for c in ("val_metric", "test_metric", "gap")})
        per_scheme = ok.groupby("scheme", sort=False).agg(
            val=("val_metric", "mean"), test=("test_metric", "mean"),
            test_std=("test_metric", "std"), seeds=("test_metric", "size"))
        per_scheme["test_std"] = per_scheme.test_std.where(per_scheme.seeds > 1, 0.0)
        # stable sort: of schemes tied on validation, the one planned first
        ranked = per_scheme.dropna(subset=["val"]).sort_values(
            "val", ascending=not higher_is_better(metric or ""), kind="stable")
        row: dict[str, Any] = {
            "dataset": dataset, "model": model, "metric": metric,
            "schemes": len(per_scheme),
            "unfinished_schemes": g.scheme.nunique() - len(per_scheme),
            "scheme_std": (float(per_scheme.test.std(ddof=1)) if len(per_scheme) > 1
                           else 0.0 if len(per_scheme) else math.nan),
            "median_gap": float(ok.gap.median()) if ok.gap.notna().any() else math.nan,
        }
        for which, scheme in (("best", ranked.index[0] if len(ranked) else None),
                              ("worst", ranked.index[-1] if len(ranked) else None)):
            s = ranked.loc[scheme] if scheme is not None else None
            row.update({f"{which}_scheme": scheme,
                        f"{which}_val": math.nan if s is None else float(s.val),
                        f"{which}_test": math.nan if s is None else float(s.test),
                        f"{which}_test_std": math.nan if s is None else float(s.test_std),
                        f"{which}_seeds": 0 if s is None else int(s.seeds)})
        difference = row["best_test"] - row["worst_test"]
        row["spread"] = difference if higher_is_better(metric or "") else -difference
        rows.append(row)
    return pd.DataFrame(rows)
