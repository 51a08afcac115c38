"""Matplotlib figures for reports (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bench.report.files import write_atomic  # noqa: E402


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
    # usetex off: a user's matplotlibrc must not hand suite text to LaTeX
    with plt.rc_context({"text.usetex": False}):
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        try:
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
            ax.set_ylabel(f"{metric} ({'higher' if metric == 'accuracy' else 'lower'} is better)")
            ax.set_title(literal(f"{dataset}: validation (mean, band: min to max over runs) "
                                 f"and train (dotted)"), fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
            fig.tight_layout()
            write_atomic(path, lambda f: fig.savefig(f, format="png"), mode="wb")
        finally:
            plt.close(fig)
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
    summary table, e.g. ``params``, ``flops_impl_mean``, ``train_time_s_mean``) on a log axis,
    one point per model (and scheme), KANs as circles, MLPs as squares, and the Pareto front
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
    with plt.rc_context({"text.usetex": False}):
        fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
        try:
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
            ax.set_xscale("log")
            ax.set_xlabel(label + " (log scale)")
            ax.set_ylabel(f"test {metric} ({'higher' if metric == 'accuracy' else 'lower'} "
                          f"is better)")
            ax.set_title(literal(f"{dataset}: test {metric} against {label} "
                                 f"(KAN: circles, MLP: squares)"), fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6, ncol=2)
            fig.tight_layout()
            write_atomic(path, lambda f: fig.savefig(f, format="png"), mode="wb")
        finally:
            plt.close(fig)
    return path
