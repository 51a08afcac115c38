"""Paired statistics for the report: which models are compared, and how.

Pure functions of the runs table as :meth:`bench.store.Store.runs` returns it (columns used:
``dataset, scheme, model, family, status, metric, test_metric, pair_key, budget_reference,
params``), restricted to the runs shown and without shocked runs (a shocked run shares its
control's ``pair_key``). Like :mod:`bench.report.tables` this module imports no torch.

Definitions
-----------
usable run
    status ``"ok"``, a finite test metric and a ``pair_key``.
pair
    two models' usable runs with equal ``pair_key``: the same data, split, scheme and seed
    (:attr:`bench.records.spec.RunSpec.pair_key` leaves out only the model). A seed that is
    usable for one model only is dropped, so each comparison has its own ``n``. A model with two
    usable runs under one ``pair_key`` (two configurations of one model name in a store reported
    whole) has that pair dropped: which run to pair is ambiguous.
difference
    per pair, oriented so that POSITIVE means model ``a`` is better: ``a - b`` where the metric's
    higher is better (accuracy), ``b - a`` otherwise (RMSE); see
    :func:`bench.records.metrics.higher_is_better`. Differences are rounded to 12 decimals so
    that equal differences of different values (0.9 - 0.8 and 0.8 - 0.7) tie as they should.
mean_diff
    the mean of the differences, in the metric's units.
ci_low, ci_high
    a 95% bootstrap confidence interval of the mean difference: :func:`scipy.stats.bootstrap`
    on the differences, ``N_RESAMPLES`` resamples, ``random_state=RANDOM_STATE`` (reproducible),
    method ``"BCa"``; ``"percentile"`` where BCa cannot be computed (fewer than 3 pairs, every
    difference equal, or a non-finite BCa bound). ``ci_method`` says which. Fewer than 2 pairs:
    no interval (NaN, ``ci_method`` None).
p_value
    two-sided Wilcoxon signed-rank test of the differences (:func:`scipy.stats.wilcoxon`,
    ``zero_method="wilcox"``: zero differences are discarded, as the test defines them; every
    difference zero: p = 1). NaN without pairs.
p_holm
    the p-value adjusted by Holm's step-down method (:func:`holm`) over ALL comparisons passed
    in one call (the whole report) that have a p-value.
min_p
    the smallest two-sided p the exact test can reach with ``n`` pairs: ``2 / 2**n`` (every
    difference of one sign). It is 0.0625 for n = 5 and 0.03125 for n = 6, so at level 0.05 a
    verdict needs at least 6 pairs.
verdict
    at ``level`` (default 0.05), from ``p_holm``:

    * ``"no paired seeds"`` when n = 0;
    * ``"too few paired seeds (n = 3) for the test to have power"`` when ``min_p > level``
      (n <= 5 at 0.05): the test could not have rejected whatever the data, so nothing
      (in particular not equality) is claimed;
    * ``"<a> better"`` / ``"<b> better"`` when ``p_holm <= level``, on the side the signed-rank
      sums favour (the direction the test is about; it agrees with the mean's sign unless a
      few large differences outweigh many small ones);
    * ``"no detectable difference"`` otherwise (not evidence of equality).

Which models are compared (:func:`planned_comparisons`), per (dataset, scheme), over every model
with a run there (whatever its status, so a model without usable runs shows as n = 0):

* each KAN (``family == "kan"``) against its matched MLP(s) (:func:`matched_mlps`);
* every two KANs of the same ladder rung (:func:`rung`; models outside a ladder have none, so
  every two plain KANs are compared): implementations against each other at one size, not one
  rung of a ladder against another.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bench.records.metrics import higher_is_better

LEVEL = 0.05
CONFIDENCE = 0.95
N_RESAMPLES = 9999
RANDOM_STATE = 0
#: decimals differences are rounded to (float noise would otherwise break ties)
DECIMALS = 12

KAN_VS_MLP = "KAN vs MLP"
KAN_VS_KAN = "KAN vs KAN"

COLUMNS = ["dataset", "scheme", "metric", "kind", "a", "b", "match", "n", "mean_diff",
           "ci_low", "ci_high", "ci_method", "p_value", "p_holm", "min_p", "verdict"]


def rung(model: str) -> str | None:
    """A ladder rung's label: ``kan@1k`` -> ``"1k"`` (bench.suite names each rung
    ``<name>@<rung>``); None for a model outside a ladder."""
    _, at, label = str(model).rpartition("@")
    return label if at else None


def _models(group: pd.DataFrame) -> pd.DataFrame:
    """One dataset/scheme's models in suite order: family, budget reference, parameter count
    (the largest recorded: a grid refinement grows it)."""
    rows = []
    for model, g in group.groupby("model", sort=False):
        reference = g.budget_reference.dropna()
        params = pd.to_numeric(g.params, errors="coerce").dropna()
        rows.append({"model": model, "family": g.family.iloc[0],
                     "budget_reference": reference.iloc[0] if len(reference) else None,
                     "params": int(params.max()) if len(params) else None})
    return pd.DataFrame(rows, columns=["model", "family", "budget_reference", "params"])


def matched_mlps(models: pd.DataFrame) -> dict[str, tuple[list[str], str]]:
    """KAN -> (its matched MLPs, the rule that matched them) for one dataset/scheme's
    ``models`` (columns ``model, family, budget_reference, params``). The first rule that
    yields any MLP wins:

    1. ``"budget reference"``: the MLPs whose ``budget_reference`` names this KAN;
    2. ``"same size"``: the MLPs whose ``budget_reference`` names another KAN with the same
       parameter count, or (ladders) with the same rung (suites match the MLP to one KAN,
       e.g. native, and give the other implementations native's architecture; rungs of
       different ladders share a target, not an exact count);
    3. ``"same rung"``: the MLPs of this KAN's rung (for a KAN outside a ladder: the MLPs
       outside a ladder);
    4. ``"every MLP"``: every MLP of the dataset/scheme.

    A KAN gets an empty list only where there is no MLP at all.
    """
    kans = models[models.family == "kan"]
    mlps = models[models.family == "mlp"]
    out = {}
    for k in kans.itertuples():
        same_size = {o.model for o in kans.itertuples()
                     if (pd.notna(k.params) and o.params == k.params)
                     or (rung(k.model) is not None and rung(o.model) == rung(k.model))}
        rules = [("budget reference", mlps.budget_reference == k.model),
                 ("same size", mlps.budget_reference.isin(same_size)),
                 ("same rung", mlps.model.map(rung) == rung(k.model)),
                 ("every MLP", pd.Series(True, index=mlps.index))]
        for name, mask in rules:
            chosen = mlps.model[mask.to_numpy(dtype=bool)].tolist()
            if chosen:
                out[k.model] = (chosen, name)
                break
        else:
            out[k.model] = ([], "no MLP")
    return out


def planned_comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """The comparisons (columns ``dataset, scheme, metric, kind, a, b, match``): per
    dataset/scheme, each KAN (``a``) against each of its matched MLPs (``b``;
    :func:`matched_mlps`, ``match`` names the rule), then every two KANs of the same rung
    (``match``: ``"same rung"`` for ladder rungs, else ``"every KAN pair"``), in suite order."""
    rows = []
    for (dataset, scheme), g in runs.groupby(["dataset", "scheme"], sort=False):
        metric = g.metric.dropna().iloc[0] if g.metric.notna().any() else None
        models = _models(g)
        base = {"dataset": dataset, "scheme": scheme, "metric": metric}
        for kan, (mlps, rule) in matched_mlps(models).items():
            rows += [{**base, "kind": KAN_VS_MLP, "a": kan, "b": mlp, "match": rule}
                     for mlp in mlps]
        kans = models.model[models.family == "kan"].tolist()
        rows += [{**base, "kind": KAN_VS_KAN, "a": a, "b": b,
                  "match": "every KAN pair" if rung(a) is None else "same rung"}
                 for a, b in itertools.combinations(kans, 2) if rung(a) == rung(b)]
    return pd.DataFrame(rows, columns=["dataset", "scheme", "metric", "kind", "a", "b", "match"])


def usable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that may pair: status ok, a finite test metric (as a float) and a pair_key,
    without (model, pair_key) duplicates (see "pair" in the module docstring)."""
    ok = runs[(runs.status == "ok") & runs.pair_key.notna()]
    ok = ok.assign(test_metric=pd.to_numeric(ok.test_metric, errors="coerce").astype(float))
    ok = ok[np.isfinite(ok.test_metric)]
    return ok[~ok.duplicated(["model", "pair_key"], keep=False)]


def paired_differences(usable: pd.DataFrame, a: str, b: str, metric: str) -> pd.Series:
    """Per pair_key both models ran on: ``a``'s test metric minus ``b``'s, oriented so that
    positive means ``a`` is better, rounded to DECIMALS; indexed by pair_key."""
    va = usable[usable.model == a].set_index("pair_key").test_metric
    vb = usable[usable.model == b].set_index("pair_key").test_metric
    keys = va.index.intersection(vb.index)
    diff = va[keys] - vb[keys] if higher_is_better(metric) else vb[keys] - va[keys]
    return diff.round(DECIMALS)


def bootstrap_ci(diffs: np.ndarray, confidence: float = CONFIDENCE,
                 n_resamples: int = N_RESAMPLES,
                 random_state: int = RANDOM_STATE) -> tuple[float, float, str | None]:
    """(low, high, method) of the mean difference (see ci_low in the module docstring)."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) < 2:
        return math.nan, math.nan, None
    methods = ["percentile"] if len(diffs) < 3 or np.all(diffs == diffs[0]) else \
        ["BCa", "percentile"]
    for method in methods:
        with warnings.catch_warnings():  # BCa warns (and gives NaN) on degenerate samples
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((diffs,), np.mean, confidence_level=confidence,
                                 n_resamples=n_resamples, method=method,
                                 random_state=random_state).confidence_interval
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            return float(ci.low), float(ci.high), method
    return math.nan, math.nan, None


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of the differences (see p_value above)."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) == 0:
        return math.nan
    if np.all(diffs == 0):  # scipy gives NaN (with a warning) where nothing is left to rank
        return 1.0
    return float(stats.wilcoxon(diffs, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment: with the m non-NaN p-values sorted ascending,
    p_(i) -> max over j <= i of min(1, (m - j + 1) p_(j)) (1-based). NaN stays NaN and is
    not counted in m. Controls the family-wise error rate at any dependence."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, math.nan)
    have = np.flatnonzero(~np.isnan(p))
    order = have[np.argsort(p[have], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def min_p(n: int) -> float:
    """The smallest two-sided p the exact signed-rank test reaches with n pairs: every
    difference nonzero and of one sign (ties or zeros only raise it)."""
    return min(1.0, 2.0 / 2 ** n)


def verdict(a: str, b: str, n: int, p_holm: float, a_favoured: bool,
            level: float = LEVEL) -> str:
    """The verdict of one comparison (see the module docstring)."""
    if n == 0:
        return "no paired seeds"
    if min_p(n) > level:
        return f"too few paired seeds (n = {n}) for the test to have power"
    if p_holm <= level:
        return f"{a if a_favoured else b} better"
    return "no detectable difference"


def _signed_rank_favours_a(diffs: np.ndarray) -> bool:
    """Whether the positive differences hold the larger signed-rank sum (zeros discarded)."""
    d = diffs[diffs != 0]
    ranks = stats.rankdata(np.abs(d))
    return bool(ranks[d > 0].sum() >= ranks[d < 0].sum())


def paired_comparisons(runs: pd.DataFrame, level: float = LEVEL,
                       confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                       random_state: int = RANDOM_STATE) -> pd.DataFrame:
    """Every comparison of :func:`planned_comparisons` with its statistics (columns
    :data:`COLUMNS`; definitions in the module docstring), Holm-adjusted across all of them."""
    planned = planned_comparisons(runs).reset_index(drop=True)
    usable = usable_runs(runs)
    rows, favours = [], []
    for c in planned.itertuples():
        d = paired_differences(usable[(usable.dataset == c.dataset) & (usable.scheme == c.scheme)],
                               c.a, c.b, c.metric or "").to_numpy()
        low, high, method = bootstrap_ci(d, confidence, n_resamples, random_state)
        rows.append({"n": len(d), "mean_diff": float(d.mean()) if len(d) else math.nan,
                     "ci_low": low, "ci_high": high, "ci_method": method,
                     "p_value": wilcoxon_p(d), "min_p": min_p(len(d))})
        favours.append(_signed_rank_favours_a(d))
    table = planned.join(pd.DataFrame(rows, index=planned.index,
                                      columns=["n", "mean_diff", "ci_low", "ci_high",
                                               "ci_method", "p_value", "min_p"]))
    table["p_holm"] = holm(table.p_value.to_numpy())
    table["verdict"] = [verdict(r.a, r.b, r.n, r.p_holm, f, level)
                        for r, f in zip(table.itertuples(), favours)]
    # Holm rejects nothing unless some p <= level / m (its first step): when no comparison's
    # smallest reachable p gets there, none could have been declared, whatever the data, so
    # "no detectable difference" would be empty: say that the seeds are too few instead
    tested = int(table.p_value.notna().sum())
    if tested and not (table.min_p[table.p_value.notna()] <= level / tested).any():
        needed = family_min_pairs(tested, level)
        # the comparisons that could have passed alone (the others already say they cannot)
        alone = (table.n > 0) & (table.min_p <= level)
        table.loc[alone, "verdict"] = [
            f"too few paired seeds (n = {n}) for a verdict across the report's {tested} "
            f"comparisons (Holm): at least {needed} needed" for n in table.n[alone]]
    return table[COLUMNS]


def family_min_pairs(comparisons: int, level: float = LEVEL) -> int:
    """The fewest pairs with which the exact test can reach Holm's first threshold,
    ``level / comparisons``: ``2 / 2**n <= level / comparisons``."""
    return next(n for n in itertools.count(1) if min_p(n) <= level / max(1, comparisons))


def describe_method(comparisons: pd.DataFrame, level: float = LEVEL,
                    confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Numbers the report's method sentence quotes: how many comparisons Holm adjusts over,
    the level, the confidence, the resamples and the fewest pairs that can reach the level."""
    return {"tested": int(comparisons.p_value.notna().sum()), "level": level,
            "confidence": confidence, "n_resamples": N_RESAMPLES,
            "min_pairs": next(n for n in itertools.count(1) if min_p(n) <= level),
            "family_min_pairs": family_min_pairs(int(comparisons.p_value.notna().sum()), level)}
