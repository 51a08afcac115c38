"""Matplotlib figures for reports (Agg backend: no display needed)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.report.files import write_atomic  # noqa: E402


@contextlib.contextmanager
def _figure(path: Path, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """``plt.subplots(*args, **kwargs)`` at 110 dpi with TeX off (a user's matplotlibrc must
    not hand suite text to LaTeX), written to ``path`` as PNG when the block completes and
    closed whatever happens."""
    with plt.rc_context({"text.usetex": False}):
        fig, axes = plt.subplots(*args, dpi=110, **kwargs)
        try:
            yield fig, axes
            write_atomic(path, lambda f: fig.savefig(f, format="png"), mode="wb")
        finally:
            plt.close(fig)


def literal(text: str) -> str:
    """``text`` drawn as written: an escaped ``$`` never starts mathtext (a label with two
    dollars would otherwise be parsed as math, and fail on an unknown command)."""
    return str(text).replace("$", r"\$")


#: line styles that tell apart models whose curves coincide (native and efficient-kan train
#: the same function: their curves lie on each other)
_DASHES = [(None, None), (6, 2), (2, 2), (8, 2, 2, 2), (4, 4), (1, 3)]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def learning_curves(curves: pd.DataFrame, dataset: str, metric: str, path: Path) -> Path | None:
    """Validation (band: min to max over the runs, seeds and schemes; line: mean) and train
    (dotted, mean) metric per epoch, one colour, dash pattern and marker per model; the markers
    of successive models sit on different epochs, so curves that coincide stay visible.
    Returns None when there is nothing to draw."""
    c = curves[curves.dataset == dataset]
    if c.empty or "val_metric" not in c:
        return None
    with _figure(path, figsize=(6.4, 3.6)) as (fig, ax):
        groups = list(c.groupby("model", sort=False))
        for i, (model, g) in enumerate(groups):
            by_epoch = g.groupby("epoch")
            mean = by_epoch[["val_metric", "train_metric"]].mean()
            low, high = by_epoch.val_metric.min(), by_epoch.val_metric.max()
            color = f"C{i % 10}"
            every = max(1, len(mean) // 8)
            line, = ax.plot(mean.index, mean.val_metric, color=color,
                            marker=_MARKERS[i % len(_MARKERS)], markersize=4,
                            markevery=(i % every, every), label=literal(f"{model} (val)"))
            dashes = _DASHES[i % len(_DASHES)]
            if dashes[0] is not None:
                line.set_dashes(dashes)
            ax.fill_between(mean.index, low, high, color=color, alpha=0.15, linewidth=0)
            ax.plot(mean.index, mean.train_metric, color=color, linestyle=":", alpha=0.7)
        ax.set_xlabel("epoch")
        values = pd.to_numeric(c.val_metric, errors="coerce")
        values = values[values > 0]
        # an RMSE falling by orders of magnitude (grid extension's staircase) needs a log
        # axis to be seen at all
        log = metric == "rmse" and len(values) and values.max() > 100 * values.min()
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(f"{metric} ({'higher' if metric == 'accuracy' else 'lower'} is better"
                      f"{'; log scale' if log else ''})")
        ax.set_title(literal(f"{dataset}: validation (mean, band: min to max over runs) "
                             f"and train (dotted)"), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
    return path


def pareto_front(cost: pd.Series, score: pd.Series, higher_is_better: bool) -> pd.Series:
    """Which points no other point dominates: another point with cost <= and a score at least
    as good, better in one of the two. Costs and scores are numbers (NaN: never on the front)."""
    points = pd.DataFrame({"cost": cost, "score": score if higher_is_better else -score})
    valid = points.dropna()
    front = pd.Series(False, index=points.index)
    for i, p in valid.iterrows():
        others = valid.drop(index=i)
        dominated = ((others.cost <= p.cost) & (others.score >= p.score)
                     & ((others.cost < p.cost) | (others.score > p.score))).any()
        front[i] = not dominated
    return front


def metric_vs_cost(table: pd.DataFrame, dataset: str, metric: str, cost: str, label: str,
                   path: Path) -> Path | None:
    """Mean test metric (error bars: std over seeds) against a cost (``cost``: a column of the
    summary table, e.g. ``params``, ``flops_impl_mean``, ``train_time_s_mean``; a log axis where
    the costs span a decade or more), one point per model (and scheme), KANs as circles, MLPs
    as squares, and the Pareto front
    (the points no cheaper-and-better point dominates) joined by a line. Returns None when
    fewer than two points have both numbers."""
    from bench.records.metrics import higher_is_better

    t = table[table.dataset == dataset]
    if cost not in t:
        return None
    x = pd.to_numeric(t[cost], errors="coerce")
    y = pd.to_numeric(t.test_metric_mean, errors="coerce")
    keep = (x > 0) & y.notna()
    if keep.sum() < 2:
        return None
    t, x, y = t[keep], x[keep], y[keep]
    err = pd.to_numeric(t.test_metric_std, errors="coerce").fillna(0.0)
    front = pareto_front(x, y, higher_is_better(metric))
    with _figure(path, figsize=(6.4, 3.8)) as (fig, ax):
        several_schemes = t.scheme.nunique() > 1
        for i, (idx, r) in enumerate(t.iterrows()):
            name = r.model + (f" [{r.scheme}]" if several_schemes else "")
            ax.errorbar(x[idx], y[idx], yerr=err[idx], color=f"C{i % 10}",
                        marker="o" if r.family == "kan" else "s", markersize=6,
                        capsize=3, linestyle="none", label=literal(name))
        on = front[front].index
        order = x[on].sort_values().index
        ax.plot(x[order], y[order], color="black", linewidth=1, linestyle="--",
                label="Pareto front", zorder=0)
        # a log axis where the costs span a decade or more; within one (models matched to
        # the same budget) its ticks would crowd into unreadable labels
        log = x.max() >= 10 * x.min()
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label + (" (log scale)" if log else ""))
        ax.set_ylabel(f"test {metric} ({'higher' if metric == 'accuracy' else 'lower'} "
                      f"is better)")
        ax.set_title(literal(f"{dataset}: test {metric} against {label} "
                             f"(KAN: circles, MLP: squares)"), fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
    return path


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels, at most ``max_cols`` wide, rows as even as possible
    (5 panels: 2 x 3, not 4 + 1)."""
    rows = math.ceil(n / max_cols)
    return rows, math.ceil(n / rows)


#: at most this many models get a panel in shock_recovery (the figure stays legible)
SHOCK_MODELS = 8


def shock_curves(series: pd.DataFrame, pairs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The curves of :func:`shock_recovery`, one row per point: ``model``, ``kind``
    (``"control"`` or ``"shocked"``), ``shock`` (the shock label; None for a control),
    ``aligned_at`` (for a control: the shock step its steps are counted from; None for a
    shocked curve), ``rel_step`` (step minus the pair's shock step), ``after_shock`` (True for
    the loss measured just after the noise; it sits at ``rel_step`` 0, after the loss measured
    there before the noise), ``value`` (median ``val_loss`` over the runs with a finite loss
    at that point), ``n`` (those runs) and ``lost`` (runs of the curve with a NaN or infinite
    loss anywhere: they drop out of the median where it is not finite).

    Pairs of other datasets, without a shock step, or whose control is missing or has no
    finite ``val_loss``, are skipped. Sorted by model (first appearance in ``pairs``), kind, curve,
    ``rel_step``, ``after_shock``."""
    columns = ["model", "kind", "shock", "aligned_at", "rel_step", "after_shock", "value", "n",
               "lost"]
    # only the series' own columns: a store's series also names the run's model, dataset...
    s = series.loc[series["name"].isin(["val_loss", "after_shock_val_loss"]),
                   ["run_key", "step", "name", "value"]]
    s = s.assign(value=pd.to_numeric(s.value, errors="coerce").astype(float))
    finite = np.isfinite(s.value)
    lost_keys = set(s.run_key[~finite])
    s = s[finite]
    controls_with_data = set(s.run_key[s["name"] == "val_loss"])
    p = pairs[(pairs.dataset == dataset) & pairs.control_key.isin(controls_with_data)
              & pairs.shock_step.notna()]
    if p.empty:
        return pd.DataFrame(columns=columns)
    p = p.assign(shock_step=p.shock_step.astype(int))

    shocked = p[["model", "shock", "run_key", "shock_step"]].merge(s, on="run_key")
    shocked = shocked.assign(kind="shocked", aligned_at=None,
                             after_shock=shocked["name"] == "after_shock_val_loss")
    # the after-shock loss belongs at the shock itself, whatever step it was stored under
    shocked["rel_step"] = np.where(shocked.after_shock, 0, shocked.step - shocked.shock_step)

    # a control serves every shock setting of its seed; count its steps from each distinct
    # shock step it is compared at (settings shocked at different steps align differently)
    aligned = (p[["model", "control_key", "shock_step"]].drop_duplicates()
               .rename(columns={"control_key": "run_key"}))
    control = aligned.merge(s[s["name"] == "val_loss"], on="run_key")
    control = control.assign(kind="control", shock=None, aligned_at=control.shock_step,
                             after_shock=False, rel_step=control.step - control.shock_step)

    points = pd.concat([control, shocked], ignore_index=True)
    curve = ["model", "kind", "shock", "aligned_at"]
    points["lost"] = (points.run_key.where(points.run_key.isin(lost_keys))
                      .groupby([points[c] for c in curve], dropna=False).transform("nunique"))
    out = (points.groupby(curve + ["rel_step", "after_shock"], dropna=False, sort=False)
           .agg(value=("value", "median"), n=("value", "size"), lost=("lost", "first"))
           .reset_index())
    order = {m: i for i, m in enumerate(pd.unique(p.model))}
    out = out.assign(_m=out.model.map(order), rel_step=out.rel_step.astype(int),
                     n=out.n.astype(int), lost=out.lost.astype(int))
    out = out.sort_values(["_m", "kind", "shock", "aligned_at", "rel_step", "after_shock"],
                          kind="stable", na_position="first")
    return out[columns].reset_index(drop=True)


def shock_recovery(series: pd.DataFrame, pairs: pd.DataFrame, dataset: str,
                   path: Path) -> Path | None:
    """Recovery from a weight shock on ``dataset``: one panel per model (the first
    ``SHOCK_MODELS`` in order of ``pairs``, in a grid), x = optimisation steps relative to the
    shock step, y = validation loss (``val_loss``, on a fixed validation subset) on a log
    axis. The control is black (median over its seeds; dashed variants when shock settings
    fall on different steps); each shock setting is one coloured line (median over its
    seeds) that jumps at x = 0 to the loss measured just after the noise (a dot). A dotted
    vertical line marks the shock. NaN and infinite losses are left out of the medians; the
    legend counts the runs that had one. Pairs without a control are skipped. Returns None
    (and writes nothing) when no pair of the dataset has a control with finite losses."""
    curves = shock_curves(series, pairs, dataset)
    if curves.empty:
        return None
    models = list(pd.unique(curves.model))
    shown = models[:SHOCK_MODELS]
    shocks = sorted(curves.shock.dropna().unique())
    colour = {label: f"C{i % 10}" for i, label in enumerate(shocks)}
    rows, cols = _grid(len(shown), 4)
    with _figure(path, rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.9),
                 squeeze=False) as (fig, axes):
        handles = {}
        for ax, model in zip(axes.flat, shown):
            m = curves[curves.model == model]
            controls = list(m[m.kind == "control"].groupby("aligned_at", sort=True))
            for j, (step, g) in enumerate(controls):
                name = "control" if len(controls) == 1 else f"control (shock at step {step})"
                lost = int(g.lost.iloc[0])
                # above the shocked lines, which coincide with it before the shock
                line, = ax.plot(g.rel_step, g.value, color="black", linewidth=1.2, zorder=3,
                                label=name + (f", {lost} run(s) non-finite" if lost else ""))
                dashes = _DASHES[j % len(_DASHES)]
                if dashes[0] is not None:
                    line.set_dashes(dashes)
                handles.setdefault(line.get_label(), line)
            for label, g in m[m.kind == "shocked"].groupby("shock", sort=True):
                lost = int(g.lost.iloc[0])
                text = literal(label) + (f" ({lost} run(s) non-finite)" if lost else "")
                line, = ax.plot(g.rel_step, g.value, color=colour[label], linewidth=1,
                                label=text)
                after = g[g.after_shock]
                ax.plot(after.rel_step, after.value, "o", color=colour[label], markersize=4)
                handles.setdefault(text, line)
            ax.axvline(0, color="grey", linestyle=":", linewidth=1)
            ax.set_yscale("log")
            ax.set_title(literal(model), fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.tick_params(labelsize=7)
        for ax in axes.flat[len(shown):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("steps after the shock", fontsize=8)
        for ax in axes[:, 0]:
            ax.set_ylabel("validation loss (log)", fontsize=8)
        more = f" (first {len(shown)} of {len(models)} models)" if len(models) > len(shown) \
            else ""
        fig.suptitle(literal(f"{dataset}: validation loss around the shock, median over "
                             f"seeds; dot: just after the noise{more}"), fontsize=9)
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center",
                   ncol=min(4, len(handles)), fontsize=7, frameon=False)
        # room at the bottom for the legend, one line per four entries
        fig.tight_layout(rect=(0, 0.04 + 0.035 * math.ceil(len(handles) / 4), 1, 1))
    return path


def _natural_order(values) -> list:
    """Field values (text) in numeric order when all parse as numbers ("0.001" < "0.01" <
    "0.1"), else alphabetically."""
    values = list(values)
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if numbers.notna().all():
        return [v for _, v in sorted(zip(numbers, values))]
    return sorted(values, key=str)


#: a field a run does not set (e.g. a KAN field on an MLP) shows as this value
UNSET = "(unset)"


def heatmap_cells(runs: pd.DataFrame, dataset: str, fields: list[str]) -> pd.DataFrame:
    """One row per model and combination of ``fields`` values that has runs on ``dataset``:
    ``model``, the fields (text; missing as ``UNSET``), ``mean`` (mean test metric over the
    cell's ok runs with a finite one; NaN when none), ``ok`` (those runs), ``diverged`` and
    ``n`` (all runs of the cell)."""
    r = runs[runs.dataset == dataset]
    columns = ["model", *fields, "mean", "ok", "diverged", "n"]
    if r.empty or any(f not in r for f in fields):
        return pd.DataFrame(columns=columns)
    values = {f: r[f].map(lambda v: UNSET if pd.isna(v) else str(v)) for f in fields}
    metric = pd.to_numeric(r.test_metric, errors="coerce").astype(float)
    good = (r.status == "ok") & np.isfinite(metric)
    frame = pd.DataFrame({"model": r.model, **values,
                          "_metric": metric.where(good), "_ok": good,
                          "_div": r.status == "diverged"})
    out = (frame.groupby(["model", *fields], sort=False)
           .agg(mean=("_metric", "mean"), ok=("_ok", "sum"), diverged=("_div", "sum"),
                n=("_ok", "size")).reset_index())
    return out.astype({"ok": int, "diverged": int, "n": int})[columns]


def heatmap_colours(metric: str):
    """The heat maps' colour map over a normalised metric (0: smallest value, 1: largest):
    greens that darken towards the better end, larger for accuracy, smaller for RMSE; cells
    without a value are grey."""
    from bench.records.metrics import higher_is_better

    return plt.get_cmap("Greens" if higher_is_better(metric) else "Greens_r").with_extremes(
        bad="lightgrey")


def scheme_heatmap(runs: pd.DataFrame, dataset: str, metric: str, fields: list[str],
                   path: Path) -> Path | None:
    """Mean test metric over training settings on ``dataset``: per model, a heat map with
    rows = values of ``fields[0]`` and columns = values of ``fields[1]``; with a third field,
    one such map per value of ``fields[2]`` (a row of panels per model). Each cell is the mean
    over the cell's ok runs (3 significant digits), with "d/n diverged" below it when any run
    diverged; a cell without an ok run is grey and gives the diverged count (no run at all:
    "no run"). Darker green is better (higher accuracy, lower RMSE); one colour scale per
    model, shared by its panels. Returns None (and writes nothing) with fewer than 2 or more
    than 3 fields (a fourth would be averaged over unseen), a field missing from ``runs``, or
    no run of the dataset."""
    from matplotlib.colors import Normalize

    from bench.records.metrics import higher_is_better

    if not 2 <= len(fields) <= 3:
        return None
    fields = list(fields)
    cells = heatmap_cells(runs, dataset, fields)
    if cells.empty:
        return None
    row_values, col_values = (_natural_order(cells[f].unique()) for f in fields[:2])
    facets = _natural_order(cells[fields[2]].unique()) if len(fields) == 3 else [None]
    models = list(pd.unique(cells.model))
    cmap = heatmap_colours(metric)
    # panels: one row per model with a third field; otherwise the models wrap, 3 across
    if len(fields) == 3:
        panels = [(i, j, m, f) for i, m in enumerate(models) for j, f in enumerate(facets)]
        rows, cols = len(models), len(facets)
    else:
        rows, cols = _grid(len(models), 3)
        panels = [(k // cols, k % cols, m, None) for k, m in enumerate(models)]
    cell_w, cell_h = 0.55 + 0.04 * max(len(str(v)) for v in col_values), 0.42
    width = cols * (len(col_values) * cell_w + 1.6) + 0.5
    height = rows * (len(row_values) * cell_h + 1.0) + 0.6
    with _figure(path, rows, cols, figsize=(width, height), squeeze=False,
                 layout="constrained") as (fig, axes):
        used = set()
        for model in models:
            c = cells[cells.model == model]
            finite = c["mean"].dropna()
            low, high = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
            if high <= low:  # one value: a small span around it, not a degenerate scale
                pad = 0.05 * max(abs(low), 1e-3)
                low, high = low - pad, high + pad
            norm = Normalize(low, high)
            model_axes = []
            for i, j, m, facet in panels:
                if m != model:
                    continue
                ax = axes[i, j]
                used.add((i, j))
                model_axes.append(ax)
                cf = c if facet is None else c[c[fields[2]] == facet]
                grid = (cf.set_index(fields[:2])
                        .reindex(pd.MultiIndex.from_product([row_values, col_values])))
                means = grid["mean"].to_numpy(float).reshape(len(row_values),
                                                             len(col_values))
                image = ax.imshow(np.ma.masked_invalid(means), cmap=cmap, norm=norm,
                                  aspect="auto")
                for (y, x), (_, cell) in zip(np.ndindex(means.shape), grid.iterrows()):
                    n = 0 if pd.isna(cell.n) else int(cell.n)
                    d = 0 if pd.isna(cell.diverged) else int(cell.diverged)
                    if n == 0:
                        text, dark = "no run", False
                    elif math.isnan(means[y, x]):
                        text, dark = f"no ok run\n{d}/{n} diverged", False
                    else:
                        text = f"{means[y, x]:.3g}" + (f"\n{d}/{n} diverged" if d else "")
                        # white text on the darker half of the colour map
                        shade = norm(means[y, x])
                        dark = (shade > 0.55) if higher_is_better(metric) else (shade < 0.45)
                    ax.text(x, y, text, ha="center", va="center", fontsize=6.5,
                            color="white" if dark else "black")
                ax.set_xticks(range(len(col_values)),
                              [literal(v) for v in col_values], fontsize=7)
                ax.set_yticks(range(len(row_values)),
                              [literal(v) for v in row_values], fontsize=7)
                ax.set_xlabel(literal(fields[1]), fontsize=7)
                ax.set_ylabel(literal(fields[0]), fontsize=7)
                title = model if facet is None else f"{model}, {fields[2]} = {facet}"
                ax.set_title(literal(title), fontsize=8)
            bar = fig.colorbar(image, ax=model_axes, shrink=0.9)
            bar.set_label(literal(f"test {metric}"), fontsize=7)
            bar.ax.tick_params(labelsize=6)
        for i, j in np.ndindex(axes.shape):
            if (i, j) not in used:
                axes[i, j].set_visible(False)
        fig.suptitle(literal(f"{dataset}: mean test {metric} of the ok runs "
                             f"(darker green is better; grey: no ok run)"), fontsize=9)
    return path


def gap_points(table: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """The bars of :func:`gap_per_model`: ``label`` (model, with ``[scheme]`` when the dataset
    has several schemes), ``selected`` / ``selected_std`` (gap at the selected epoch) and
    ``last`` / ``last_std`` (gap at the last epoch; NaN when the table lacks it), in
    percentage points for accuracy (gaps are fractions: x 100) and in target units otherwise.
    Rows with neither gap are left out."""
    from bench.records.metrics import higher_is_better

    t = table[table.dataset == dataset] if "dataset" in table else table.iloc[:0]
    scale = 100.0 if higher_is_better(metric) else 1.0

    def col(name):
        if name not in t:
            return pd.Series(np.nan, index=t.index)
        return pd.to_numeric(t[name], errors="coerce").astype(float) * scale

    several = t.scheme.nunique() > 1 if "scheme" in t else False
    labels = [f"{m} [{s}]" if several else str(m)
              for m, s in zip(t.model, t.scheme if "scheme" in t else t.model)]
    out = pd.DataFrame({"label": labels, "selected": col("gap_mean"),
                        "selected_std": col("gap_std"), "last": col("gap_last_mean"),
                        "last_std": col("gap_last_std")}, index=t.index)
    return out[out.selected.notna() | out["last"].notna()].reset_index(drop=True)


def gap_per_model(table: pd.DataFrame, dataset: str, metric: str, path: Path) -> Path | None:
    """Overfitting gap (train minus test for accuracy, test minus train for RMSE: positive
    means overfitting) per model (and scheme when there are several) on ``dataset``: grouped
    bars, the gap at the selected epoch and, when the table has it, at the last epoch, mean
    over seeds with std error bars, and a line at 0. In percentage points for accuracy, in
    target units otherwise. Returns None (and writes nothing) when no row has a gap."""
    from bench.records.metrics import higher_is_better

    points = gap_points(table, dataset, metric)
    if points.empty:
        return None
    bars = [("selected", "at the selected epoch")]
    if points["last"].notna().any():
        bars.append(("last", "at the last epoch"))
    x = np.arange(len(points))
    width = 0.8 / len(bars)
    unit = "percentage points" if higher_is_better(metric) else "target units"
    with _figure(path, figsize=(max(4.0, 0.6 * len(points) + 2.0), 3.8)) as (fig, ax):
        for k, (column, label) in enumerate(bars):
            # a missing gap draws no bar (a zero bar would read as no overfitting)
            have = points[column].notna().to_numpy()
            ax.bar((x + (k - (len(bars) - 1) / 2) * width)[have], points[column][have],
                   width, yerr=points[f"{column}_std"][have].fillna(0.0), capsize=3,
                   color=f"C{k}", label=label)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, [literal(v) for v in points.label], rotation=30, ha="right",
                      fontsize=7)
        ax.set_ylabel(f"gap, {unit}\n(positive means overfitting)", fontsize=8)
        ax.set_title(literal(f"{dataset}: overfitting gap (mean, bars: std over seeds)"),
                     fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
        fig.tight_layout()
    return path


def speed_ratios(groups: list, kind: str, path: Path) -> Path | None:
    """Median time of each implementation as a ratio to the parameter-matched MLP of the same
    configuration (``bench.speed.report.Group`` s of one benchmark run; ``kind``: forward,
    backward or train_step), one row of bars per configuration, log axis, a line at 1 (as fast
    as the MLP). Returns None when no configuration of that kind has an MLP to compare with."""
    rows = [g for g in groups if g.kind == kind and any(e.ratio for e in g.entries)]
    if not rows:
        return None
    impls = list(dict.fromkeys(e.impl for g in rows for e in g.entries if e.impl != "mlp"))
    fig_height = 0.45 * len(rows) * max(1, len(impls)) ** 0.5 + 1.6
    with _figure(path, figsize=(6.8, fig_height)) as (fig, ax):
        height = 0.8 / max(1, len(impls))
        for j, impl in enumerate(impls):
            ys, xs = [], []
            for i, g in enumerate(rows):
                e = next((e for e in g.entries if e.impl == impl and e.ratio), None)
                if e is not None:
                    ys.append(i + (j - (len(impls) - 1) / 2) * height)
                    xs.append(e.ratio)
            ax.barh(ys, xs, height=height, color=f"C{j % 10}", label=literal(impl))
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_yticks(range(len(rows)), [literal(g.config) for g in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("median time / matched MLP's (log scale; 1: as fast as the MLP)")
        ax.set_title(f"{kind.replace('_', ' ')}: time relative to the matched MLP",
                     fontsize=9)
        ax.grid(alpha=0.3, axis="x", which="both")
        ax.legend(fontsize=7)
        fig.tight_layout()
    return path
