"""Render a store into ``<out>/<suite>.md`` and ``<out>/<suite>.html``.

Reports read only the store, so they can be rebuilt at any time without rerunning anything.
A suite's report shows the runs of that suite's current plan (``run_keys``) and says how many
other runs the store holds; without ``run_keys`` it shows every run and says so.

Every text that comes from a suite (names, labels, messages, recorded value names,
provenance) is data: the HTML template autoescapes, the Markdown one escapes every value it
prints (:func:`md_escape`), plots draw text literally and file names go through
:mod:`bench.names`. Files are replaced whole (:mod:`bench.report.files`).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from bench.errors import StoreError
from bench.names import file_stem, inside, named_file
from bench.records.metrics import higher_is_better
from bench.report.files import atomic_file
from bench.report.plots import (gap_per_model, learning_curves, metric_vs_cost,
                                scheme_heatmap, shock_recovery, speed_ratios)
from bench.report.sources import MergedStores
from bench.report.schemes import divergence_rates, scheme_fields, scheme_sensitivity
from bench.report.statistics import (KAN_VS_MLP, describe_method, family_min_pairs,
                                     paired_comparisons)
from bench.report.tables import (EFFICIENCY_COSTS, efficiency, mean_std, numeric_values,
                                 summarise)
from bench.shocks import SHOCK_SERIES, intervention_columns, resilience_table
from bench.store import Store

#: a regression model whose mean test RMSE is this many times the best one's may not be named
#: best (in the tables or the summary): it diverged in all but name
RUNAWAY_RMSE_FACTOR = 100
#: the figures of test metric against a cost, per dataset: (summary table column, axis label);
#: a figure is drawn only where at least two models have the cost
COST_AXES = (("params", "parameters"), ("flops_impl_mean", "forward FLOPs per sample (impl)"),
             ("train_time_s_mean", "training time (s)"))
#: the "Training schemes" section lists at most this many diverging (model, scheme) pairs per
#: dataset, the most diverging first (a 27-scheme grid would otherwise bury the report)
DIVERGING_ROWS = 20

_MD_PUNCTUATION = re.compile(r"[\\`*\[\]<>|#~&]")
# an underscore between two letters or digits never starts emphasis; any other one may
_MD_EDGE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")


def md_escape(value: Any) -> str:
    """``value`` as literal Markdown text: one line (a newline would end a table row), with
    every character that could start markup, an HTML tag or a table cell backslash-escaped."""
    text = " ".join(str(value).splitlines())
    text = _MD_PUNCTUATION.sub(r"\\\g<0>", text)
    return _MD_EDGE_UNDERSCORE.sub(r"\\_", text)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    return f"{_fmt(mean, digits)} ± {_fmt(std, 2)}"


def _metric_pm(metric: str, mean: float, std: float) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    if metric == "accuracy":  # percent reads faster for accuracies
        return f"{100 * mean:.2f}% ± {100 * std:.2f}"
    return _pm(mean, std)


def _metric_difference(metric: str, value: float) -> str:
    """A difference of two metric values: percentage points for accuracy (as the summary)."""
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:.2f} pp" if metric == "accuracy" else _fmt(value)


def _diverged(counts: Any, rate: bool = False) -> str:
    """'n/m diverged' over the runs that trained (see bench.report.schemes), then the failed
    runs and (with the rate) the skipped ones, which are in neither number."""
    text = f"{counts.diverged}/{counts.runs} diverged"
    if rate and counts.runs:
        text += f" ({counts.rate:.0%})"
    if counts.failed:
        text += f", {counts.failed} failed"
    if rate and counts.skipped:
        text += f", {counts.skipped} skipped"
    return text


def _schemes_section(runs: pd.DataFrame) -> dict[str, Any]:
    """Per dataset: each model's sensitivity to the scheme (best and worst by validation),
    divergence by training-field value and the (model, scheme) pairs that diverged."""
    sensitivity = scheme_sensitivity(runs)
    rates = divergence_rates(runs)
    per_model = {(r.dataset, r.model): r for r in rates.by_model.itertuples()}
    datasets = []
    # datasets in the order of the report's dataset sections
    for dataset, s in sensitivity.groupby("dataset", sort=False):
        metric = s.metric.dropna().iloc[0] if s.metric.notna().any() else "accuracy"
        rows = [{
            "model": r.model,
            "schemes": str(r.schemes) + (f" (+{r.unfinished_schemes} with no finished run)"
                                         if r.unfinished_schemes else ""),
            "best_scheme": r.best_scheme if isinstance(r.best_scheme, str) else "-",
            "best_test": _metric_pm(metric, r.best_test, r.best_test_std),
            "worst_scheme": r.worst_scheme if isinstance(r.worst_scheme, str) else "-",
            "worst_test": _metric_pm(metric, r.worst_test, r.worst_test_std),
            "spread": _metric_difference(metric, r.spread),
            "scheme_std": _metric_difference(metric, r.scheme_std),
            "median_gap": _metric_difference(metric, r.median_gap),
            "divergence": _diverged(per_model[(dataset, r.model)], rate=True),
        } for r in s.itertuples()]
        fields = rates.by_field[rates.by_field.dataset == dataset]
        columns = list(dict.fromkeys(f"{r.field}={r.value}" for r in fields.itertuples()))
        field_rows = []
        for model, f in fields.groupby("model", sort=False):
            cells = {f"{r.field}={r.value}": _diverged(r) for r in f.itertuples()}
            field_rows.append({"model": model, "cells": [cells.get(c, "-") for c in columns]})
        diverging = rates.by_scheme[(rates.by_scheme.dataset == dataset)
                                    & (rates.by_scheme.diverged > 0)]
        diverging = diverging.sort_values(["rate", "diverged"], ascending=False, kind="stable")
        datasets.append({
            "name": dataset, "metric": metric,
            "direction": "higher is better" if higher_is_better(metric) else "lower is better",
            "rows": rows, "field_columns": columns, "field_rows": field_rows,
            "diverging": [{"model": r.model, "scheme": r.scheme, "diverged": _diverged(r),
                           "steps": ", ".join(map(str, r.diverged_steps)) or "-"}
                          for r in diverging.head(DIVERGING_ROWS).itertuples()],
            "diverging_more": max(0, len(diverging) - DIVERGING_ROWS),
        })
    return {"datasets": datasets}


def _shock_section(store: Store, everything: pd.DataFrame, shocked: pd.DataFrame,
                   asset_dir: Path) -> dict[str, Any]:
    """Per dataset, model and shock setting: the resilience of the shocked runs against their
    controls (bench/shocks.py, bench/resilience.py), over seeds, and a figure of the shocked
    and control losses around the shock."""
    series = store.series(names=SHOCK_SERIES)
    table = resilience_table(store, runs=everything, series=series)
    settings = intervention_columns(shocked.config_json)
    columns = ["run_key", "dataset", "model", "metric"] + (
        ["shock_step"] if "shock_step" in shocked else [])
    runs = pd.concat([shocked[columns], settings], axis=1)
    runs = runs.merge(table, how="left", on="run_key")
    runs["shock"] = [f"sigma={float(sigma):g} {scale} at {float(at):g}"
                     + ("" if target == "coefficients" else ", all tensors")
                     for sigma, scale, at, target in zip(runs.shock_sigma, runs.shock_scale,
                                                         runs.shock_at, runs.shock_target)]
    pairs = runs.dropna(subset=["shock_control_key"]) if "shock_control_key" in runs else \
        runs.iloc[:0]
    if "shock_step" in pairs:
        pairs = pairs.assign(control_key=pairs.shock_control_key,
                             shock_step=pd.to_numeric(pairs.shock_step, errors="coerce"))
        pairs = pairs.dropna(subset=["shock_step"]).astype({"shock_step": int})
    datasets = []
    for dataset, d in runs.groupby("dataset", sort=False):
        figure = None
        if "shock_step" in pairs and not pairs.empty:
            figure = shock_recovery(series, pairs, dataset, named_file(
                asset_dir, f"{dataset}-shock", ".png", "dataset label", unique=True))
        metric = d.metric.dropna().iloc[0] if d.metric.notna().any() else "accuracy"
        rows = []
        for (model, sigma, scale, at, target), g in d.groupby(
                ["model", "shock_sigma", "shock_scale", "shock_at", "shock_target"], sort=False):
            paired = g[g.shock_control_key.notna()] if "shock_control_key" in g else g.iloc[:0]

            def column(name: str) -> pd.Series:
                return pd.to_numeric(paired[name], errors="coerce") if name in paired else \
                    pd.Series(dtype=float)

            rows.append({
                "model": model,
                "shock": f"sigma={float(sigma):g} {scale} at {float(at):g}"
                         + ("" if target == "coefficients" else ", all tensors"),
                "runs": f"{len(paired)}/{len(g)}",
                "spike": _pm(*mean_std(column("shock_spike_ratio")), 3),
                "recovery": _steps(column("shock_recovery_steps"), paired),
                "control_recovery": _steps(column("shock_control_recovery_steps"), paired),
                "test_delta": _metric_difference(metric, column("shock_test_delta").mean()),
                "area": _pm(*mean_std(column("shock_excess_area")), 3),
            })
        datasets.append({"name": dataset, "metric": metric, "rows": rows, "plot_path": figure})
    return {"datasets": datasets}


def _steps(steps: pd.Series, paired: pd.DataFrame) -> str:
    """Median steps to recover over the runs that did, and how many never did."""
    if paired.empty:
        return "-"
    done = steps.dropna()
    never = len(paired) - len(done)
    text = f"median {done.median():g}" if len(done) else "none recovered"
    return text + (f", {never} never" if never else "")


def _excluded(g: pd.DataFrame) -> dict[str, str]:
    """model -> why it may not be named best of one dataset/scheme: a finished run with a
    non-finite test metric, or (regression) a mean test RMSE over RUNAWAY_RMSE_FACTOR times
    the best model's."""
    why = {r.model: f"non-finite test metric in {r.nonfinite} of {r.ok} finished runs"
           for r in g.itertuples() if r.nonfinite}
    finite = g[~g.model.isin(why)]
    if not finite.empty and (finite.metric == "rmse").all():
        best = finite.test_metric_mean.min()
        for r in finite.itertuples():
            if best > 0 and r.test_metric_mean > RUNAWAY_RMSE_FACTOR * best:
                why[r.model] = (f"mean test RMSE {r.test_metric_mean / best:.3g}x the best "
                                f"model's, over {RUNAWAY_RMSE_FACTOR}x")
    return why


def _contenders(table: pd.DataFrame) -> dict[tuple[str, str], tuple[pd.DataFrame, dict]]:
    """(dataset, scheme) -> (the models that may win, best first; the excluded ones and why)."""
    out = {}
    for key, g in table[table.ok > 0].groupby(["dataset", "scheme"], sort=False):
        excluded = _excluded(g)
        out[key] = (g[~g.model.isin(excluded)], excluded)
    return out


def _signed(metric: str, value: float) -> str:
    """A signed difference in the metric's units: percentage points for accuracy."""
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:+.2f} pp" if metric == "accuracy" else f"{value:+.4g}"


def _ci(metric: str, low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "-"
    return f"{_signed(metric, low)} to {_signed(metric, high)}"


def _p(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3g}"


def _best_by_validation(rows: pd.DataFrame) -> pd.Series | None:
    """The row with the best mean VALIDATION metric (nothing is selected on test)."""
    rows = rows[rows.val_metric_mean.notna()]
    if rows.empty:
        return None
    order = rows.val_metric_mean.sort_values(
        ascending=not higher_is_better(rows.metric.iloc[0] or ""), kind="stable")
    return rows.loc[order.index[0]]


def _trained(r: pd.Series) -> str:
    return f"{r.diverged}/{r.ok + r.diverged}"


def _summary(table: pd.DataFrame, contenders: dict, comparisons: pd.DataFrame) -> list[dict]:
    """One line per dataset, so the summary fits one screen whatever the scheme grid: the best
    KAN by mean validation metric over every scheme (of those that may win, see
    :func:`_excluded`) against its best matched MLP by the same rule in the same scheme
    (bench.report.statistics: matched_mlps), with the paired comparison of the two."""
    lines = []
    # the seeds a verdict takes across this report's comparisons (Holm's first step)
    needed = family_min_pairs(int(comparisons.p_value.notna().sum()))
    for dataset, everyone in table.groupby("dataset", sort=False):
        metric = everyone.metric.dropna().iloc[0] if everyone.metric.notna().any() else ""
        eligible, excluded = [], {}
        for scheme in everyone.scheme.unique():
            g, why = contenders.get((dataset, scheme), (everyone.iloc[:0], {}))
            eligible.append(g)
            excluded.update({f"{model} [{scheme}]" if everyone.scheme.nunique() > 1 else model:
                             reason for model, reason in why.items()})
        g = pd.concat(eligible) if eligible else everyone.iloc[:0]
        line: dict[str, Any] = {
            "dataset": dataset, "scheme": None, "metric": metric, "kan": None, "mlp": None,
            "excluded": ", ".join(f"{model} ({why})" for model, why in excluded.items())}
        lines.append(line)
        kan = _best_by_validation(g[g.family == "kan"])
        if kan is None:
            line["note"] = "no eligible KAN with a finished run"
            continue
        line.update(kan=kan.model, scheme=kan.scheme)
        mine = comparisons[(comparisons.dataset == dataset) & (comparisons.scheme == kan.scheme)
                           & (comparisons.kind == KAN_VS_MLP) & (comparisons.a == kan.model)]
        same_scheme = g[g.scheme == kan.scheme]
        mlp = _best_by_validation(same_scheme[same_scheme.model.isin(mine.b)])
        if mlp is None:
            line["note"] = "no eligible matched MLP with a finished run"
            continue
        c = mine[mine.b == mlp.model].iloc[0]
        line.update(
            mlp=mlp.model, match=c.match, n=int(c.n), diff=_signed(metric, c.mean_diff),
            ci=_ci(metric, c.ci_low, c.ci_high), verdict=c.verdict, p_holm=_p(c.p_holm),
            meaning=_meaning(dataset, kan.model, mlp.model, metric, c, needed),
            diverged=f"{_trained(kan)}, {_trained(mlp)}",
            # per-sample training time (inverse throughput): early stopping makes total
            # times depend on how many epochs each model ran
            time_ratio=_fmt(mlp.throughput_mean / kan.throughput_mean, 3) + "x"
            if kan.throughput_mean > 0 and mlp.throughput_mean > 0 else "-")
    return lines


def _meaning(dataset: str, kan: str, mlp: str, metric: str, c: pd.Series, needed: int) -> str:
    """One plain sentence on what a summary line says, and what it cannot say."""
    diff, ci = _signed(metric, c.mean_diff), _ci(metric, c.ci_low, c.ci_high)
    if c.n == 0:
        return f"On {dataset}, {kan} and {mlp} share no finished seed: nothing can be said."
    if c.verdict.startswith("too few"):
        return (f"On {dataset}, {kan} against the matched {mlp}: {diff} (positive: the KAN is "
                f"better; 95% CI {ci}), but {c.n} paired seeds are too few for the test to "
                f"decide across this report's comparisons: run {needed} or more.")
    if c.verdict == "no detectable difference":
        return (f"On {dataset}, the paired test finds no difference between {kan} and the matched "
                f"{mlp} at the 5% level after Holm's correction (mean {diff}, 95% CI {ci}, "
                f"{c.n} seeds); that is not evidence that they are equal.")
    winner = c.verdict.removesuffix(" better")
    return (f"On {dataset}, {winner} is better: {kan} minus {mlp} is {diff} (95% CI {ci}) over "
            f"{c.n} paired seeds, at the 5% level after Holm's correction.")


def _paired_section(comparisons: pd.DataFrame, order: list[str]) -> dict[str, Any]:
    """Per dataset (in ``order``, the dataset sections'), every comparison
    (bench.report.statistics) and the method's numbers."""
    datasets = []
    rank = comparisons.dataset.map({name: i for i, name in enumerate(order)})
    for dataset, d in comparisons.iloc[rank.argsort(kind="stable")].groupby("dataset",
                                                                            sort=False):
        metric = d.metric.dropna().iloc[0] if d.metric.notna().any() else ""
        datasets.append({
            "name": dataset, "metric": metric,
            "direction": "higher is better" if higher_is_better(metric) else "lower is better",
            "rows": [{"scheme": r.scheme, "kind": r.kind, "a": r.a, "b": r.b, "match": r.match,
                      "n": r.n, "diff": _signed(metric, r.mean_diff),
                      "ci": _ci(metric, r.ci_low, r.ci_high) + (
                          " (percentile)" if r.ci_method == "percentile" else ""),
                      "p": _p(r.p_value), "p_holm": _p(r.p_holm), "verdict": r.verdict}
                     for r in d.itertuples()]})
    return {"datasets": datasets, **describe_method(comparisons)}


def _by_group(runs: pd.DataFrame, values: list[str]) -> str:
    """The values of one setting that differs between runs, by scheme, else by scheme and
    model, else (configurations mixed in one store) with their number of runs."""
    for columns in (["scheme"], ["scheme", "model"]):
        labels = runs[columns].astype(str).agg(" / ".join, axis=1)
        per_label: dict[str, set[str]] = {}
        for label, value in zip(labels, values):
            per_label.setdefault(label, set()).add(value)
        if all(len(v) == 1 for v in per_label.values()):
            per_value: dict[str, list[str]] = {}
            for label, (value,) in per_label.items():
                per_value.setdefault(value, []).append(label)
            return ", ".join(f"{json.loads(v)} ({', '.join(labels)})"
                             for v, labels in per_value.items())
    return ", ".join(f"{json.loads(v)} ({n} run{'s' if n != 1 else ''})"
                     for v, n in Counter(values).items())


def _training_settings(runs: pd.DataFrame) -> tuple[dict[str, Any], list[str]]:
    """The training settings of the runs shown (never of one run standing for all): those
    equal across all of them once, and one line per setting that differs."""
    trainings = [json.loads(c).get("training", {}) for c in runs.config_json]
    names = list(dict.fromkeys(name for t in trainings for name in t))
    common: dict[str, Any] = {}
    differing = []
    for name in names:
        values = [json.dumps(t.get(name), sort_keys=True) for t in trainings]
        if len(set(values)) == 1:
            common[name] = trainings[0].get(name)
        else:
            differing.append(f"{name}: {_by_group(runs, values)}")
    return common, differing


def _environment(runs: pd.DataFrame) -> dict[str, Any]:
    """CPUs, GPUs and library versions over the runs shown (several where they differ)."""
    envs = [json.loads(e) for e in runs.env_json.dropna()]

    def distinct(values) -> list[str]:
        return list(dict.fromkeys(str(v) for v in values if v is not None))

    libraries: dict[str, list[str]] = {}
    for env in envs:
        for lib, version in (env.get("libraries") or {}).items():
            libraries.setdefault(lib, [])
            if str(version) not in libraries[lib]:
                libraries[lib].append(str(version))
    return {"cpus": distinct(e.get("cpu") for e in envs),
            "gpus": distinct(e.get("gpu") for e in envs),
            "commits": distinct(e.get("kanbench_commit") for e in envs),
            "libraries": {lib: " / ".join(v) for lib, v in libraries.items()}}


def _image(path: Path | None, inline: bool, out_dir: Path) -> str | None:
    if path is None:
        return None
    if inline:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    return path.relative_to(out_dir).as_posix()


def build_context(store: Store | MergedStores, out_dir: Path, suite_name: str,
                  run_keys: list[str] | None = None,
                  description: str | None = None) -> dict[str, Any]:
    """What the templates show: the runs in ``run_keys`` (every run when None)."""
    everything = store.runs()
    if everything.empty:
        raise StoreError(f"{store.path} holds no runs yet")
    if run_keys is None:
        runs, planned = everything, len(everything)
    else:
        planned = len(set(run_keys))
        runs = everything[everything.run_key.isin(set(run_keys))]
        if runs.empty:
            raise StoreError(f"{store.path} holds none of this suite's {planned} runs (it holds "
                             f"{len(everything)} runs of other configurations): run the suite "
                             f"first, or report the whole store without --suite")
    runs = runs.reset_index(drop=True)
    scope = {"filtered": run_keys is not None, "others": len(everything) - len(runs),
             "missing": planned - len(runs), "shown": len(runs),
             "status_counts": runs.status.value_counts().to_dict()}
    extra: dict[str, Any] = {}
    shocked = intervention_columns(runs.config_json).shock_sigma.notna()
    if shocked.any():  # shocked runs are compared with their controls, not ranked with them
        extra["shock_section"] = _shock_section(
            store, everything, runs[shocked], inside(out_dir, file_stem(suite_name, "suite name") + "_files"))
        runs = runs[~shocked].reset_index(drop=True)
    value_names = numeric_values(runs, store.value_names())
    table = summarise(runs, value_names)
    curves = store.curves()
    if not curves.empty:
        curves = curves[curves.run_key.isin(set(runs.run_key))]
    asset_dir = inside(out_dir, file_stem(suite_name, "suite name") + "_files")
    contenders = _contenders(table)
    comparisons = paired_comparisons(runs)
    efficiency_table = efficiency(table)
    # the training fields that differ between the runs' schemes (a scheme grid's axes)
    fields = scheme_fields(runs) if runs.scheme.nunique() > 1 else None

    datasets = []
    for dataset, g in table.groupby("dataset", sort=False):
        metric = g.metric.dropna().iloc[0] if g.metric.notna().any() else "accuracy"
        dr = runs[runs.dataset == dataset]
        data_info = json.loads(dr.data_json.dropna().iloc[0]) if dr.data_json.notna().any() else {}
        plot = None
        if not curves.empty:
            plot = learning_curves(curves, dataset, metric, named_file(
                asset_dir, dataset, ".png", "dataset label", unique=True))
        cost_plots = []
        for cost, label in COST_AXES:
            figure = metric_vs_cost(table, dataset, metric, cost, label, named_file(
                asset_dir, f"{dataset}-{cost}", ".png", "dataset label", unique=True))
            if figure is not None:
                cost_plots.append({"path": figure, "label": f"test {metric} against {label}"})
        figure = gap_per_model(table, dataset, metric, named_file(
            asset_dir, f"{dataset}-gap", ".png", "dataset label", unique=True))
        if figure is not None:
            cost_plots.append({"path": figure, "label": "the overfitting gap per model"})
        if fields is not None and 2 <= len(fields.columns) <= 3:
            # the run columns the heat map reads, then the fields (named like some run
            # columns, e.g. epochs: the planned ones)
            heat = runs[["dataset", "model", "status", "test_metric"]]
            figure = scheme_heatmap(pd.concat([heat, fields], axis=1), dataset, metric,
                                    list(fields.columns), named_file(
                                        asset_dir, f"{dataset}-schemes", ".png",
                                        "dataset label", unique=True))
            if figure is not None:
                cost_plots.append({"path": figure, "label": "test " + metric + " over the "
                                   "scheme grid (" + ", ".join(fields.columns) + ")"})
        rows = []
        value_rows = []
        schemes = g.scheme.unique()
        shown_values = [n for n in value_names if g[f"{n}_n"].sum() > 0]
        for _, r in g.iterrows():
            # bold: the best by mean validation metric of its scheme (nothing chosen on test)
            best = _best_by_validation(contenders.get((dataset, r.scheme), (g.iloc[:0], {}))[0])
            notes = []
            if r.diverged:
                notes.append(f"{r.diverged} diverged")
            if r.errors:
                notes.append(f"{r.errors} failed: {r.error_message}")
            if r.skipped:
                notes.append(f"skipped: {r.skip_reason}")
            if r.nonfinite:
                notes.append(f"{r.nonfinite} with a non-finite test metric")
            if r.unverified:
                notes.append(f"{r.unverified} on data that failed its published checksum "
                             f"(verify_checksum: false)")
            if r.timeouts:
                notes.append(f"{r.timeouts} stopped at the timeout ({r.timeout_s:g} s)")
            if r.busy:
                notes.append(f"timings of {r.busy} taken while other processes kept the "
                             f"cores busy: not comparable")
            if r.concurrent:
                notes.append(f"timings of {r.concurrent} taken with up to {r.concurrent_max} "
                             f"runs at once (worker processes or Ray): they compare with "
                             f"runs timed alike, not with runs timed alone")
            if r.warmup_time_s_n:  # the first compilation, then runs that reused it
                notes.append(f"warm-up (torch.compile, not in train time): longest "
                             f"{r.warmup_time_s_max:.3g} s, median {r.warmup_time_s_median:.3g} s "
                             f"over {r.warmup_time_s_n} runs")
            rows.append({
                "model": r.model, "scheme": r.scheme, "family": r.family,
                "impl": r.impl if isinstance(r.impl, str) else "-",  # NaN: skipped runs
                "arch": r.arch, "params": f"{r.params:,}" if r.params else "-",
                "budget": _budget_cell(r),
                "test": _metric_pm(metric, r.test_metric_mean, r.test_metric_std),
                "test_ci": _interval(metric, r.test_metric_ci_low, r.test_metric_ci_high),
                "gap": _metric_pm(metric, r.gap_mean, r.gap_std),
                "gap_last": _metric_pm(metric, r.get("gap_last_mean", math.nan),
                                       r.get("gap_last_std", math.nan)),
                "flops_nominal": _count(r.get("flops_nominal_mean")),
                "flops_impl": _count(r.get("flops_impl_mean")),
                "throughput": _fmt(r.throughput_mean, 3),
                "train_time": _pm(r.train_time_s_mean, r.train_time_s_std, 3),
                "best_epoch": _fmt(r.best_epoch_mean, 3),
                "best_test_epoch": _metric_pm(metric, r.test_metric_best_test_mean,
                                              r.test_metric_best_test_std),
                "runs": f"{r.ok}/{r.seeds}", "notes": "; ".join(notes),
                "is_best": best is not None and (best.model, best.scheme) == (r.model, r.scheme),
            })
            if shown_values:
                value_rows.append({"model": r.model, "scheme": r.scheme, "cells": [
                    _pm(r[f"{n}_mean"], r[f"{n}_std"], 4) if r[f"{n}_n"] else "-"
                    for n in shown_values]})
        shortfalls = efficiency_table[efficiency_table.dataset == dataset]
        costs = [(c, label) for c, label in EFFICIENCY_COSTS
                 if f"shortfall_{c}" in shortfalls and shortfalls[f"shortfall_{c}"].notna().any()]
        efficiency_rows = [{
            "model": r.model, "scheme": r.scheme,
            "cells": [_efficiency_cell(metric, getattr(r, f"shortfall_{c}")) for c, _ in costs]}
            for r in shortfalls.itertuples()]
        datasets.append({
            "name": dataset, "metric": metric,
            "efficiency_costs": [label for _, label in costs], "efficiency_rows": efficiency_rows,
            "direction": "higher is better" if higher_is_better(metric) else "lower is better",
            "info": data_info, "rows": rows, "plot_path": plot, "show_scheme": len(schemes) > 1,
            "cost_plots": cost_plots,
            "value_names": shown_values, "value_rows": value_rows,
        })

    training, differing = _training_settings(runs)
    if runs.scheme.nunique() > 1:  # one scheme has no scheme sensitivity to show
        extra["schemes_section"] = _schemes_section(runs)
    return {
        "suite": suite_name,
        "description": description or "",
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "store": str(store.path),
        # of every run shown, shocked ones included (the result tables leave those out)
        "n_runs": scope["shown"],
        "scope": scope,
        "status_counts": scope["status_counts"],
        "seeds": sorted(runs.seed.unique().tolist()),
        "training": training,
        "training_differs": differing,
        "select": training.get("select", "differs between runs (see above)"),
        "schemes": list(dict.fromkeys(runs.scheme)),
        "env": _environment(runs),
        "devices": sorted(runs.device.dropna().unique().tolist()),
        # runs that never trained (skipped) record no thread count
        "threads": sorted(runs.threads[runs.threads > 0].astype(int).unique().tolist()),
        "datasets": datasets,
        "summary": _summary(table, contenders, comparisons),
        "paired": _paired_section(comparisons, [d["name"] for d in datasets]),
        "show_scheme": runs.scheme.nunique() > 1,
        "fmt": _fmt,
        **extra,
    }


def _efficiency_cell(metric: str, shortfall: float) -> str:
    """How much worse than the best model costing no more (0: none of them does better)."""
    if shortfall is None or math.isnan(shortfall):
        return "-"
    if shortfall == 0:
        return "0"
    return (f"{100 * shortfall:.2f} pp worse" if metric == "accuracy"
            else f"{_fmt(shortfall)} worse")


def _interval(metric: str, low: float, high: float) -> str:
    """A confidence interval in the metric's units (percent for accuracy)."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "-"
    if metric == "accuracy":
        return f"{100 * low:.2f}% to {100 * high:.2f}%"
    return f"{_fmt(low)} to {_fmt(high)}"


def _count(value: Any) -> str:
    """A count (FLOPs) with thousands separators; "-" where not recorded."""
    return "-" if value is None or pd.isna(value) else f"{value:,.0f}"


def _budget_cell(r: pd.Series) -> str:
    """How the model's count was set: matched to a model, solved for a target, or fixed."""
    if pd.isna(r.budget_error_max):
        return "fixed"
    err = f"max error {r.budget_error_max:.2%}"
    if isinstance(r.budget_reference, str):
        return f"matched to {r.budget_reference} ({err})"
    return f"target ({err})"


def _environment_for(markdown: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        # suite text is data: HTML templates autoescape, Markdown escapes every printed value
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        finalize=md_escape if markdown else None,
    )


def _speed_section(paths: list[str | Path], asset_dir: Path) -> dict[str, Any]:
    """Speed ratios to the matched MLP from pytest-benchmark JSON files (tests/benchmarks):
    per file, a figure per kind of measurement and the native kernel against the fastest
    other KAN (bench.speed.report)."""
    from bench.speed.report import load_groups

    runs = []
    for i, json_path in enumerate(paths):
        groups, machine = load_groups(json_path)
        figures = []
        for kind in ("forward", "backward", "train_step"):
            figure = speed_ratios(groups, kind, named_file(
                asset_dir, f"speed-{i}-{kind}", ".png", "speed file", unique=True))
            if figure is not None:
                figures.append({"path": figure, "kind": kind.replace("_", " ")})
        rows = [{"kind": g.kind.replace("_", " "), "config": g.config,
                 "ratios": ", ".join(f"{e.impl} {e.ratio:.2f}x" for e in g.entries
                                     if e.ratio and e.impl != "mlp"),
                 "native_vs_best": "-" if g.native_vs_best is None else
                 f"{g.native_vs_best:.2f}x {g.best_other}",
                 "disturbed": ", ".join(g.disturbed)} for g in groups]
        runs.append({"source": str(json_path), "machine": machine.get("cpu", {}).get(
            "brand_raw", "") if isinstance(machine.get("cpu"), dict) else "",
            "figures": figures, "rows": rows})
    return {"runs": runs}


def write_report(store_path: str | Path | list[str | Path], out_dir: str | Path = "reports",
                 suite_name: str | None = None, *, run_keys: list[str] | None = None,
                 description: str | None = None,
                 speed: list[str | Path] | None = None) -> tuple[Path, Path]:
    """Write the Markdown and HTML reports for a store, or several merged into one report
    (:class:`bench.report.sources.MergedStores`: a run in several stores is shown once), of
    the runs in ``run_keys`` or every run; returns their paths. Each file is replaced whole: a
    failure part way leaves the previous report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = list(store_path) if isinstance(store_path, (list, tuple)) else [store_path]
    with ExitStack() as opened:
        stores = [opened.enter_context(Store(p, readonly=True)) for p in paths]
        store = stores[0] if len(stores) == 1 else MergedStores(stores)
        runs = store.runs()
        suites = list(dict.fromkeys(runs.suite.dropna())) if not runs.empty else []
        name = suite_name or ("+".join(suites) if suites else Path(paths[0]).stem)
        ctx = build_context(store, out, name, run_keys, description)
    if speed:
        ctx["speed_section"] = _speed_section(
            speed, inside(out, file_stem(name, "suite name") + "_files"))
    stem = file_stem(name, "suite name")
    md_path, html_path = inside(out, f"{stem}.md"), inside(out, f"{stem}.html")
    markdown, html = _environment_for(True), _environment_for(False)
    # both files are rendered into temporary files first: a failure leaves the previous pair
    with ExitStack() as stack:
        md_file = stack.enter_context(atomic_file(md_path))
        html_file = stack.enter_context(atomic_file(html_path))
        for inline, env, template, file in ((False, markdown, "report.md.j2", md_file),
                                            (True, html, "report.html.j2", html_file)):
            for d in ctx["datasets"]:  # Markdown links the PNG files, HTML inlines them
                d["plot"] = _image(d["plot_path"], inline=inline, out_dir=out)
                for c in d["cost_plots"]:
                    c["src"] = _image(c["path"], inline=inline, out_dir=out)
            for d in ctx.get("shock_section", {}).get("datasets", []):
                d["plot"] = _image(d["plot_path"], inline=inline, out_dir=out)
            for run in ctx.get("speed_section", {}).get("runs", []):
                for f in run["figures"]:
                    f["src"] = _image(f["path"], inline=inline, out_dir=out)
            file.writelines(env.get_template(template).generate(**ctx))
    return md_path, html_path
