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


def learning_curves(curves: pd.DataFrame, dataset: str, metric: str, path: Path) -> Path | None:
    """Validation (solid) and train (dotted) metric per epoch, mean over seeds, one line per
    model. Returns None when there is nothing to draw."""
    c = curves[curves.dataset == dataset]
    if c.empty or "val_metric" not in c:
        return None
    # usetex off: a user's matplotlibrc must not hand suite text to LaTeX
    with plt.rc_context({"text.usetex": False}):
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        try:
            for i, (model, g) in enumerate(c.groupby("model", sort=False)):
                mean = g.groupby("epoch")[["val_metric", "train_metric"]].mean()
                color = f"C{i % 10}"
                ax.plot(mean.index, mean.val_metric, color=color, label=literal(f"{model} (val)"))
                ax.plot(mean.index, mean.train_metric, color=color, linestyle=":", alpha=0.7)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{metric} ({'higher' if metric == 'accuracy' else 'lower'} is better)")
            ax.set_title(literal(f"{dataset}: validation (solid) and train (dotted), "
                                 f"mean over seeds"), fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
            fig.tight_layout()
            write_atomic(path, lambda f: fig.savefig(f, format="png"), mode="wb")
        finally:
            plt.close(fig)
    return path
