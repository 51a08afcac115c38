"""Store -> summary tables (pandas): one row per (dataset, scheme, model), mean +- std over seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from scipy import stats

from bench.machine import MARGIN
from bench.records.metrics import higher_is_better


def _first_line(errors: pd.Series, limit: int = 200) -> str | None:
    """The first line of the first error (its type and message; the traceback tail follows)."""
    if errors.empty:
        return None
    line = (str(errors.iloc[0]).strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit] + "..."


def mean_std(values: pd.Series) -> tuple[float, float]:
    """Mean and sample std of the non-missing values (std 0 for one value; NaN for none)."""
    v = values.dropna().astype(float)
    if v.empty:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


#: the headline columns aggregated over seeds (mean and std)
AGGREGATED = ("test_metric", "train_metric", "val_metric", "gap", "train_time_s", "warmup_time_s",
              "throughput", "best_epoch", "test_metric_best_test", "test_metric_last")


def numeric_values(runs: pd.DataFrame, names: list[str]) -> list[str]:
    """The named per-run values among ``names`` that hold numbers (text values are not
    averaged)."""
    return [n for n in names if n in runs and pd.to_numeric(runs[n], errors="coerce").notna().any()]


def _json_field(blobs: pd.Series, key: str) -> pd.Series:
    return blobs.map(lambda b: json.loads(b).get(key) if isinstance(b, str) else None)


def unverified_data(runs: pd.DataFrame) -> pd.Series:
    """Runs made on data files that failed their published checksum (``verify_checksum:
    false``), as the loader recorded in the run's data protocol."""
    return _json_field(runs.data_json, "checksum") == "mismatch"


def busy_machine(runs: pd.DataFrame) -> pd.Series:
    """Runs trained while other processes kept the cores busy (``others_cpu_load`` plus the
    run's threads above the CPU count, see bench/machine.py): their timings do not compare."""
    if "others_cpu_load" not in runs:
        return pd.Series(False, index=runs.index)
    others = pd.to_numeric(runs.others_cpu_load, errors="coerce")
    cores = pd.to_numeric(_json_field(runs.env_json, "cpu_count"), errors="coerce")
    threads = pd.to_numeric(runs.threads, errors="coerce").fillna(1)
    return (others + threads > cores + MARGIN).fillna(False).astype(bool)


def _t_interval(values: pd.Series, confidence: float = 0.95) -> tuple[float, float]:
    """Student's t confidence interval of the mean (NaN with fewer than 2 finite values)."""
    v = values[np.isfinite(values)]
    if len(v) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def summarise(runs: pd.DataFrame, value_names: list[str] = ()) -> pd.DataFrame:
    """Aggregate runs over seeds. Metrics average only the runs that finished ``ok``; the
    counts of diverged, failed and skipped runs are columns of their own. Each numeric named
    per-run value in ``value_names`` gets ``<name>_mean``, ``<name>_std`` and ``<name>_n``."""
    extra = numeric_values(runs, list(value_names))
    runs = runs.assign(_unverified=unverified_data(runs), _busy=busy_machine(runs))
    rows = []
    keys = ["dataset", "scheme", "model"]
    for (dataset, scheme, model), g in runs.groupby(keys, sort=False):
        ok = g[g.status == "ok"]
        metric = g.metric.dropna().iloc[0] if g.metric.notna().any() else None
        row = {
            "dataset": dataset, "scheme": scheme, "model": model,
            "metric": metric,
            "family": g.family.iloc[0], "adapter": g.adapter.iloc[0],
            "impl": ", ".join(sorted({f"{i} {v}" for i, v in zip(g.impl, g.impl_version)
                                      if isinstance(i, str)})) or None,
            "arch": g.arch.iloc[0],
            "params": int(g.params.max()) if g.params.notna().any() else None,
            "budget_reference": g.budget_reference.dropna().iloc[0]
            if g.budget_reference.notna().any() else None,
            "budget_error_max": float(g.budget_error.abs().max())
            if g.budget_error.notna().any() else None,
            "seeds": len(g), "ok": len(ok),
            "diverged": int((g.status == "diverged").sum()),
            "errors": int((g.status == "error").sum()),
            "skipped": int((g.status == "skipped").sum()),
            "skip_reason": g.error[g.status == "skipped"].iloc[0]
            if (g.status == "skipped").any() else None,
            "error_message": _first_line(g.error[g.status == "error"].dropna()),
            # finished runs whose test metric is NaN or infinite (SQLite keeps NaN as NULL):
            # the mean below skips NaN, so such a model could otherwise look best
            "nonfinite": int((~np.isfinite(pd.to_numeric(ok.test_metric, errors="coerce")
                                           .astype(float))).sum()),
            "unverified": int(g._unverified.sum()),
            "busy": int(ok._busy.sum()),
            "timeouts": int((g.status == "timeout").sum()),
            "timeout_s": float(pd.to_numeric(g.timeout_s, errors="coerce").max())
            if "timeout_s" in g and (g.status == "timeout").any() else math.nan,
            # timed beside other runs (worker processes, Ray tasks): they share memory
            # bandwidth and caches, so their times compare with each other, not with runs
            # timed alone
            "concurrent": int((pd.to_numeric(ok.concurrent_runs, errors="coerce") > 1).sum())
            if "concurrent_runs" in ok else 0,
            "concurrent_max": int(pd.to_numeric(ok.concurrent_runs, errors="coerce").max())
            if "concurrent_runs" in ok and ok.concurrent_runs.notna().any() else 1,
        }
        for col in AGGREGATED:
            row[f"{col}_mean"], row[f"{col}_std"] = mean_std(ok[col])
        # 95% confidence interval of the mean test metric over seeds (Student's t)
        tests = pd.to_numeric(ok.test_metric, errors="coerce").dropna().astype(float)
        row["test_metric_ci_low"], row["test_metric_ci_high"] = _t_interval(tests)
        # compilation happens once per kernel shape and process: later runs reuse it, so a
        # mean over runs hides the one-off cost; the report gives the largest and the median
        warmup = pd.to_numeric(ok.warmup_time_s, errors="coerce").dropna()
        row["warmup_time_s_n"] = len(warmup)
        row["warmup_time_s_max"] = float(warmup.max()) if len(warmup) else math.nan
        row["warmup_time_s_median"] = float(warmup.median()) if len(warmup) else math.nan
        for name in extra:
            values = pd.to_numeric(ok[name], errors="coerce")
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
            row[f"{name}_n"] = int(values.notna().sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    # best first within each dataset/scheme; models without results last
    table["_order"] = [
        (-m if higher_is_better(metric or "") else m) if not math.isnan(m) else math.inf
        for m, metric in zip(table.test_metric_mean, table.metric)
    ]
    table = table.sort_values(["dataset", "scheme", "_order"], kind="stable").drop(columns="_order")
    return table.reset_index(drop=True)


def best_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The best model (by mean test metric) of each dataset/scheme with results."""
    have = table[table.ok > 0]
    return have.groupby(["dataset", "scheme"], sort=False).head(1)


#: the costs efficiency is judged against: (summary-table column, what it is)
EFFICIENCY_COSTS = (("params", "parameters"), ("flops_impl_mean", "FLOPs (impl)"),
                    ("train_time_s_mean", "training time"))


def efficiency(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and row of the summary table, for each cost in :data:`EFFICIENCY_COSTS`
    that the table has: the model's ``shortfall_<cost>``, how much worse its mean test metric
    is than the best mean test metric of any model (of the same dataset, any scheme) costing
    no more than it (0: no such model does better, as for a point of the Pareto front of
    metric against that cost; in the metric's units, positive = worse). "KANs are more parameter-efficient" reads as: KANs'
    shortfall against parameters is 0 and the MLPs' is not."""
    rows = []
    for _, g in table.groupby("dataset", sort=False):
        metric = g.metric.dropna().iloc[0] if g.metric.notna().any() else ""
        sign = 1.0 if higher_is_better(metric) else -1.0
        score = sign * pd.to_numeric(g.test_metric_mean, errors="coerce")
        out = g[["dataset", "scheme", "model", "metric"]].copy()
        for cost, _ in EFFICIENCY_COSTS:
            if cost not in g:
                continue
            c = pd.to_numeric(g[cost], errors="coerce")
            out[f"shortfall_{cost}"] = [
                max(0.0, float(score[c <= c[i]].max() - score[i]))
                if pd.notna(c[i]) and pd.notna(score[i]) else math.nan for i in g.index]
        rows.append(out)
    return pd.concat(rows) if rows else pd.DataFrame()
