"""Paired statistics (bench/report/statistics.py) and the report's Summary and Paired
comparisons sections: known numbers in synthetic runs tables, scipy run the same way as the
reference, and hand-made run records in a real store for the rendered report. No training."""

from __future__ import annotations

import math
import re

import markupsafe
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adapters.spec import ModelSpec
from bench.records import RunResult, RunSpec, SplitSpec, TrainingSpec
from bench.report import write_report
from bench.report.render import build_context, md_escape
from bench.report.statistics import (
    KAN_VS_KAN, KAN_VS_MLP, N_RESAMPLES, RANDOM_STATE, holm, matched_mlps, paired_comparisons,
    planned_comparisons, rung)
from bench.store import Store


def _model(model, family, values, *, ref=None, params=100, metric="accuracy",
           dataset="d", scheme="default", status=None, val=None):
    """Runs of one model: ``values[i]`` is seed i's test metric (None: no run for that seed);
    ``status`` maps a seed to a status other than ok, ``val`` gives validation metrics."""
    rows = []
    for seed, value in enumerate(values):
        if value is None:
            continue
        rows.append({
            "run_key": f"{dataset}/{scheme}/{model}/{seed}",
            "pair_key": f"{dataset}/{scheme}/{seed}",  # as RunSpec.pair_key: no model in it
            "dataset": dataset, "scheme": scheme, "model": model, "family": family,
            "status": (status or {}).get(seed, "ok"), "metric": metric, "test_metric": value,
            "val_metric": (val or values)[seed], "budget_reference": ref, "params": params})
    return rows


def _runs(*models) -> pd.DataFrame:
    return pd.DataFrame([row for rows in models for row in rows])


def _one(table: pd.DataFrame, a: str, b: str) -> pd.Series:
    rows = table[(table.a == a) & (table.b == b)]
    assert len(rows) == 1, (a, b, table[["a", "b"]])
    return rows.iloc[0]


KAN8 = [0.90, 0.92, 0.91, 0.95, 0.93, 0.90, 0.94, 0.92]
MLP8 = [0.85, 0.86, 0.88, 0.84, 0.87, 0.85, 0.83, 0.89]


# -- orientation, CI and p against scipy --------------------------------------------------------

@pytest.mark.parametrize("metric, kan, mlp, expected", [
    ("accuracy", 0.9, 0.8, +0.1),   # higher accuracy: KAN better, positive
    ("accuracy", 0.8, 0.9, -0.1),
    ("rmse", 1.0, 3.0, +2.0),       # lower RMSE: KAN better, positive
    ("rmse", 3.0, 1.0, -2.0),
])
def test_a_positive_mean_difference_means_the_first_model_is_better(metric, kan, mlp, expected):
    offsets = [0.0, 0.01, 0.02, 0.03]  # the same per seed on both sides: the difference is fixed
    runs = _runs(_model("kan", "kan", [kan + o for o in offsets], metric=metric),
                 _model("mlp", "mlp", [mlp + o for o in offsets], ref="kan", metric=metric))
    c = _one(paired_comparisons(runs), "kan", "mlp")
    assert c.mean_diff == pytest.approx(expected)


def test_ci_and_p_are_scipy_bootstrap_bca_and_wilcoxon_on_the_paired_differences():
    runs = _runs(_model("kan", "kan", KAN8), _model("mlp", "mlp", MLP8, ref="kan"))
    c = _one(paired_comparisons(runs), "kan", "mlp")
    d = np.round(np.array(KAN8) - np.array(MLP8), 12)
    ci = stats.bootstrap((d,), np.mean, method="BCa", n_resamples=N_RESAMPLES,
                         random_state=RANDOM_STATE).confidence_interval
    assert (c.n, c.ci_method) == (8, "BCa")
    assert c.mean_diff == pytest.approx(d.mean())
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert c.ci_low < d.mean() < c.ci_high
    assert c.p_value == pytest.approx(stats.wilcoxon(d, zero_method="wilcox").pvalue, rel=1e-12)
    # reproducible: the same table twice
    again = _one(paired_comparisons(runs), "kan", "mlp")
    assert (again.ci_low, again.ci_high) == (c.ci_low, c.ci_high)


def test_bca_falls_back_to_percentile_and_one_pair_has_no_interval():
    equal = _runs(_model("kan", "kan", [0.9] * 8), _model("mlp", "mlp", [0.8] * 8, ref="kan"))
    c = _one(paired_comparisons(equal), "kan", "mlp")
    assert c.ci_method == "percentile" and (c.ci_low, c.ci_high) == pytest.approx((0.1, 0.1))

    two = _runs(_model("kan", "kan", [0.9, 0.95]), _model("mlp", "mlp", [0.8, 0.8], ref="kan"))
    c = _one(paired_comparisons(two), "kan", "mlp")
    d = np.array([0.1, 0.15])
    ci = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=N_RESAMPLES,
                         random_state=RANDOM_STATE).confidence_interval
    assert c.ci_method == "percentile"
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))

    one = _runs(_model("kan", "kan", [0.9]), _model("mlp", "mlp", [0.8], ref="kan"))
    c = _one(paired_comparisons(one), "kan", "mlp")
    assert c.n == 1 and c.ci_method is None and math.isnan(c.ci_low) and math.isnan(c.ci_high)


def test_identical_results_give_p_one_and_no_detectable_difference():
    runs = _runs(_model("kan", "kan", KAN8), _model("mlp", "mlp", KAN8, ref="kan"))
    c = _one(paired_comparisons(runs), "kan", "mlp")
    assert (c.n, c.mean_diff, c.p_value, c.verdict) == (8, 0.0, 1.0, "no detectable difference")


# -- Holm ---------------------------------------------------------------------------------------

def test_holm_matches_a_hand_computation():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(1 * 0.04, 0.06)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # NaN is no test: m = 2; capped at 1
    assert holm([math.nan, 0.6, 0.01]) == pytest.approx([math.nan, 0.6, 0.02], nan_ok=True)
    assert holm([0.7, 0.9]) == pytest.approx([1.0, 1.0])


def test_holm_adjusts_across_every_comparison_of_the_report():
    runs = _runs(_model("kan", "kan", KAN8, dataset="one"),
                 _model("mlp", "mlp", MLP8, ref="kan", dataset="one"),
                 _model("kan", "kan", KAN8, dataset="two"),
                 _model("mlp", "mlp", MLP8[::-1], ref="kan", dataset="two"),
                 _model("kan", "kan", [0.9], dataset="three"),  # no MLP run: n = 0, no p
                 _model("mlp", "mlp", [None, 0.8], ref="kan", dataset="three"))
    table = paired_comparisons(runs)
    assert len(table) == 3 and table.p_value.notna().sum() == 2
    assert table.p_holm.to_numpy() == pytest.approx(holm(table.p_value.to_numpy()), nan_ok=True)
    # the smaller p is multiplied by the number of p-values (2), not by its dataset's (1)
    p = table.p_value.min()
    assert table.p_holm.min() == pytest.approx(min(1.0, 2 * p))
    assert table.verdict.iloc[2] == "no paired seeds"


# -- verdicts -----------------------------------------------------------------------------------

def test_a_clear_win_with_eight_seeds_names_the_winner():
    runs = _runs(_model("native", "kan", KAN8), _model("mlp", "mlp", MLP8, ref="native"))
    assert _one(paired_comparisons(runs), "native", "mlp").verdict == "native better"
    # the other way round, and for RMSE (lower is better)
    runs = _runs(_model("native", "kan", MLP8), _model("mlp", "mlp", KAN8, ref="native"))
    assert _one(paired_comparisons(runs), "native", "mlp").verdict == "mlp better"
    runs = _runs(_model("native", "kan", MLP8, metric="rmse"),
                 _model("mlp", "mlp", KAN8, ref="native", metric="rmse"))
    assert _one(paired_comparisons(runs), "native", "mlp").verdict == "native better"


def test_differences_of_both_signs_give_no_detectable_difference():
    mlp = [0.9 + s * 0.01 * (i + 1) for i, s in enumerate([1, -1, 1, -1, -1, 1, -1, 1])]
    runs = _runs(_model("kan", "kan", [0.9] * 8), _model("mlp", "mlp", mlp, ref="kan"))
    c = _one(paired_comparisons(runs), "kan", "mlp")
    assert c.p_holm > 0.05 and c.verdict == "no detectable difference"


@pytest.mark.parametrize("n, verdict", [
    (3, "too few paired seeds (n = 3) for the test to have power"),
    # every difference of one sign: exact p = 2 / 2**5 = 0.0625 > 0.05, still no power
    (5, "too few paired seeds (n = 5) for the test to have power"),
    (6, "kan better"),  # 2 / 2**6 = 0.03125
])
def test_too_few_pairs_is_said_never_equality(n, verdict):
    runs = _runs(_model("kan", "kan", KAN8[:n]), _model("mlp", "mlp", MLP8[:n], ref="kan"))
    c = _one(paired_comparisons(runs), "kan", "mlp")
    assert c.min_p == pytest.approx(2 / 2 ** n)
    assert c.verdict == verdict


def test_the_level_is_a_parameter():
    runs = _runs(_model("kan", "kan", KAN8[:5]), _model("mlp", "mlp", MLP8[:5], ref="kan"))
    assert _one(paired_comparisons(runs, level=0.1), "kan", "mlp").verdict == "kan better"


# -- what pairs ---------------------------------------------------------------------------------

def test_a_seed_missing_for_one_model_is_dropped_from_the_pairs():
    kan = KAN8[:7] + [0.1]  # seed 7 would turn the win round if it were paired with anything
    runs = _runs(_model("kan", "kan", kan), _model("mlp", "mlp", MLP8[:7] + [None], ref="kan"))
    c = _one(paired_comparisons(runs), "kan", "mlp")
    assert c.n == 7
    assert c.mean_diff == pytest.approx(np.mean(np.subtract(KAN8[:7], MLP8[:7])))


@pytest.mark.parametrize("status", ["diverged", "error"])
def test_runs_that_did_not_finish_or_have_no_finite_metric_do_not_pair(status):
    mlp = MLP8[:6] + [math.nan, 0.99]
    runs = _runs(_model("kan", "kan", KAN8), _model("mlp", "mlp", mlp, ref="kan",
                                                   status={7: status}))
    c = _one(paired_comparisons(runs), "kan", "mlp")
    assert c.n == 6
    assert c.mean_diff == pytest.approx(np.mean(np.subtract(KAN8[:6], MLP8[:6])))


def test_two_runs_of_one_model_under_one_pair_key_leave_that_pair_out():
    runs = _runs(_model("kan", "kan", KAN8), _model("mlp", "mlp", MLP8, ref="kan"))
    twin = runs[(runs.model == "mlp") & (runs.pair_key == "d/default/0")].assign(
        run_key="other-config", test_metric=0.1)
    c = _one(paired_comparisons(pd.concat([runs, twin], ignore_index=True)), "kan", "mlp")
    assert c.n == 7


# -- which comparisons ----------------------------------------------------------------------------

def test_each_kan_gets_the_mlp_matched_to_it_or_to_a_kan_of_its_size():
    # as suites/tabular.yaml: the MLP is matched to native, the other KANs share its architecture
    models = pd.DataFrame([
        {"model": "native", "family": "kan", "budget_reference": None, "params": 100},
        {"model": "pykan", "family": "kan", "budget_reference": None, "params": 100},
        {"model": "big", "family": "kan", "budget_reference": None, "params": 500},
        {"model": "mlp", "family": "mlp", "budget_reference": "native", "params": 101},
        {"model": "mlp_fixed", "family": "mlp", "budget_reference": None, "params": 300},
    ])
    assert matched_mlps(models) == {
        "native": (["mlp"], "budget reference"),
        "pykan": (["mlp"], "same size"),
        "big": (["mlp", "mlp_fixed"], "every MLP"),
    }


def test_ladder_rungs_match_by_their_suffix():
    models = pd.DataFrame([
        {"model": "kan_width@1k", "family": "kan", "budget_reference": None, "params": 1010},
        {"model": "kan_width@3k", "family": "kan", "budget_reference": None, "params": 3040},
        {"model": "kan_grid@3k", "family": "kan", "budget_reference": None, "params": 2960},
        {"model": "kan_grid@600", "family": "kan", "budget_reference": None, "params": 610},
        {"model": "kan_own@10k", "family": "kan", "budget_reference": None, "params": 9900},
        {"model": "mlp@1k", "family": "mlp", "budget_reference": "kan_width@1k", "params": 1000},
        {"model": "mlp@3k", "family": "mlp", "budget_reference": "kan_width@3k", "params": 3000},
        {"model": "mlp_own@10k", "family": "mlp", "budget_reference": None, "params": 10000},
    ])
    assert rung("kan_grid@3k") == "3k" and rung("native") is None
    assert matched_mlps(models) == {
        "kan_width@1k": (["mlp@1k"], "budget reference"),
        "kan_width@3k": (["mlp@3k"], "budget reference"),
        "kan_grid@3k": (["mlp@3k"], "same size"),  # the MLP of kan_width's 3k rung
        "kan_grid@600": (["mlp@1k", "mlp@3k", "mlp_own@10k"], "every MLP"),
        "kan_own@10k": (["mlp_own@10k"], "same rung"),
    }


def test_kans_are_compared_with_each_other_within_a_rung_only():
    runs = _runs(*(_model(m, "kan", KAN8[:3]) for m in
                   ("native", "pykan", "efficient_kan", "w@1k", "g@1k", "w@3k")),
                 _model("mlp", "mlp", MLP8[:3], ref="native"))
    planned = planned_comparisons(runs)
    kk = planned[planned.kind == KAN_VS_KAN]
    assert set(zip(kk.a, kk.b)) == {("native", "pykan"), ("native", "efficient_kan"),
                                    ("pykan", "efficient_kan"), ("w@1k", "g@1k")}
    km = planned[planned.kind == KAN_VS_MLP]
    # native is the KAN in each pair, and the ladder KANs (no MLP of their own) get every MLP
    assert list(km.a) == ["native", "pykan", "efficient_kan", "w@1k", "g@1k", "w@3k"]
    assert set(km.b) == {"mlp"}


def test_comparisons_stay_within_their_dataset_and_scheme():
    runs = _runs(_model("kan", "kan", KAN8, scheme="a"),
                 _model("mlp", "mlp", MLP8, ref="kan", scheme="a"),
                 _model("kan", "kan", MLP8, scheme="b"),
                 _model("mlp", "mlp", KAN8, ref="kan", scheme="b"))
    table = paired_comparisons(runs)
    assert list(table.scheme) == ["a", "b"]
    assert list(table.verdict) == ["kan better", "mlp better"]


# -- the rendered report --------------------------------------------------------------------------

HOSTILE = '<script>alert(1)</script>|*x*_'
KAN = "kan" + HOSTILE
MLP = "mlp" + HOSTILE


def _save(store: Store, *, model: str, family: str, seed: int, test: float, val: float,
          scheme: str = "default", status: str = "ok", reference: str | None = None,
          label: str = "iris" + HOSTILE) -> None:
    spec = RunSpec(
        suite="paired", dataset="iris", dataset_label=label, dataset_options={},
        split=SplitSpec(), model=model, adapter="native" if family == "kan" else "mlp",
        family=family, arch=ModelSpec(hidden=(4,)), params=50,
        budget={"reference": reference, "target": 50, "achieved": 50} if reference else None,
        scheme=scheme, training=TrainingSpec(epochs=1), seed=seed, device="cpu")
    ok = status == "ok"
    result = RunResult(status=status, metric="accuracy", params=50,
                       train_metric=test if ok else None, val_metric=val if ok else None,
                       test_metric=test if ok else None, gap=0.0 if ok else None,
                       best_epoch=1 if ok else None, epochs=1, steps=1, train_time_s=1.0,
                       throughput=100.0, diverged_step=1 if status == "diverged" else None)
    store.save(spec, result, env={})


@pytest.fixture
def report_store(tmp_path):
    path = tmp_path / "paired.sqlite"
    with Store(path) as store:
        for seed in range(8):
            _save(store, model=KAN, family="kan", seed=seed, test=KAN8[seed], val=0.9)
            # best on test, worse on validation: the Summary must not choose it
            _save(store, model="kan_b", family="kan", seed=seed, test=0.99, val=0.5)
            _save(store, model=MLP, family="mlp", seed=seed, test=MLP8[seed], val=0.8,
                  reference=KAN, status="diverged" if seed == 7 else "ok")
    return path


def test_the_summary_takes_the_best_kan_by_validation(report_store, tmp_path):
    with Store(report_store, readonly=True) as store:
        ctx = build_context(store, tmp_path, "paired")
    (line,) = ctx["summary"]
    assert (line["kan"], line["mlp"], line["n"]) == (KAN, MLP, 7)
    assert line["diverged"] == "0/8, 1/8"
    assert line["verdict"] == f"{KAN} better"
    d = np.subtract(KAN8[:7], MLP8[:7])
    assert line["diff"] == f"{100 * d.mean():+.2f} pp"
    # native-to-mlp, kan_b-to-mlp (same size) and the two KANs; Holm over all three
    assert ctx["paired"]["tested"] == 3


def test_one_summary_line_per_dataset_and_comparisons_in_the_order_of_the_dataset_sections(
        tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        for label in ("zeta", "alpha"):  # stored first, shown last (the sections sort by name)
            for scheme in ("a", "b"):
                for seed in range(3):
                    _save(store, model="kan", family="kan", seed=seed, test=KAN8[seed],
                          val=0.9, scheme=scheme, label=label)
                    _save(store, model="mlp", family="mlp", seed=seed, test=MLP8[seed],
                          val=0.8, scheme=scheme, label=label, reference="kan")
        ctx = build_context(store, tmp_path, "s")
    assert [d["name"] for d in ctx["datasets"]] == ["alpha", "zeta"]
    assert [d["name"] for d in ctx["paired"]["datasets"]] == ["alpha", "zeta"]
    # one line per dataset whatever the number of schemes (the summary fits one screen): the
    # best KAN over every scheme by validation (a tie: the first scheme), its MLP in that scheme
    assert ctx["show_scheme"] and [(s["dataset"], s["scheme"], s["kan"], s["mlp"])
                                   for s in ctx["summary"]] == [
        ("alpha", "a", "kan", "mlp"), ("zeta", "a", "kan", "mlp")]
    assert {s["verdict"] for s in ctx["summary"]} == {
        "too few paired seeds (n = 3) for the test to have power"}


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def test_the_report_shows_summary_and_paired_comparisons_escaped(report_store, tmp_path):
    md_path, html_path = write_report(report_store, tmp_path / "out", "paired")
    md, html = md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")
    assert md.index("## Summary") < md.index("## Setup") < md.index("## Paired comparisons")
    md_summary = _between(md, "## Summary", "\n## Setup")
    md_paired = _between(md, "## Paired comparisons", f"\n## {md_escape('iris' + HOSTILE)}")
    html_summary = _between(html, "<h2>Summary", "<h2>Setup")
    html_paired = _between(html, "<h2>Paired comparisons", "\n<h2>")

    kan_md, mlp_md = md_escape(KAN), md_escape(MLP)
    assert f"| {md_escape('iris' + HOSTILE)} | {kan_md} | {mlp_md} |" in md_summary
    assert f"| {kan_md} better |" in md_summary
    # the plain sentence under the table names the winner and the interval
    assert f"- On {md_escape('iris' + HOSTILE)}, {kan_md} is better: {kan_md} minus {mlp_md} is" \
        in md_summary
    assert f"| {kan_md} | {mlp_md} | budget reference | 7 |" in md_paired
    assert f"| {kan_md} | kan_b | every KAN pair | 8 |" in md_paired
    assert "Holm" in md_paired and "3 comparisons" in md_paired and "BCa" in md_paired
    # 10 and 9 columns: a hostile | would add one
    for section, pipes, n_rows in ((md_summary, 11, 3), (md_paired, 10, 5)):
        rows = [row for row in section.splitlines() if row.startswith("|")]
        assert len(rows) == n_rows  # header, rule, then 1 and 3 comparisons
        assert {len(re.findall(r"(?<!\\)\|", row)) for row in rows} == {pipes}, rows

    kan_html, mlp_html = str(markupsafe.escape(KAN)), str(markupsafe.escape(MLP))
    assert f"<td>{kan_html}</td><td>{mlp_html}</td>" in html_summary
    assert f"<td>{kan_html} better</td>" in html_summary
    assert f"<td>{kan_html}</td><td>{mlp_html}</td><td>budget reference</td>" in html_paired
    assert "<script>" not in html_summary + html_paired


def test_no_verdict_where_holm_could_reject_nothing_across_the_report():
    """Six pairs reach p = 0.03125 at best: enough alone, not across 30 comparisons, where
    Holm's first step needs p <= 0.05 / 30."""
    from bench.report.statistics import family_min_pairs, verdict

    assert family_min_pairs(1) == 6 and family_min_pairs(30) == 11
    rows = []
    for d in range(30):  # 30 datasets, a KAN clearly better than its MLP on each, 6 seeds
        for seed in range(6):
            for model, family, test in (("kan", "kan", 0.9 + 0.001 * seed),
                                        ("mlp", "mlp", 0.7 + 0.001 * seed)):
                rows.append({"run_key": f"{d}-{model}-{seed}", "pair_key": f"{d}-{seed}",
                             "dataset": f"d{d}", "scheme": "s", "model": model,
                             "family": family, "status": "ok", "metric": "accuracy",
                             "test_metric": test, "val_metric": test,
                             "budget_reference": "kan" if model == "mlp" else None,
                             "params": 100})
    table = paired_comparisons(pd.DataFrame(rows))
    assert len(table) == 30 and (table.p_value == 0.03125).all()
    assert table.verdict.str.startswith("too few paired seeds (n = 6) for a verdict across "
                                        "the report's 30 comparisons (Holm): at least 11").all()
    # one such comparison alone is decided
    one = paired_comparisons(pd.DataFrame([r for r in rows if r["dataset"] == "d0"]))
    assert one.verdict.tolist() == ["kan better"]
    assert verdict("a", "b", 6, 0.03125, True) == "a better"
