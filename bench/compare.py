"""What changed between two stores of the same suite: runs added, missing or with another
status, and test-metric changes beyond seed noise.

Runs are matched by ``run_key`` (the hash of their whole configuration), so a run present in
both stores is the same configuration computed twice (by different code, on another machine,
after a fix). Metric changes are judged per (dataset, scheme, model) over its seeds: a group
whose every run gave the same test metric is "unchanged"; otherwise Welch's t-test on the two
sets of seeds (``scipy.stats.ttest_ind``, unequal variances) says whether the change is beyond
seed noise at ``level``; with fewer than 2 seeds on a side no test is possible and the change
is reported without a verdict. Torch-free, like the store and the reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bench.records.metrics import higher_is_better
from bench.store import Store

GROUP = ["dataset", "scheme", "model"]


@dataclass
class Comparison:
    added: pd.DataFrame  # runs only in the new store
    missing: pd.DataFrame  # runs only in the old store
    status_changed: pd.DataFrame  # run_key, title columns, old_status, new_status
    metrics: pd.DataFrame  # one row per group present (finished) in both stores


def _title(runs: pd.DataFrame) -> pd.Series:
    return runs.dataset + " / " + runs.model + " [" + runs.scheme + "] / seed " + \
        runs.seed.astype(str)


def compare_runs(old: pd.DataFrame, new: pd.DataFrame, level: float = 0.05) -> Comparison:
    """Compare two runs tables (as :meth:`Store.runs` returns them)."""
    old = old.assign(title=_title(old))
    new = new.assign(title=_title(new))
    old_keys, new_keys = set(old.run_key), set(new.run_key)
    both = old.merge(new, on="run_key", suffixes=("_old", "_new"))
    changed = both[both.status_old != both.status_new]
    status_changed = pd.DataFrame({"run_key": changed.run_key, "run": changed.title_old,
                                   "old_status": changed.status_old,
                                   "new_status": changed.status_new}).reset_index(drop=True)
    rows = []
    ok_old = old[(old.status == "ok") & old.run_key.isin(new_keys)]
    ok_new = new[(new.status == "ok") & new.run_key.isin(old_keys)]
    for key, before in ok_old.groupby(GROUP, sort=False):
        after = ok_new[(ok_new[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)]
        if after.empty:
            continue
        a = pd.to_numeric(before.test_metric, errors="coerce").dropna().to_numpy(float)
        b = pd.to_numeric(after.test_metric, errors="coerce").dropna().to_numpy(float)
        if not len(a) or not len(b):
            continue
        metric = before.metric.iloc[0]
        rows.append({**dict(zip(GROUP, key)), "metric": metric, "n_old": len(a), "n_new": len(b),
                     "old_mean": a.mean(), "new_mean": b.mean(), "delta": b.mean() - a.mean(),
                     **_verdict(a, b, metric, level)})
    metrics = pd.DataFrame(rows, columns=[*GROUP, "metric", "n_old", "n_new", "old_mean",
                                          "new_mean", "delta", "p_value", "verdict"])
    return Comparison(added=new[~new.run_key.isin(old_keys)][["run_key", "title", "status"]],
                      missing=old[~old.run_key.isin(new_keys)][["run_key", "title", "status"]],
                      status_changed=status_changed, metrics=metrics)


def _verdict(a: np.ndarray, b: np.ndarray, metric: str, level: float) -> dict:
    if len(a) == len(b) and np.array_equal(np.sort(a), np.sort(b)):
        return {"p_value": math.nan, "verdict": "unchanged"}
    if len(a) < 2 or len(b) < 2:
        return {"p_value": math.nan, "verdict": "changed (too few seeds to test)"}
    with np.errstate(all="ignore"):  # identical seeds on one side: zero variance
        p = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
    if not math.isfinite(p) or p >= level:
        return {"p_value": p, "verdict": "within seed noise"}
    better = (b.mean() > a.mean()) == higher_is_better(metric)
    return {"p_value": p, "verdict": "better" if better else "worse"}


def compare_stores(old_path: str, new_path: str, level: float = 0.05) -> Comparison:
    with Store(old_path, readonly=True) as old, Store(new_path, readonly=True) as new:
        return compare_runs(old.runs(), new.runs(), level)


def render(comparison: Comparison, limit: int = 20) -> str:
    """The comparison as plain text: counts first, then the lists (at most ``limit`` lines
    each, with how many more)."""
    c = comparison
    lines = [f"runs added: {len(c.added)}, missing: {len(c.missing)}, status changed: "
             f"{len(c.status_changed)}, result groups compared: {len(c.metrics)}"]

    def listing(title: str, items: list[str]) -> None:
        if items:
            lines.append(f"\n{title}:")
            lines.extend(f"  {item}" for item in items[:limit])
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more")

    listing("added", [f"{r.title} ({r.status})" for r in c.added.itertuples()])
    listing("missing", [f"{r.title} ({r.status})" for r in c.missing.itertuples()])
    listing("status changed", [f"{r.run}: {r.old_status} -> {r.new_status}"
                               for r in c.status_changed.itertuples()])
    moved = c.metrics[c.metrics.verdict != "unchanged"]
    order = {"worse": 0, "better": 1}
    moved = moved.assign(_o=moved.verdict.map(order).fillna(2)).sort_values("_o", kind="stable")
    listing("test metric changed (Welch's t-test over seeds)", [
        f"{r.dataset} / {r.model} [{r.scheme}]: {r.metric} {r.old_mean:.4g} -> {r.new_mean:.4g} "
        f"({r.delta:+.3g}, p = {r.p_value:.3g}): {r.verdict}" for r in moved.itertuples()])
    unchanged = int((c.metrics.verdict == "unchanged").sum())
    lines.append(f"\n{unchanged} of {len(c.metrics)} groups gave identical test metrics.")
    return "\n".join(lines)
