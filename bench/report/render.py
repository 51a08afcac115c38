"""Render a store into ``<out>/<suite>.md`` and ``<out>/<suite>.html``.

Reports read only the store, so they can be rebuilt at any time without rerunning anything.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from bench.errors import StoreError
from bench.report.plots import learning_curves
from bench.report.tables import numeric_values, summarise
from bench.store import Store
from bench.records.metrics import higher_is_better


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


def _headline(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Per dataset/scheme: best KAN against best MLP, with a crude noise check."""
    lines = []
    for (dataset, scheme), g in table[table.ok > 0].groupby(["dataset", "scheme"], sort=False):
        kan, mlp = g[g.family == "kan"].head(1), g[g.family == "mlp"].head(1)
        best = g.iloc[0]
        line = {"dataset": dataset, "scheme": scheme, "metric": best.metric,
                "best": best.model, "best_value": _metric_pm(best.metric, best.test_metric_mean,
                                                             best.test_metric_std)}
        if not kan.empty and not mlp.empty:
            k, m = kan.iloc[0], mlp.iloc[0]
            diff = k.test_metric_mean - m.test_metric_mean
            noise = math.hypot(k.test_metric_std, m.test_metric_std)
            kan_better = diff > 0 if higher_is_better(best.metric) else diff < 0
            if abs(diff) <= noise:
                verdict = "within noise (difference ≤ combined std over seeds)"
            else:
                verdict = ("KAN better" if kan_better else "MLP better") + \
                    " (difference exceeds the combined std over seeds)"
            scale = 100 if best.metric == "accuracy" else 1
            unit = " pp" if best.metric == "accuracy" else ""
            # Per-sample training time (inverse throughput): early stopping makes total times
            # depend on how many epochs each model ran.
            line.update(kan=k.model, mlp=m.model, diff=f"{scale * diff:+.3g}{unit}",
                        verdict=verdict,
                        time_ratio=(m.throughput_mean / k.throughput_mean
                                    if k.throughput_mean else math.nan))
        lines.append(line)
    return lines


def _image(path: Path | None, inline: bool, out_dir: Path) -> str | None:
    if path is None:
        return None
    if inline:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    return str(path.relative_to(out_dir))


def build_context(store: Store, out_dir: Path, suite_name: str) -> dict[str, Any]:
    runs = store.runs()
    if runs.empty:
        raise StoreError(f"{store.path} holds no runs yet")
    value_names = numeric_values(runs, store.value_names())
    table = summarise(runs, value_names)
    curves = store.curves()
    first = runs.iloc[0]
    env = json.loads(first.env_json or "{}")
    config = json.loads(first.config_json)
    asset_dir = out_dir / f"{suite_name}_files"

    datasets = []
    for dataset, g in table.groupby("dataset", sort=False):
        metric = g.metric.dropna().iloc[0] if g.metric.notna().any() else "accuracy"
        dr = runs[runs.dataset == dataset]
        data_info = json.loads(dr.data_json.dropna().iloc[0]) if dr.data_json.notna().any() else {}
        plot = None
        if not curves.empty:
            plot = learning_curves(curves, dataset, metric, asset_dir / f"{_slug(dataset)}.png")
        rows = []
        value_rows = []
        schemes = g.scheme.unique()
        shown_values = [n for n in value_names if g[f"{n}_n"].sum() > 0]
        for _, r in g.iterrows():
            best = g[(g.scheme == r.scheme) & (g.ok > 0)].head(1)
            notes = []
            if r.diverged:
                notes.append(f"{r.diverged} diverged")
            if r.errors:
                notes.append(f"{r.errors} failed")
            if r.skipped:
                notes.append(f"skipped: {r.skip_reason}")
            if not math.isnan(r.warmup_time_s_mean):
                notes.append(f"compile {r.warmup_time_s_mean:.3g} s per run, not in train time")
            rows.append({
                "model": r.model, "scheme": r.scheme, "family": r.family, "impl": r.impl or "-",
                "arch": r.arch, "params": f"{r.params:,}" if r.params else "-",
                "budget": _budget_cell(r),
                "test": _metric_pm(metric, r.test_metric_mean, r.test_metric_std),
                "gap": _metric_pm(metric, r.gap_mean, r.gap_std),
                "train_time": _pm(r.train_time_s_mean, r.train_time_s_std, 3),
                "best_epoch": _fmt(r.best_epoch_mean, 3),
                "best_test_epoch": _metric_pm(metric, r.test_metric_best_test_mean,
                                              r.test_metric_best_test_std),
                "runs": f"{r.ok}/{r.seeds}", "notes": "; ".join(notes),
                "is_best": not best.empty and best.iloc[0].model == r.model,
            })
            if shown_values:
                value_rows.append({"model": r.model, "scheme": r.scheme, "cells": [
                    _pm(r[f"{n}_mean"], r[f"{n}_std"], 4) if r[f"{n}_n"] else "-"
                    for n in shown_values]})
        datasets.append({
            "name": dataset, "metric": metric,
            "direction": "higher is better" if higher_is_better(metric) else "lower is better",
            "info": data_info, "rows": rows, "plot_path": plot, "show_scheme": len(schemes) > 1,
            "value_names": shown_values, "value_rows": value_rows,
        })

    status_counts = runs.status.value_counts().to_dict()
    return {
        "suite": suite_name,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "store": str(store.path),
        "n_runs": len(runs),
        "status_counts": status_counts,
        "seeds": sorted(runs.seed.unique().tolist()),
        "training": config.get("training", {}),
        "schemes": sorted(runs.scheme.unique().tolist()),
        "env": env,
        "devices": sorted(runs.device.dropna().unique().tolist()),
        "threads": sorted(runs.threads.dropna().astype(int).unique().tolist()),
        "datasets": datasets,
        "headline": _headline(table),
        "fmt": _fmt,
    }


def _budget_cell(r: pd.Series) -> str:
    """How the model's count was set: matched to a model, solved for a target, or fixed."""
    if pd.isna(r.budget_error_max):
        return "fixed"
    err = f"max error {r.budget_error_max:.2%}"
    if isinstance(r.budget_reference, str):
        return f"matched to {r.budget_reference} ({err})"
    return f"target ({err})"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_report(store_path: str | Path, out_dir: str | Path = "reports",
                 suite_name: str | None = None) -> tuple[Path, Path]:
    """Write the Markdown and HTML reports for a store; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with Store(store_path, create=False) as store:
        runs = store.runs()
        name = suite_name or (runs.suite.iloc[0] if not runs.empty else Path(store_path).stem)
        ctx = build_context(store, out, name)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
    )
    md_path, html_path = out / f"{name}.md", out / f"{name}.html"
    for d in ctx["datasets"]:
        d["plot"] = _image(d["plot_path"], inline=False, out_dir=out)
    md_path.write_text(env.get_template("report.md.j2").render(**ctx), encoding="utf-8")
    for d in ctx["datasets"]:
        d["plot"] = _image(d["plot_path"], inline=True, out_dir=out)
    html_path.write_text(env.get_template("report.html.j2").render(**ctx), encoding="utf-8")
    return md_path, html_path
